//! Completions scored by a run's `[[rewards]]` outside a run, exactly as its rollouts are:
//! `studio rewards --config RUN.toml --completions FILE.jsonl` and Launch's "Try the rewards"
//! box. A completion's reward parts come from [`RewardSet::score`] and its verdict from
//! [`crate::data::judge`], the functions training and evaluation call.

use std::path::Path;

use serde_json::Value;

use super::rewards::{RewardInput, RewardSet, Scored};
use super::{RunConfig, TrainError};
use crate::data::builtin::{BuiltinTask, Problem};
use crate::data::{BadRow, Dataset};
use crate::text::TextTokenizer;

/// One completion to score: its prompt (a built-in task's problem is rebuilt from it) and the
/// dataset's reference answer, where there is one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CompletionCase {
    pub prompt: String,
    pub completion: String,
    pub answer: Option<String>,
}

/// A run's rewards compiled with what scoring needs: the model's tokenizer (the `length` and
/// `overlong` rewards count tokens) and the built-in task, if the run trains on one.
pub struct RewardChecker {
    rewards: RewardSet,
    tokenizer: TextTokenizer,
    task: Option<BuiltinTask>,
}

impl std::fmt::Debug for RewardChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewardChecker")
            .field("rewards", &self.rewards)
            .field("task", &self.task)
            .finish_non_exhaustive()
    }
}

/// The columns read for the reference answer when the run's `[data]` maps none, in order.
pub const ANSWER_COLUMNS: [&str; 4] = ["answer", "solution", "ground_truth", "reference"];

impl RewardChecker {
    /// The rewards of `config` (validated as a GRPO run validates them) and its model's
    /// tokenizer; `origin` names the config in errors.
    pub fn new(config: &RunConfig, origin: &str) -> Result<Self, TrainError> {
        let rewards = RewardSet::compile(&config.rewards, config.grpo.max_completion_length)
            .map_err(|e| TrainError::Setting {
                origin: origin.to_string(),
                setting: "rewards".into(),
                problem: e.to_string(),
            })?;
        let (tokenizer, _) = crate::formats::loader::open_tokenizer(&config.model)?;
        let task = match &config.data.builtin {
            Some(name) => {
                Some(
                    BuiltinTask::from_name(name).ok_or_else(|| TrainError::Setting {
                        origin: origin.to_string(),
                        setting: "data.builtin".into(),
                        problem: format!("`{name}` is not a built-in task"),
                    })?,
                )
            }
            None => None,
        };
        Ok(Self {
            rewards,
            tokenizer,
            task,
        })
    }

    /// The reward names, in table order (the parts of every [`Scored`]).
    pub fn names(&self) -> Vec<String> {
        self.rewards
            .rewards
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// The built-in problem a case's prompt states, for runs on a built-in task.
    pub fn problem(&self, case: &CompletionCase) -> Option<Problem> {
        self.task.and_then(|t| t.problem_from_prompt(&case.prompt))
    }

    /// One completion's reward, its parts and its verdict.
    pub fn score(&self, case: &CompletionCase) -> Result<Scored, TrainError> {
        let tokens = self.tokenizer.encode(&case.completion, false)?.len();
        let problem = self.problem(case);
        Ok(self.rewards.score(&RewardInput {
            completion: &case.completion,
            tokens,
            answer: case.answer.as_deref(),
            problem: problem.as_ref(),
        }))
    }
}

/// A scored line of a completions file.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRow {
    /// 1-based line in the file.
    pub line: u64,
    pub case: CompletionCase,
    pub scored: Scored,
}

/// Every good line of a completions file scored, in file order, and the lines that could not
/// be (unreadable, no `completion`, nothing to judge against).
#[derive(Debug, Clone)]
pub struct ScoredFile {
    pub names: Vec<String>,
    pub rows: Vec<ScoredRow>,
    pub bad_rows: Vec<BadRow>,
}

