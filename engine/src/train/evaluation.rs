//! Evaluations: greedy answers to a set of problems, each checked by its built-in task's
//! verifier or against the dataset's answer column.
//!
//! A run answers its held-out items with [`answer_items`] at its eval cadence; [`evaluate`] does
//! the same for any checkpoint or model on a built-in task or a dataset file and stores the
//! result in the workspace; [`compare_evaluations`] lists the problems that flipped between two
//! stored evaluations ([`flipped`]).

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::checkpoint::{ModelSpec, checkpoint_config, open_checkpoint, open_model_spec};
use super::config::{EvalConfig, SftConfig};
use super::traces::{FinishReason, untrained_tokens};
use super::{RunConfig, TrainError, sft};
use crate::data::builtin::{BuiltinTask, DEFAULT_DIFFICULTY, Problem};
use crate::data::{Dataset, Example, Reference, RoleMapping, judge};
use crate::infer::GeneratedToken;
use crate::models::CausalLm;
use crate::store::{EvaluationId, EvaluationItem, EvaluationRecord, EvaluationSummary, Workspace};
use crate::text::TextTokenizer;

/// Mixed into a run's seed to draw the held-out problems of a built-in task, so they are
/// disjoint from the training problems (drawn with the seed itself).
pub(crate) const EVAL_SEED_SALT: u64 = 0x5eed_e7a1_0000_0001;

/// One problem to answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    pub example: Example,
    /// The built-in problem, for its task's exact verifier; `None` for a dataset row.
    pub problem: Option<Problem>,
}

impl EvalItem {
    /// Whether `completion` answers the item rightly, as [`judge`] decides (the task's verifier
    /// for a built-in problem, else the answer column); false when the item has no answer.
    pub fn is_correct(&self, completion: &str) -> bool {
        Reference::of(self.problem.as_ref(), self.example.answer.as_deref())
            .is_some_and(|reference| judge(completion, reference).correct)
    }
}

/// The first `count` held-out problems of a built-in task for a run seeded `seed`: the items
/// that run evaluates on.
pub fn builtin_items(task: BuiltinTask, seed: u64, difficulty: u8, count: usize) -> Vec<EvalItem> {
    (0..count as u64)
        .map(|i| {
            let problem = task.problem_with(seed ^ EVAL_SEED_SALT, i, difficulty);
            EvalItem {
                example: problem.example(),
                problem: Some(problem),
            }
        })
        .collect()
}

/// A model's greedy answer to one item.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The decoded completion, end-of-sequence tokens left out.
    pub completion: String,
    pub tokens: Vec<GeneratedToken>,
    pub finish: FinishReason,
    pub correct: bool,
}

/// Greedy answers to `items` (one batch), each checked by [`EvalItem::is_correct`].
pub fn answer_items(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    items: &[EvalItem],
    chat: bool,
    max_new_tokens: usize,
) -> Result<Vec<Answer>, TrainError> {
    answer_items_with(model, tokenizer, items, chat, max_new_tokens, &mut |_| {
        ControlFlow::Continue(())
    })
}

/// [`answer_items`], telling `progress` how many items are answered whenever one more is (an
/// item is answered at its end-of-sequence token or at `max_new_tokens`). A `Break` from
/// `progress` stops the generation: the result is [`TrainError::Cancelled`].
///
/// The items stay one batch, so the answers are those [`answer_items`] gives.
pub fn answer_items_with(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    items: &[EvalItem],
    chat: bool,
    max_new_tokens: usize,
    progress: &mut dyn FnMut(usize) -> ControlFlow<()>,
) -> Result<Vec<Answer>, TrainError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let prompts = items
        .iter()
        .map(|item| sft::prompt_ids(tokenizer, &item.example, chat))
        .collect::<Result<Vec<_>, _>>()?;
    let stop = &model.config.eos_token_ids;
    // Generation stops early at the context's end; an item that runs into it is answered with
    // the batch.
    let mut lengths = vec![0usize; items.len()];
    let mut answered = 0;
    let mut cancelled = false;
    let rows =
        sft::greedy_completions_with(model, tokenizer, prompts, max_new_tokens, |row, token| {
            let Some(length) = lengths.get_mut(row) else {
                return ControlFlow::Continue(());
            };
            *length += 1;
            if stop.contains(&token.id) || *length == max_new_tokens {
                answered += 1;
                if progress(answered).is_break() {
                    cancelled = true;
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })?;
    if cancelled {
        return Err(TrainError::Cancelled {
            what: "the evaluation".into(),
        });
    }
    Ok(rows
        .into_iter()
        .zip(items)
        .map(|((tokens, completion), item)| Answer {
            correct: item.is_correct(&completion),
            finish: FinishReason::of(&tokens, stop),
            tokens,
            completion,
        })
        .collect())
}

/// Where an evaluation's problems come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvalData {
    /// A built-in task by name: its held-out problems.
    Builtin(String),
    /// A dataset file (JSONL, JSON, CSV/TSV, Parquet) with an answer column: its first rows.
    File(PathBuf),
}

