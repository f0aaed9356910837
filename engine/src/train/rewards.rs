//! Verifiable rewards, composable and weighted (`[[rewards]]` tables of a GRPO run): each has a
//! name (logged as `rewards/<name>/mean` and `/std`), a kind and a weight; a completion's
//! reward is the weighted sum of the parts, as in TRL.
//!
//! - `accuracy`: 1 when the completion's answer is the example's, as [`judge`] decides for every
//!   caller (evaluations, traces, `studio rewards`): built-in tasks use their exact verifiers
//!   (countdown checks the expression); other datasets compare the answer extracted from
//!   `<answer>…</answer>`, the last `\boxed{x}`, GSM8K's `#### x` or else the last number, by
//!   exact value when both are numbers, else as text (the rules: [`crate::data::answer`]).
//! - `format`: 1 when the completion matches a regular expression (`pattern`).
//! - `length`: `−tokens / max_completion_length`, a pressure toward short answers.
//! - `overlong`: DAPO's soft overlong penalty: 0 up to `max_length − cache` tokens, then falling
//!   linearly to −1 at `max_length`, and −1 beyond.

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::data::builtin::Problem;
use crate::data::{Reference, judge};

/// One `[[rewards]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSpec {
    /// Name in the metrics (`rewards/<name>/mean`). Default: the kind.
    #[serde(default)]
    pub name: Option<String>,
    /// `accuracy`, `format`, `length` or `overlong`.
    pub kind: RewardKind,
    /// Multiplies the part in the sum. Default 1.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// `format`: the regular expression a completion must match (searched, not anchored).
    #[serde(default)]
    pub pattern: Option<String>,
    /// `overlong`: the length at which the penalty reaches −1. Default: `max_completion_length`.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// `overlong`: how many tokens before `max_length` the penalty starts. Default: a quarter
    /// of `max_length`.
    #[serde(default)]
    pub cache: Option<usize>,
}

fn default_weight() -> f64 {
    1.0
}

/// What a reward checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    Accuracy,
    Format,
    Length,
    Overlong,
}

impl RewardKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::Format => "format",
            Self::Length => "length",
            Self::Overlong => "overlong",
        }
    }
}

/// Why a reward table cannot be used. `index` is the table's position (0-based) in `rewards`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RewardError {
    #[error("rewards[{index}] ({name}): `pattern` is required for kind = \"format\"")]
    MissingPattern { index: usize, name: String },
    #[error(
        "rewards[{index}] ({name}): `pattern` does not compile as a regular expression: {message}"
    )]
    BadPattern {
        index: usize,
        name: String,
        message: String,
    },
    #[error("rewards[{index}] ({name}): `{setting}` {problem}")]
    BadSetting {
        index: usize,
        name: String,
        setting: &'static str,
        problem: String,
    },
    #[error("rewards: two tables are named `{name}`; give each a distinct `name`")]
    DuplicateName { name: String },
    #[error(
        "rewards: the run has none; add at least one [[rewards]] table (e.g. kind = \"accuracy\")"
    )]
    Empty,
}

/// What a completion is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RewardInput<'a> {
    pub completion: &'a str,
    /// Generated tokens.
    pub tokens: usize,
    /// The example's reference answer, if the dataset has one.
    pub answer: Option<&'a str>,
    /// The built-in problem, for its exact verifier.
    pub problem: Option<&'a Problem>,
}

/// One compiled reward.
#[derive(Debug, Clone)]
pub struct Reward {
    pub name: String,
    pub weight: f64,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    Accuracy,
    Format(Regex),
    Length { max_completion_length: usize },
    Overlong { max_length: usize, cache: usize },
}

/// The rewards of a run, compiled.
#[derive(Debug, Clone)]
pub struct RewardSet {
    pub rewards: Vec<Reward>,
}

