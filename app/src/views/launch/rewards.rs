//! "Try the rewards": a completion pasted under a prompt (and the dataset's reference answer)
//! scored by the form's `[[rewards]]` exactly as training scores a rollout
//! (`engine::train::reward_check`): the total, each part by name with its weight and the
//! verdict, scored again on a background job once typing pauses after a change to the boxes or
//! the form.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use egui::{RichText, TextEdit};
use engine::train::RunConfig;
use engine::train::reward_check::{CompletionCase, RewardChecker};
use engine::train::rewards::Scored;

use super::Launch;
use crate::jobs::Job;

/// How long the box waits after the last edit before it scores.
const SCORE_DELAY: Duration = Duration::from_millis(300);

/// (the document's revision, the box's edits) a score is of.
type Key = (u64, u64);

/// A completion as the run's rewards score it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tried {
    pub scored: Scored,
    /// Whether there was something to judge the answer against (a reference answer, or a
    /// built-in task's problem rebuilt from the prompt).
    pub judged: bool,
    /// Each part's weight in the total, in the parts' order.
    pub weights: Vec<f64>,
}

/// The box's state.
#[derive(Default)]
pub struct RewardsTry {
    pub prompt: String,
    pub answer: String,
    pub completion: String,
    /// Bumped on every edit of the three boxes.
    edits: u64,
    changed_at: Option<Instant>,
    scoring: Option<(Key, Job<Result<Tried, String>>)>,
    scored: Option<(Key, Result<Tried, String>)>,
    /// The checker of the config last scored with, and that config: opening the model's
    /// tokenizer is disk work, done again only when the form changes.
    checker: Arc<Mutex<Option<(String, RewardChecker)>>>,
}

impl RewardsTry {
    /// The last score (of the boxes and the form as they were then).
    pub fn result(&self) -> Option<&Result<Tried, String>> {
        self.scored.as_ref().map(|(_, r)| r)
    }

    /// Whether the shown score is of the boxes and the form as they are now.
    fn current(&self, revision: u64) -> bool {
        self.scored
            .as_ref()
            .is_some_and(|(k, _)| *k == (revision, self.edits))
    }
}

impl Launch {
    /// The last score of the "Try the rewards" box, if it is of the form as it is now.
    pub fn tried_rewards(&self) -> Option<&Result<Tried, String>> {
        self.try_rewards
            .current(self.revision)
            .then(|| self.try_rewards.result())
            .flatten()
    }

    /// Collects a finished score; starts one when the boxes or the form changed and typing
    /// paused.
    fn poll_rewards(&mut self, egui_ctx: &egui::Context) {
        let tr = &mut self.try_rewards;
        if let Some((key, job)) = &mut tr.scoring
            && let Some(answer) = job.poll_flat()
        {
            tr.scored = Some((*key, answer));
            tr.scoring = None;
        }
        let key = (self.revision, tr.edits);
        if tr.completion.trim().is_empty()
            || tr.scored.as_ref().is_some_and(|(k, _)| *k == key)
            || tr.scoring.as_ref().is_some_and(|(k, _)| *k == key)
        {
            return;
        }
        let last_edit = [tr.changed_at, self.changed_at].into_iter().flatten().max();
        if last_edit.is_some_and(|t| t.elapsed() < SCORE_DELAY) || tr.scoring.is_some() {
            egui_ctx.request_repaint_after(SCORE_DELAY);
            return;
        }
        let toml = self.run_toml();
        let tr = &mut self.try_rewards;
        let case = CompletionCase {
            prompt: tr.prompt.trim().to_string(),
            completion: tr.completion.clone(),
            answer: Some(tr.answer.trim().to_string()).filter(|a| !a.is_empty()),
        };
        let cache = tr.checker.clone();
        let job = Job::spawn("reward-check", egui_ctx, move |_| {
            score(&toml, &case, &cache)
        });
        tr.scoring = Some((key, job));
    }

    pub(super) fn try_rewards_ui(&mut self, ui: &mut egui::Ui) {
        egui::CollapsingHeader::new(RichText::new("Try the rewards").strong())
            .id_salt("launch_try_rewards")
            .show(ui, |ui| {
                ui.label(
                    RichText::new(
                        "Paste a completion: the run's `rewards` (below) score it as training \
                         scores a rollout.",
                    )
                    .weak(),
                );
                let tr = &mut self.try_rewards;
                let mut changed = false;
                egui::Grid::new("launch_try_rewards_grid")
                    .num_columns(2)
                    .spacing([12.0, 6.0])
                    .show(ui, |ui| {
                        let label = ui.label("Prompt");
                        changed |= ui
                            .add(
                                TextEdit::singleline(&mut tr.prompt)
                                    .hint_text("Make 27 with 10, 9, 9, 1.")
                                    .desired_width(420.0),
                            )
                            .labelled_by(label.id)
                            .changed();
                        ui.end_row();
                        let label = ui.label("Answer").on_hover_text(
                            "The dataset's reference answer; for a built-in task the prompt \
                             is enough",
                        );
                        changed |= ui
                            .add(
                                TextEdit::singleline(&mut tr.answer)
                                    .hint_text("the reference (none for a built-in task)")
                                    .desired_width(420.0),
                            )
                            .labelled_by(label.id)
                            .changed();
                        ui.end_row();
                        let label = ui.label("Completion");
                        changed |= ui
                            .add(
                                TextEdit::multiline(&mut tr.completion)
                                    .desired_rows(4)
                                    .desired_width(420.0)
                                    .hint_text("<think>…</think> <answer>…</answer>"),
                            )
                            .labelled_by(label.id)
                            .changed();
                        ui.end_row();
                    });
                if changed {
                    tr.edits += 1;
                    tr.changed_at = Some(Instant::now());
                }
                self.poll_rewards(ui.ctx());
                self.tried_ui(ui);
            });
    }