/// Settings of [`evaluate`]; `None` takes the checkpoint's run config, else the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalOptions {
    /// Problems to answer (a run's `eval.count`, else 32).
    pub count: Option<usize>,
    /// The seed a built-in task's problems are drawn with (the run's `seed`, else 0).
    pub seed: Option<u64>,
    /// Difficulty of a built-in task's problems (the run's `data.difficulty`, else 1).
    pub difficulty: Option<u8>,
    /// Where the model answers (the CPU by default).
    pub backend: crate::backend::BackendKind,
}

/// How errors of [`evaluate`]'s settings name where they come from.
const ORIGIN: &str = "the evaluation";

fn bad_setting(setting: &str, problem: impl Into<String>) -> TrainError {
    TrainError::Setting {
        origin: ORIGIN.into(),
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// Evaluates what `spec` names (a checkpoint id, `RUN:STEP` or a model; see [`ModelSpec`]) on
/// `data`, greedily, and stores the evaluation in `workspace`.
///
/// A checkpoint's run config gives the chat setting, `eval.max_new_tokens`, `eval.count`, and
/// for a built-in task the seed and difficulty, so a run's final checkpoint evaluated on its own
/// task answers exactly the run's held-out problems. A file gives its first `count` rows, roles
/// from the run's `data.mapping` when the run trained on that file, else the mapping saved in
/// the workspace for it, else detection; it needs an answer column.
pub fn evaluate(
    workspace: &Workspace,
    spec: &str,
    data: &EvalData,
    options: &EvalOptions,
) -> Result<(EvaluationRecord, Vec<EvaluationItem>), TrainError> {
    evaluate_with(workspace, spec, data, options, &mut |_| {
        ControlFlow::Continue(())
    })
}

/// How far an [`evaluate_with`] has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalProgress {
    /// The problems are drawn; the model is being opened.
    Opening { total: usize },
    /// `answered` of `total` problems are answered.
    Answering { answered: usize, total: usize },
}

/// [`evaluate`], telling `progress` how far it has got; a `Break` from it cancels the
/// evaluation ([`TrainError::Cancelled`], nothing stored).
pub fn evaluate_with(
    workspace: &Workspace,
    spec: &str,
    data: &EvalData,
    options: &EvalOptions,
    progress: &mut dyn FnMut(EvalProgress) -> ControlFlow<()>,
) -> Result<(EvaluationRecord, Vec<EvaluationItem>), TrainError> {
    let cancelled = || TrainError::Cancelled {
        what: "the evaluation".into(),
    };
    let checkpoint = match ModelSpec::parse(spec) {
        ModelSpec::Checkpoint(at) => Some(at.find(workspace)?),
        ModelSpec::Model(_) => None,
    };
    let config = checkpoint
        .as_ref()
        .map(|c| checkpoint_config(workspace, c))
        .transpose()?;
    let eval = config
        .as_ref()
        .map_or_else(EvalConfig::default, |c| c.eval.clone());
    let chat = config
        .as_ref()
        .map_or(SftConfig::default().chat_template, RunConfig::chat_template);
    let count = options.count.unwrap_or(eval.count);
    if count == 0 {
        return Err(bad_setting("count", "must be at least 1"));
    }
    let problems = problems(workspace, config.as_ref(), data, options, count)?;
    let total = problems.items.len();
    if progress(EvalProgress::Opening { total }).is_break() {
        return Err(cancelled());
    }
    let backend = crate::backend::Backend::new(options.backend)?;
    let opened = match &checkpoint {
        Some(c) => open_checkpoint(workspace, c, &backend)?,
        None => open_model_spec(None, spec, &backend)?,
    };
    if progress(EvalProgress::Answering { answered: 0, total }).is_break() {
        return Err(cancelled());
    }
    let model = &opened.loaded;
    let answers = answer_items_with(
        &model.model,
        &model.tokenizer,
        &problems.items,
        chat,
        eval.max_new_tokens,
        &mut |answered| progress(EvalProgress::Answering { answered, total }),
    )?;
    let items: Vec<EvaluationItem> = problems
        .items
        .iter()
        .zip(answers)
        .enumerate()
        .map(|(index, (item, answer))| EvaluationItem {
            index,
            prompt: item.example.prompt.clone(),
            answer: item.example.answer.clone(),
            tokens: untrained_tokens(&answer.tokens),
            completion: answer.completion,
            correct: answer.correct,
            finish_reason: answer.finish.as_str().to_string(),
        })
        .collect();
    let correct = items.iter().filter(|i| i.correct).count();
    let summary = EvaluationSummary {
        checkpoint_id: checkpoint.as_ref().map(|c| c.id),
        run_id: checkpoint.as_ref().map(|c| c.run_id),
        step: checkpoint.as_ref().map(|c| c.step),
        model: config.map_or_else(|| spec.to_string(), |c| c.model),
        source: problems.source,
        difficulty: problems.difficulty,
        seed: problems.seed,
        count: items.len(),
        chat,
        max_new_tokens: eval.max_new_tokens,
        accuracy: correct as f64 / items.len().max(1) as f64,
    };
    let id = workspace.add_evaluation(&summary, &items)?;
    Ok(workspace.evaluation(id)?)
}

/// The problems of an evaluation and how it records their source.
struct Problems {
    items: Vec<EvalItem>,
    source: String,
    difficulty: Option<u8>,
    seed: Option<u64>,
}

fn problems(
    workspace: &Workspace,
    config: Option<&RunConfig>,
    data: &EvalData,
    options: &EvalOptions,
    count: usize,
) -> Result<Problems, TrainError> {
    match data {
        EvalData::Builtin(name) => {
            let task = BuiltinTask::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = BuiltinTask::ALL.iter().map(|t| t.name()).collect();
                bad_setting(
                    "builtin",
                    format!(
                        "names an unknown built-in task `{name}` (the tasks are {})",
                        known.join(", ")
                    ),
                )
            })?;
            let seed = options.seed.or(config.map(|c| c.seed)).unwrap_or(0);
            let difficulty = options
                .difficulty
                .or(config.map(|c| c.data.difficulty))
                .unwrap_or(DEFAULT_DIFFICULTY);
            Ok(Problems {
                items: builtin_items(task, seed, difficulty, count),
                source: format!("builtin:{}", task.name()),
                difficulty: Some(difficulty),
                seed: Some(seed),
            })
        }
        EvalData::File(path) => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            let mapping = file_mapping(workspace, config, path, &absolute)?;
            let dataset = Dataset::open(path, mapping.as_ref())
                .map_err(|e| bad_setting("data", e.to_string()))?;
            if dataset.roles().answer.is_none() {
                return Err(bad_setting(
                    "data",
                    format!(
                        "{} has no answer column, which the answers are checked against (its \
                         columns are {}); name it in a role mapping saved for the file (the \
                         Datasets view) or in the run's [data.mapping]",
                        path.display(),
                        dataset.columns().join(", ")
                    ),
                ));
            }
            if dataset.is_empty() {
                return Err(bad_setting(
                    "data",
                    format!("{} has no usable rows", path.display()),
                ));
            }
            let items = (0..count.min(dataset.len()))
                .map(|i| {
                    Ok(EvalItem {
                        example: dataset
                            .example(i)
                            .map_err(|e| bad_setting("data", e.to_string()))?,
                        problem: None,
                    })
                })
                .collect::<Result<Vec<_>, TrainError>>()?;
            Ok(Problems {
                items,
                source: absolute.display().to_string(),
                difficulty: None,
                seed: None,
            })
        }
    }
}