/// A completion's reward and its parts, by name, in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub total: f64,
    pub parts: Vec<(String, f64)>,
    /// The verdict on the completion's answer ([`judge`]), whatever the rewards are; `None`
    /// when there is nothing to judge against and no accuracy reward (with one, `Some(false)`:
    /// the part is 0).
    pub correct: Option<bool>,
}

impl RewardSet {
    /// Compiles the tables; `max_completion_length` is the run's.
    pub fn compile(
        specs: &[RewardSpec],
        max_completion_length: usize,
    ) -> Result<Self, RewardError> {
        if specs.is_empty() {
            return Err(RewardError::Empty);
        }
        let mut rewards: Vec<Reward> = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let name = spec
                .name
                .clone()
                .unwrap_or_else(|| spec.kind.name().to_string());
            if rewards.iter().any(|r| r.name == name) {
                return Err(RewardError::DuplicateName { name });
            }
            if !spec.weight.is_finite() {
                return Err(RewardError::BadSetting {
                    index,
                    name,
                    setting: "weight",
                    problem: format!("must be a finite number, found {}", spec.weight),
                });
            }
            let check = match spec.kind {
                RewardKind::Accuracy => Check::Accuracy,
                RewardKind::Format => {
                    let pattern =
                        spec.pattern
                            .as_deref()
                            .ok_or_else(|| RewardError::MissingPattern {
                                index,
                                name: name.clone(),
                            })?;
                    Check::Format(Regex::new(pattern).map_err(|e| RewardError::BadPattern {
                        index,
                        name: name.clone(),
                        message: e.to_string(),
                    })?)
                }
                RewardKind::Length => Check::Length {
                    max_completion_length: max_completion_length.max(1),
                },
                RewardKind::Overlong => {
                    let max_length = spec.max_length.unwrap_or(max_completion_length);
                    let cache = spec.cache.unwrap_or(max_length / 4);
                    if max_length == 0 || cache == 0 || cache > max_length {
                        return Err(RewardError::BadSetting {
                            index,
                            name,
                            setting: "cache",
                            problem: format!(
                                "must be between 1 and max_length ({max_length}), found {cache}"
                            ),
                        });
                    }
                    Check::Overlong { max_length, cache }
                }
            };
            rewards.push(Reward {
                name,
                weight: spec.weight,
                check,
            });
        }
        Ok(Self { rewards })
    }

    /// The reward of one completion.
    pub fn score(&self, input: &RewardInput<'_>) -> Scored {
        let mut total = 0.0;
        let verdict = Reference::of(input.problem, input.answer)
            .map(|reference| judge(input.completion, reference).correct);
        let has_accuracy = self
            .rewards
            .iter()
            .any(|r| matches!(r.check, Check::Accuracy));
        let correct = verdict.or(has_accuracy.then_some(false));
        let parts = self
            .rewards
            .iter()
            .map(|r| {
                let value = match &r.check {
                    Check::Accuracy => f64::from(u8::from(correct == Some(true))),
                    Check::Format(re) => f64::from(u8::from(re.is_match(input.completion))),
                    Check::Length {
                        max_completion_length,
                    } => -(input.tokens as f64) / *max_completion_length as f64,
                    Check::Overlong { max_length, cache } => {
                        overlong_penalty(input.tokens, *max_length, *cache)
                    }
                };
                total += r.weight * value;
                (r.name.clone(), value)
            })
            .collect();
        Scored {
            total,
            parts,
            correct,
        }
    }
}