/// Scores the completions of `path` (JSONL, JSON, CSV/TSV or Parquet: a `prompt`, a
/// `completion` and the answer column per row) with the rewards of `config`. The answer
/// column is the one `[data] mapping` names, else the first of [`ANSWER_COLUMNS`] the file has.
pub fn score_file(config: &RunConfig, origin: &str, path: &Path) -> Result<ScoredFile, TrainError> {
    let checker = RewardChecker::new(config, origin)?;
    let dataset = Dataset::open(path, None)?;
    let mapped = config.data.mapping.as_ref().and_then(|m| m.answer.clone());
    let answer_column = mapped.or_else(|| {
        ANSWER_COLUMNS
            .iter()
            .find(|c| dataset.columns().iter().any(|have| have == *c))
            .map(|c| (*c).to_string())
    });
    let mut rows = Vec::new();
    let mut bad_rows = dataset.bad_rows().to_vec();
    for i in 0..dataset.len() {
        let row = dataset.row(i)?;
        let line = dataset.line_of(i);
        let text = |column: &str| row.get(column).and_then(cell_text);
        let Some(completion) = text("completion") else {
            bad_rows.push(BadRow {
                line,
                message: "no `completion` column".into(),
            });
            continue;
        };
        let case = CompletionCase {
            prompt: text("prompt").unwrap_or_default(),
            completion,
            answer: answer_column.as_deref().and_then(text),
        };
        if case.answer.is_none() && checker.problem(&case).is_none() {
            let why = match checker.task {
                Some(task) => format!(
                    "the prompt is not a `{}` problem and the row has no answer column ({})",
                    task.name(),
                    answer_column
                        .as_deref()
                        .unwrap_or("none of answer, solution, ground_truth, reference")
                ),
                None => format!(
                    "no answer to judge against (column `{}`)",
                    answer_column.as_deref().unwrap_or("answer")
                ),
            };
            bad_rows.push(BadRow { line, message: why });
            continue;
        }
        let scored = checker.score(&case)?;
        rows.push(ScoredRow { line, case, scored });
    }
    bad_rows.sort_by_key(|b| b.line);
    Ok(ScoredFile {
        names: checker.names(),
        rows,
        bad_rows,
    })
}

/// A cell as text: strings as they are, numbers and booleans written out, `null` as none.
fn cell_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
model = "builtin:tiny-reasoner-init"
algorithm = "grpo"
[data]
path = "train.jsonl"
[grpo]
max_completion_length = 40
[[rewards]]
kind = "accuracy"
[[rewards]]
kind = "format"
pattern = '<answer>'
weight = 0.5
"#;

    #[test]
    fn a_file_is_scored_as_training_scores_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("completions.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"prompt": "half of 1?", "completion": "<answer>1/2</answer>", "answer": "0.5"}"#,
                "\n",
                "{\"prompt\": \"p\", \"completion\": \"it is 3\", \"answer\": \"#### 4\"}",
                "\n",
                "not json\n",
                r#"{"prompt": "p", "answer": "4"}"#,
                "\n",
                r#"{"prompt": "p", "completion": "x"}"#,
                "\n",
            ),
        )
        .expect("write");
        let config = RunConfig::from_toml(CONFIG, "run.toml").expect("config");
        let file = score_file(&config, "run.toml", &path).expect("scored");
        assert_eq!(file.names, ["accuracy", "format"]);
        let lines: Vec<u64> = file.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 2]);
        let first = &file.rows[0].scored;
        assert_eq!(first.correct, Some(true), "1/2 is 0.5");
        assert_eq!(
            first.parts,
            [("accuracy".into(), 1.0), ("format".into(), 1.0)]
        );
        assert!((first.total - 1.5).abs() < 1e-12);
        let second = &file.rows[1].scored;
        assert_eq!((second.correct, second.total), (Some(false), 0.0));
        let bad: Vec<u64> = file.bad_rows.iter().map(|b| b.line).collect();
        assert_eq!(bad, [3, 4, 5]);
        assert!(file.bad_rows[1].message.contains("completion"));
        assert!(file.bad_rows[2].message.contains("answer"));
    }

    #[test]
    fn builtin_runs_judge_by_the_problem_their_prompt_states() {
        let config = RunConfig::from_toml(
            &CONFIG.replace("path = \"train.jsonl\"", "builtin = \"countdown\""),
            "run.toml",
        )
        .expect("config");
        let checker = RewardChecker::new(&config, "run.toml").expect("checker");
        let problem = BuiltinTask::Countdown.problem(2, 9);
        let case = |completion: &str| CompletionCase {
            prompt: problem.prompt.clone(),
            completion: completion.into(),
            answer: None,
        };
        let right = checker
            .score(&case(&format!("<answer>{}</answer>", problem.answer)))
            .expect("scored");
        assert_eq!(right.correct, Some(true));
        let wrong = checker
            .score(&case("<answer>1+1</answer>"))
            .expect("scored");
        assert_eq!((wrong.correct, wrong.parts[0].1), (Some(false), 0.0));
    }
}