/// The role mapping of a dataset file: the run's when it trained on that file, else the one
/// saved in the workspace for it (under the path as given or made absolute), else none.
fn file_mapping(
    workspace: &Workspace,
    config: Option<&RunConfig>,
    path: &Path,
    absolute: &Path,
) -> Result<Option<RoleMapping>, TrainError> {
    if let Some(c) = config
        && let Some(run_path) = &c.data.path
        && c.data.mapping.is_some()
        && std::path::absolute(run_path).is_ok_and(|p| p == absolute)
    {
        return Ok(c.data.mapping.clone());
    }
    for key in [path, absolute] {
        if let Some(record) = workspace.dataset(&key.display().to_string())?
            && let Some(mapping) = record.mapping::<RoleMapping>()
        {
            return Ok(Some(mapping));
        }
    }
    Ok(None)
}

/// The problems whose verdict changed between two evaluations of the same problems, A then B.
///
/// Items are matched by prompt text (the k-th occurrence of a prompt in A with its k-th in B),
/// since two evaluations of one source share their prompts; each flipped problem is the pair
/// `(A's item index, B's item index)`, in A's order. Prompts in only one of them are in
/// neither flipped list, but in `only_in_a` / `only_in_b`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Flipped {
    /// Problems A got right and B got wrong.
    pub right_to_wrong: Vec<(usize, usize)>,
    /// Problems A got wrong and B got right.
    pub wrong_to_right: Vec<(usize, usize)>,
    /// A's item indices whose prompt B does not have.
    pub only_in_a: Vec<usize>,
    /// B's item indices whose prompt A does not have.
    pub only_in_b: Vec<usize>,
}