/// DAPO's soft overlong punishment.
pub fn overlong_penalty(tokens: usize, max_length: usize, cache: usize) -> f64 {
    let start = max_length.saturating_sub(cache);
    if tokens <= start {
        0.0
    } else if tokens <= max_length {
        (start as f64 - tokens as f64) / cache as f64
    } else {
        -1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::builtin::BuiltinTask;

    fn spec(kind: RewardKind) -> RewardSpec {
        RewardSpec {
            name: None,
            kind,
            weight: 1.0,
            pattern: None,
            max_length: None,
            cache: None,
        }
    }

    fn input<'a>(completion: &'a str, answer: Option<&'a str>) -> RewardInput<'a> {
        RewardInput {
            completion,
            tokens: 10,
            answer,
            problem: None,
        }
    }

    #[test]
    fn accuracy_uses_the_dataset_answer_or_the_builtin_verifier() {
        let set = RewardSet::compile(&[spec(RewardKind::Accuracy)], 64).expect("compiles");
        let scored = set.score(&input("The total is 72.", Some("48 + 24 = 72\n#### 72")));
        assert_eq!((scored.total, scored.correct), (1.0, Some(true)));
        let scored = set.score(&input("The total is 71.", Some("#### 72")));
        assert_eq!((scored.total, scored.correct), (0.0, Some(false)));
        assert_eq!(set.score(&input("72", None)).correct, Some(false));
        // Countdown: any expression that reaches the target with the numbers is correct.
        let problem = BuiltinTask::Countdown.problem(3, 7);
        let target = problem.target.expect("target");
        let answer = problem.answer.clone();
        let with = |completion: &str| {
            set.score(&RewardInput {
                completion,
                tokens: 5,
                answer: Some(&answer),
                problem: Some(&problem),
            })
            .total
        };
        assert_eq!(with(&format!("<answer>{answer}</answer>")), 1.0);
        assert_eq!(
            with(&format!("<answer>{target}</answer>")),
            0.0,
            "the bare target is no expression"
        );
    }

    #[test]
    fn parts_are_weighted_and_named() {
        let specs = [
            RewardSpec {
                weight: 2.0,
                ..spec(RewardKind::Accuracy)
            },
            RewardSpec {
                name: Some("fmt".into()),
                pattern: Some(r"(?s)<think>.*</think>\s*<answer>.*</answer>".into()),
                weight: 0.5,
                ..spec(RewardKind::Format)
            },
            spec(RewardKind::Length),
        ];
        let set = RewardSet::compile(&specs, 40).expect("compiles");
        let s = set.score(&input("<think>6*7</think> <answer>42</answer>", Some("42")));
        assert_eq!(
            s.parts,
            [
                ("accuracy".to_string(), 1.0),
                ("fmt".to_string(), 1.0),
                ("length".to_string(), -0.25)
            ]
        );
        assert!((s.total - (2.0 + 0.5 - 0.25)).abs() < 1e-12);
        let s = set.score(&input("<answer>42</answer>", Some("42")));
        assert_eq!(s.parts[1].1, 0.0, "no think block");
    }

    #[test]
    fn overlong_penalty_is_soft_then_full() {
        assert_eq!(overlong_penalty(90, 128, 32), 0.0);
        assert_eq!(overlong_penalty(96, 128, 32), 0.0);
        assert_eq!(overlong_penalty(112, 128, 32), -0.5);
        assert_eq!(overlong_penalty(128, 128, 32), -1.0);
        assert_eq!(overlong_penalty(300, 128, 32), -1.0);
    }

    #[test]
    fn bad_tables_name_the_table_and_setting() {
        let e = RewardSet::compile(&[spec(RewardKind::Format)], 8).expect_err("no pattern");
        assert_eq!(
            e,
            RewardError::MissingPattern {
                index: 0,
                name: "format".into()
            }
        );
        let bad = RewardSpec {
            pattern: Some("(<think>".into()),
            ..spec(RewardKind::Format)
        };
        let e = RewardSet::compile(&[spec(RewardKind::Accuracy), bad], 8).expect_err("bad regex");
        assert!(
            e.to_string()
                .starts_with("rewards[1] (format): `pattern` does not compile"),
            "{e}"
        );
        let e = RewardSet::compile(&[spec(RewardKind::Accuracy), spec(RewardKind::Accuracy)], 8)
            .expect_err("duplicate");
        assert!(matches!(e, RewardError::DuplicateName { .. }));
        assert_eq!(
            RewardSet::compile(&[], 8).expect_err("empty"),
            RewardError::Empty
        );
    }
}