    fn tried_ui(&self, ui: &mut egui::Ui) {
        let tr = &self.try_rewards;
        if tr.completion.trim().is_empty() {
            ui.label(RichText::new("Paste a completion to score it.").weak());
            return;
        }
        let stale = !tr.current(self.revision);
        if stale {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("scoring…");
            });
        }
        match tr.result() {
            None => {}
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            Some(Ok(tried)) => {
                let scored = &tried.scored;
                ui.label(RichText::new(format!("total reward {:.3}", scored.total)).strong());
                egui::Grid::new("launch_tried_parts")
                    .num_columns(3)
                    .striped(true)
                    .show(ui, |ui| {
                        for (i, (name, value)) in scored.parts.iter().enumerate() {
                            ui.label(RichText::new(name).monospace());
                            ui.label(format!("{value:.3}"));
                            match tried.weights.get(i) {
                                Some(w) => ui.label(RichText::new(format!("× {w}")).weak()),
                                None => ui.label(""),
                            };
                            ui.end_row();
                        }
                    });
                let verdict = match scored.correct {
                    Some(true) => "verdict: correct".to_string(),
                    Some(false) if tried.judged => "verdict: wrong".to_string(),
                    Some(false) => "verdict: wrong (nothing to judge against: give the answer, \
                                    or a built-in task's prompt)"
                        .to_string(),
                    None => "no verdict: nothing to judge against".to_string(),
                };
                let color = match scored.correct {
                    Some(true) => egui::Color32::from_rgb(60, 170, 90),
                    Some(false) => ui.visuals().error_fg_color,
                    None => ui.visuals().weak_text_color(),
                };
                ui.colored_label(color, verdict);
            }
        }
    }
}

/// Scores `case` with the rewards of the run config `toml` (the checker reused while the
/// config is the same).
fn score(
    toml: &str,
    case: &CompletionCase,
    cache: &Mutex<Option<(String, RewardChecker)>>,
) -> Result<Tried, String> {
    let config = RunConfig::from_toml(toml, "the form").map_err(|e| e.to_string())?;
    if config.rewards.is_empty() {
        return Err(
            "this run has no [[rewards]] to try: add one in the `rewards` setting below".into(),
        );
    }
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if cache.as_ref().is_none_or(|(t, _)| t != toml) {
        *cache = None;
        let checker = RewardChecker::new(&config, "the form").map_err(|e| e.to_string())?;
        *cache = Some((toml.to_string(), checker));
    }
    let Some((_, checker)) = cache.as_ref() else {
        return Err("the rewards could not be compiled".into());
    };
    let judged = case.answer.is_some() || checker.problem(case).is_some();
    let scored = checker.score(case).map_err(|e| e.to_string())?;
    let weights = config.rewards.iter().map(|r| r.weight).collect();
    Ok(Tried {
        scored,
        judged,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"
algorithm = "grpo"
model = "builtin:tiny-reasoner-init"
[data]
builtin = "arithmetic"
[[rewards]]
kind = "accuracy"
[[rewards]]
name = "format"
kind = "format"
pattern = '<answer>'
weight = 0.5
"#;

    #[test]
    fn a_completion_is_scored_part_by_part_with_its_verdict() {
        let cache = Mutex::new(None);
        let case = CompletionCase {
            prompt: "(12+7)*2=".into(),
            completion: "<think>12+7=19, 19*2=38</think> <answer>38</answer>".into(),
            answer: None,
        };
        let tried = score(RUN, &case, &cache).expect("scored");
        assert!(
            tried.judged,
            "the built-in problem is rebuilt from the prompt"
        );
        assert_eq!(tried.scored.correct, Some(true));
        let names: Vec<&str> = tried.scored.parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["accuracy", "format"]);
        assert_eq!(tried.weights, [1.0, 0.5]);
        assert!(
            (tried.scored.total - 1.5).abs() < 1e-9,
            "{:?}",
            tried.scored
        );
        let wrong = CompletionCase {
            completion: "<answer>37</answer>".into(),
            ..case
        };
        assert_eq!(
            score(RUN, &wrong, &cache).expect("scored").scored.correct,
            Some(false)
        );
        let none = RUN.split("[[rewards]]").next().expect("head");
        let error = score(none, &wrong, &cache).expect_err("no rewards");
        assert!(error.contains("[[rewards]]"), "{error}");
    }
}