/// The flipped problems from evaluation items `a` to `b` (see [`Flipped`]).
pub fn flipped(a: &[EvaluationItem], b: &[EvaluationItem]) -> Flipped {
    let mut in_b: HashMap<&str, VecDeque<&EvaluationItem>> = HashMap::new();
    for item in b {
        in_b.entry(item.prompt.as_str())
            .or_default()
            .push_back(item);
    }
    let mut out = Flipped::default();
    for item in a {
        match in_b
            .get_mut(item.prompt.as_str())
            .and_then(VecDeque::pop_front)
        {
            Some(other) => match (item.correct, other.correct) {
                (true, false) => out.right_to_wrong.push((item.index, other.index)),
                (false, true) => out.wrong_to_right.push((item.index, other.index)),
                _ => {}
            },
            None => out.only_in_a.push(item.index),
        }
    }
    out.only_in_b = b
        .iter()
        .filter(|item| {
            in_b.get(item.prompt.as_str())
                .is_some_and(|left| left.iter().any(|l| std::ptr::eq(*l, *item)))
        })
        .map(|item| item.index)
        .collect();
    out
}

/// What a stored evaluation evaluated, as `studio eval --checkpoint` takes it: `RUN:STEP` for
/// a checkpoint, else the model.
pub fn evaluated_model(summary: &EvaluationSummary) -> String {
    match (summary.run_id, summary.step) {
        (Some(run), Some(step)) => format!("{run}:{step}"),
        _ => summary.model.clone(),
    }
}

/// A stored evaluation's problem set, as errors name it: the source with a built-in task's
/// seed and difficulty.
pub fn problem_set(summary: &EvaluationSummary) -> String {
    match (summary.seed, summary.difficulty) {
        (Some(seed), Some(difficulty)) => {
            format!("{} seed {seed} difficulty {difficulty}", summary.source)
        }
        _ => summary.source.clone(),
    }
}

/// Two stored evaluations and the problems that flipped between them.
#[derive(Debug, Clone)]
pub struct ComparedEvaluations {
    pub a: (EvaluationRecord, Vec<EvaluationItem>),
    pub b: (EvaluationRecord, Vec<EvaluationItem>),
    pub flipped: Flipped,
}

/// Reads evaluations `a` and `b` and lists the problems that flipped from A to B; they must be
/// of the same problem set ([`problem_set`]).
pub fn compare_evaluations(
    workspace: &Workspace,
    a: EvaluationId,
    b: EvaluationId,
) -> Result<ComparedEvaluations, TrainError> {
    let first = workspace.evaluation(a)?;
    let second = workspace.evaluation(b)?;
    let (set_a, set_b) = (
        problem_set(&first.0.summary),
        problem_set(&second.0.summary),
    );
    if set_a != set_b {
        return Err(TrainError::DifferentSources {
            a,
            b,
            source_a: set_a,
            source_b: set_b,
        });
    }
    let flipped = flipped(&first.1, &second.1);
    Ok(ComparedEvaluations {
        a: first,
        b: second,
        flipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: usize, prompt: &str, correct: bool) -> EvaluationItem {
        EvaluationItem {
            index,
            prompt: prompt.into(),
            answer: Some("1".into()),
            completion: String::new(),
            correct,
            finish_reason: "eos".into(),
            tokens: Vec::new(),
        }
    }

    #[test]
    fn flipped_problems_of_a_synthetic_pair() {
        // A and B share p0..p5 (B in another order), p2 twice; A alone has p6, B alone p7.
        let a = [
            item(0, "p0", true),  // right → wrong
            item(1, "p1", false), // wrong → right
            item(2, "p2", true),  // first p2: stays right
            item(3, "p3", false), // stays wrong
            item(4, "p2", true),  // second p2: right → wrong
            item(5, "p5", false), // wrong → right
            item(6, "p6", true),  // only in A
        ];
        let b = [
            item(0, "p5", true),
            item(1, "p2", true),
            item(2, "p3", false),
            item(3, "p0", false),
            item(4, "p7", false), // only in B
            item(5, "p1", true),
            item(6, "p2", false),
        ];
        let f = flipped(&a, &b);
        assert_eq!(f.right_to_wrong, [(0, 3), (4, 6)]);
        assert_eq!(f.wrong_to_right, [(1, 5), (5, 0)]);
        assert_eq!(f.only_in_a, [6]);
        assert_eq!(f.only_in_b, [4]);

        // The other way round, the lists swap (pairs are now (B's, A's)).
        let back = flipped(&b, &a);
        assert_eq!(back.right_to_wrong, [(0, 5), (5, 1)]);
        assert_eq!(back.wrong_to_right, [(3, 0), (6, 4)]);
        assert_eq!(back.only_in_a, [4]);
        assert_eq!(back.only_in_b, [6]);

        // An evaluation against itself flips nothing.
        assert_eq!(flipped(&a, &a), Flipped::default());
    }

    #[test]
    fn builtin_items_are_the_held_out_problems_and_are_checked_by_the_verifier() {
        let items = builtin_items(BuiltinTask::Arithmetic, 7, 1, 3);
        assert_eq!(items.len(), 3);
        for (i, item) in items.iter().enumerate() {
            let expected = BuiltinTask::Arithmetic.problem_with(7 ^ EVAL_SEED_SALT, i as u64, 1);
            assert_eq!(item.example.prompt, expected.prompt);
            assert!(item.is_correct(&expected.answer));
            assert!(!item.is_correct("not a number"));
        }
        // Not the training problems of the same seed.
        assert_ne!(
            items[0].example.prompt,
            BuiltinTask::Arithmetic.problem_with(7, 0, 1).prompt
        );
        let row = EvalItem {
            example: Example {
                prompt: "Capital of France?".into(),
                reasoning: None,
                answer: Some("Paris".into()),
                messages: Vec::new(),
                image: None,
            },
            problem: None,
        };
        assert!(row.is_correct(" paris "));
        assert!(!row.is_correct("Lyon"));
    }

    #[test]
    fn progress_counts_every_answer_and_a_break_cancels_without_storing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = Workspace::open(&dir.path().join("ws")).expect("workspace");
        let data = EvalData::Builtin("arithmetic".into());
        let options = EvalOptions {
            count: Some(5),
            ..EvalOptions::default()
        };
        let mut seen = Vec::new();
        let (record, items) = evaluate_with(
            &workspace,
            "builtin:tiny-reasoner",
            &data,
            &options,
            &mut |p| {
                seen.push(p);
                ControlFlow::Continue(())
            },
        )
        .expect("evaluated");
        assert_eq!(items.len(), 5);
        assert_eq!(seen[0], EvalProgress::Opening { total: 5 });
        let answered: Vec<usize> = seen[1..]
            .iter()
            .map(|p| match p {
                EvalProgress::Answering { answered, total: 5 } => *answered,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            answered,
            [0, 1, 2, 3, 4, 5],
            "one report per answered problem"
        );
        // The same answers as without progress (one batch either way).
        let (_, plain) =
            evaluate(&workspace, "builtin:tiny-reasoner", &data, &options).expect("evaluated");
        assert_eq!(
            items.iter().map(|i| &i.completion).collect::<Vec<_>>(),
            plain.iter().map(|i| &i.completion).collect::<Vec<_>>()
        );
        assert_eq!(workspace.evaluations(None).expect("list").len(), 2);

        let mut calls = 0;
        let cancelled = evaluate_with(
            &workspace,
            "builtin:tiny-reasoner",
            &data,
            &options,
            &mut |p| {
                calls += 1;
                if matches!(p, EvalProgress::Answering { answered: 2, .. }) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
        assert!(
            matches!(cancelled, Err(TrainError::Cancelled { .. })),
            "{cancelled:?}"
        );
        assert_eq!(calls, 4, "no report after the break");
        assert_eq!(
            workspace.evaluations(None).expect("list").len(),
            2,
            "{record:?}"
        );
    }

    #[test]
    fn bad_sources_name_the_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = Workspace::open(&dir.path().join("ws")).expect("workspace");
        let options = EvalOptions::default();
        let message =
            |data: &EvalData| match evaluate(&workspace, "builtin:tiny-reasoner", data, &options) {
                Ok(_) => panic!("{data:?} evaluated"),
                Err(e) => e.to_string(),
            };
        let unknown = message(&EvalData::Builtin("sudoku".into()));
        assert!(
            unknown.contains("`builtin`")
                && unknown.contains("sudoku")
                && unknown.contains("countdown"),
            "{unknown}"
        );
        let missing = dir.path().join("missing.jsonl");
        let text = message(&EvalData::File(missing.clone()));
        assert!(
            text.contains("`data`") && text.contains(&missing.display().to_string()),
            "{text}"
        );
        let no_answer = dir.path().join("prompts.jsonl");
        std::fs::write(
            &no_answer,
            "{\"prompt\": \"1+1=\"}\n{\"prompt\": \"2+2=\"}\n",
        )
        .expect("write");
        let text = message(&EvalData::File(no_answer));
        assert!(text.contains("no answer column"), "{text}");
        let zero = evaluate(
            &workspace,
            "builtin:tiny-reasoner",
            &EvalData::Builtin("arithmetic".into()),
            &EvalOptions {
                count: Some(0),
                ..EvalOptions::default()
            },
        );
        assert!(zero.is_err_and(|e| e.to_string().contains("`count`")));
        assert!(workspace.evaluations(None).expect("list").is_empty());
    }

    #[test]
    fn evaluations_of_different_sources_are_not_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = Workspace::open(dir.path()).expect("workspace");
        let summary = |source: &str, seed: Option<u64>| EvaluationSummary {
            checkpoint_id: None,
            run_id: None,
            step: None,
            model: "builtin:tiny-reasoner".into(),
            source: source.into(),
            difficulty: seed.map(|_| 1),
            seed,
            count: 1,
            chat: false,
            max_new_tokens: 8,
            accuracy: 1.0,
        };
        let items = [item(0, "p0", true)];
        let a = workspace
            .add_evaluation(&summary("builtin:arithmetic", Some(3)), &items)
            .expect("a");
        let b = workspace
            .add_evaluation(&summary("builtin:arithmetic", Some(4)), &items)
            .expect("b");
        let c = workspace
            .add_evaluation(
                &summary("builtin:arithmetic", Some(3)),
                &[item(0, "p0", false)],
            )
            .expect("c");
        let error = compare_evaluations(&workspace, a, b).expect_err("different seeds");
        let message = error.to_string();
        assert!(
            message.contains("seed 3") && message.contains("seed 4"),
            "{message}"
        );
        let compared = compare_evaluations(&workspace, a, c).expect("same source");
        assert_eq!(compared.flipped.right_to_wrong, [(0, 0)]);
        assert_eq!(compared.a.0.id, a);
    }
}
