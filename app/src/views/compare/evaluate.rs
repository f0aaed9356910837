//! The Evaluate tab: each checkpoint on a built-in task or a dataset file, with progress; the
//! stored evaluations with accuracy per checkpoint; the problems that flipped between two
//! evaluations (`FlipShown`), each opening both completions side by side.

use std::collections::{BTreeMap, HashMap};

use egui::{Color32, RichText};
use engine::data::builtin::BuiltinTask;
use engine::store::EvaluationRecord;
use engine::train::checkpoint::{CheckpointRef, ModelSpec};
use engine::train::evaluation::{EvalData, EvalProgress, evaluated_model, problem_set};
use serde::{Deserialize, Serialize};

use super::slots::{label_of, slot_color};
use super::worker::{FlippedPair, Job, StoreRequest};
use super::{CompareSettings, CompareView, Running};
use crate::context::AppContext;
use crate::views::traces::{drawable, empty_ui, one_line, view_tokens};
use crate::widgets::token_heatmap::{gradient_legend_ui, heat_color};
use crate::widgets::token_view::{Colouring, TokenView};

/// Where an evaluation's problems come from, as the form picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EvalSourceKind {
    #[default]
    Builtin,
    File,
}

/// Two completions of a flipped problem, side by side.
pub(super) struct FlipShown {
    /// (A's item, B's item).
    items: (usize, usize),
    views: [TokenView; 2],
}

impl CompareView {
    /// Each evaluation started here: its stored record, or its error.
    pub fn evaluated(&self) -> Vec<Option<Result<&EvaluationRecord, &str>>> {
        self.evals
            .iter()
            .map(|(_, r)| r.as_ref().map(|r| r.as_ref().map_err(String::as_str)))
            .collect()
    }

    /// The flipped problems of the chosen A and B, once read.
    pub fn flipped(&self) -> Option<Result<&FlippedPair, &str>> {
        self.flipped
            .as_ref()
            .map(|(_, r)| r.as_ref().map(|p| &**p).map_err(String::as_str))
    }

    /// The flipped problem opened side by side, as (A's item, B's item).
    pub fn flip_opened(&self) -> Option<(usize, usize)> {
        self.flip_shown.as_ref().map(|s| s.items)
    }

    pub(super) fn evaluate_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &AppContext,
        settings: &mut CompareSettings,
    ) {
        let busy = self.running.is_some_and(|r| r.1 == Running::Evaluate);
        ui.horizontal_wrapped(|ui| {
            ui.label("problems");
            ui.selectable_value(
                &mut settings.eval_source,
                EvalSourceKind::Builtin,
                "built-in task",
            );
            ui.selectable_value(
                &mut settings.eval_source,
                EvalSourceKind::File,
                "dataset file",
            );
            match settings.eval_source {
                EvalSourceKind::Builtin => {
                    let name = ui.label("task");
                    egui::ComboBox::from_id_salt("compare_eval_task")
                        .selected_text(settings.eval_task.clone())
                        .show_ui(ui, |ui| {
                            for task in BuiltinTask::ALL {
                                ui.selectable_value(
                                    &mut settings.eval_task,
                                    task.name().to_string(),
                                    task.name(),
                                );
                            }
                        })
                        .response
                        .labelled_by(name.id);
                }
                EvalSourceKind::File => {
                    ui.add(
                        egui::TextEdit::singleline(&mut settings.eval_file)
                            .hint_text("a JSONL/JSON/CSV/Parquet file with an answer column")
                            .desired_width(320.0),
                    );
                }
            }
            ui.label("count");
            ui.add(egui::DragValue::new(&mut settings.eval_count).range(1..=100_000));
            if busy {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
            } else {
                let ready = !settings.specs.is_empty()
                    && (settings.eval_source == EvalSourceKind::Builtin
                        || !settings.eval_file.trim().is_empty());
                if ui
                    .add_enabled(
                        ready,
                        egui::Button::new(format!("Evaluate the {} picked", settings.specs.len())),
                    )
                    .on_hover_text(
                        "Greedy answers, checked by the task's verifier or the answer column; a \
                         built-in task draws the held-out problems of the first checkpoint's run \
                         for all; \
                         stored in the workspace (studio eval --list)",
                    )
                    .clicked()
                {
                    let data = match settings.eval_source {
                        EvalSourceKind::Builtin => EvalData::Builtin(settings.eval_task.clone()),
                        EvalSourceKind::File => EvalData::File(settings.eval_file.trim().into()),
                    };
                    self.evals = settings.specs.iter().map(|_| (None, None)).collect();
                    let job = Job::Evaluate {
                        specs: settings.specs.clone(),
                        data,
                        count: settings.eval_count,
                    };
                    self.start(ctx, ui.ctx(), Running::Evaluate, job);
                }
            }
        });
        // Progress of the evaluation started here.
        for (i, (progress, result)) in self.evals.iter().enumerate() {
            let spec = settings.specs.get(i).cloned().unwrap_or_default();
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new(format!(
                        "[{}] {}",
                        i + 1,
                        label_of(self.catalog.as_ref(), &spec)
                    ))
                    .color(slot_color(i)),
                );
                match (result, progress) {
                    (Some(Ok(r)), _) => {
                        ui.label(format!(
                            "accuracy {:.1} % ({} problems) · evaluation {}",
                            r.summary.accuracy * 100.0,
                            r.summary.count,
                            r.id
                        ));
                    }
                    (Some(Err(e)), _) => {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                    }
                    (None, Some(EvalProgress::Opening { total })) => {
                        ui.spinner();
                        ui.label(format!("opening the model for {total} problems…"));
                    }
                    (None, Some(EvalProgress::Answering { answered, total })) => {
                        ui.add(
                            egui::ProgressBar::new(*answered as f32 / (*total).max(1) as f32)
                                .desired_width(260.0)
                                .text(format!("{answered}/{total} answered")),
                        );
                    }
                    (None, None) => {
                        ui.label(RichText::new(if busy { "waiting" } else { "not run" }).weak());
                    }
                }
            });
        }
        ui.separator();
        let Some(catalog) = &self.catalog else {
            ui.spinner();
            return;
        };
        let picked: Vec<&EvaluationRecord> = catalog
            .evaluations
            .iter()
            .filter(|e| settings.eval_all || slot_of(settings, e).is_some())
            .collect();
        ui.horizontal(|ui| {
            ui.label(RichText::new("Accuracy per checkpoint").strong());
            ui.checkbox(&mut settings.eval_all, "every stored evaluation");
        });
        if picked.is_empty() {
            empty_ui(
                ui,
                "No stored evaluation of these checkpoints yet: evaluate them above (or with \
                 studio eval).",
            );
            return;
        }
        // The newest accuracy of each checkpoint per problem set.
        let mut by_set: BTreeMap<String, HashMap<usize, &EvaluationRecord>> = BTreeMap::new();
        for e in &picked {
            if let Some(slot) = slot_of(settings, e) {
                by_set
                    .entry(problem_set(&e.summary))
                    .or_default()
                    .insert(slot, e);
            }
        }
        if !by_set.is_empty() {
            egui::Grid::new("compare_accuracy")
                .striped(true)
                .num_columns(1 + settings.specs.len())
                .show(ui, |ui| {
                    ui.label(RichText::new("problems").weak());
                    for i in 0..settings.specs.len() {
                        ui.label(RichText::new(format!("[{}]", i + 1)).color(slot_color(i)));
                    }
                    ui.end_row();
                    for (set, slots) in &by_set {
                        ui.label(drawable(ui, set));
                        for i in 0..settings.specs.len() {
                            match slots.get(&i) {
                                Some(e) => ui.label(format!(
                                    "{:.1} % of {}",
                                    e.summary.accuracy * 100.0,
                                    e.summary.count
                                )),
                                None => ui.label(RichText::new("–").weak()),
                            };
                        }
                        ui.end_row();
                    }
                });
        }
        ui.add_space(6.0);
        ui.label(
            RichText::new(
                "Stored evaluations: pick A and B of the same problems to list what flipped",
            )
            .strong(),
        );
        let mut ask = None;
        egui::ScrollArea::vertical()
            .id_salt("compare_evaluations")
            .max_height(160.0)
            .show(ui, |ui| {
                egui::Grid::new("compare_evaluations_grid")
                    .striped(true)
                    .num_columns(7)
                    .show(ui, |ui| {
                        for h in ["", "", "id", "model", "problems", "accuracy", "when"] {
                            ui.label(RichText::new(h).weak());
                        }
                        ui.end_row();
                        for e in picked.iter().rev() {
                            let a = ui.selectable_label(self.flip_a == Some(e.id), "A");
                            if a.clicked() {
                                self.flip_a = Some(e.id);
                                ask = Some(());
                            }
                            let b = ui.selectable_label(self.flip_b == Some(e.id), "B");
                            if b.clicked() {
                                self.flip_b = Some(e.id);
                                ask = Some(());
                            }
                            ui.label(e.id.to_string());
                            let model = match slot_of(settings, e) {
                                Some(i) => RichText::new(format!(
                                    "[{}] {}",
                                    i + 1,
                                    evaluated_model(&e.summary)
                                ))
                                .color(slot_color(i)),
                                None => RichText::new(evaluated_model(&e.summary)),
                            };
                            ui.label(model);
                            ui.label(drawable(ui, &problem_set(&e.summary)));
                            ui.label(format!(
                                "{:.1} % of {}",
                                e.summary.accuracy * 100.0,
                                e.summary.count
                            ));
                            ui.label(RichText::new(&e.created_at).weak());
                            ui.end_row();
                        }
                    });
            });
        if ask.is_some() {
            self.flipped = None;
            self.flip_shown = None;
        }
        let (Some(a), Some(b)) = (self.flip_a, self.flip_b) else {
            return;
        };
        if a == b {
            ui.label(RichText::new("A and B are the same evaluation").weak());
            return;
        }
        let have = self
            .flipped
            .as_ref()
            .is_some_and(|(pair, _)| *pair == (a, b));
        if !have
            && self.flipped_pending != Some((a, b))
            && let Some(w) = &self.workers
            && w.ask(StoreRequest::Flipped { a, b })
        {
            self.flipped_pending = Some((a, b));
        }
        ui.separator();
        match &self.flipped {
            Some((pair, Ok(pair_data))) if *pair == (a, b) => {
                let chosen = flipped_ui(ui, pair_data, self.flip_shown.as_ref().map(|s| s.items));
                if let Some(items) = chosen {
                    self.flip_shown = Some(FlipShown::new(pair_data, items));
                }
                if let Some(shown) = &mut self.flip_shown {
                    shown.ui(ui, pair_data);
                }
            }
            Some((pair, Err(e))) if *pair == (a, b) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            _ => {
                ui.spinner();
            }
        }
    }
}

impl FlipShown {
    fn new(pair: &FlippedPair, items: (usize, usize)) -> Self {
        let view = |side: usize, index: usize| {
            let list = if side == 0 {
                &pair.compared.a.1
            } else {
                &pair.compared.b.1
            };
            let tokens = list
                .get(index)
                .map(|item| view_tokens(&item.tokens, &pair.texts[side], &[], &[]))
                .unwrap_or_default()
                .into_iter()
                .map(|mut t| {
                    // An evaluation answer was never trained on: its loss masks mean nothing.
                    t.marks.counted = true;
                    t.marks.trained = true;
                    t
                })
                .collect();
            TokenView::new(tokens, 0.0)
        };
        Self {
            items,
            views: [view(0, items.0), view(1, items.1)],
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, pair: &FlippedPair) {
        let (a, b) = (&pair.compared.a, &pair.compared.b);
        let Some(item) = a.1.get(self.items.0) else {
            return;
        };
        ui.separator();
        ui.label(RichText::new(format!("Problem {} of {}", item.index + 1, a.1.len())).strong());
        ui.label(drawable(ui, &item.prompt));
        if let Some(answer) = &item.answer {
            ui.label(RichText::new(format!("expected: {}", drawable(ui, answer))).weak());
        }
        gradient_legend_ui(ui, "entropy", "0", "4+ nats", heat_color);
        let height = ui.available_height() - 8.0;
        ui.columns(2, |cols| {
            for (side, col) in cols.iter_mut().enumerate() {
                let (record, items, index) = if side == 0 {
                    (&a.0, &a.1, self.items.0)
                } else {
                    (&b.0, &b.1, self.items.1)
                };
                let Some(item) = items.get(index) else {
                    continue;
                };
                col.push_id(("flip", side), |ui| {
                    ui.label(
                        RichText::new(format!(
                            "{} · evaluation {} · {}",
                            if side == 0 { "A" } else { "B" },
                            record.id,
                            evaluated_model(&record.summary)
                        ))
                        .strong(),
                    );
                    let (text, color) = if item.correct {
                        ("right", Color32::from_rgb(60, 170, 90))
                    } else {
                        ("wrong", Color32::from_rgb(220, 80, 60))
                    };
                    ui.colored_label(
                        color,
                        format!(
                            "{text} · finish: {} · {} tokens",
                            item.finish_reason,
                            item.tokens.len()
                        ),
                    );
                    self.views[side].ui(ui, Colouring::Entropy, 4.0, height.max(120.0));
                });
            }
        });
    }
}

/// The flipped lists; returns the problem clicked, as (A's item, B's item).
fn flipped_ui(
    ui: &mut egui::Ui,
    pair: &FlippedPair,
    shown: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let f = &pair.compared.flipped;
    let a = &pair.compared.a.1;
    let mut chosen = None;
    ui.label(
        RichText::new(format!(
            "Flipped from A (evaluation {}) to B (evaluation {}): {} right to wrong, {} wrong to right",
            pair.compared.a.0.id,
            pair.compared.b.0.id,
            f.right_to_wrong.len(),
            f.wrong_to_right.len()
        ))
        .strong(),
    );
    if !f.only_in_a.is_empty() || !f.only_in_b.is_empty() {
        ui.label(
            RichText::new(format!(
                "{} problems only in A and {} only in B are left out",
                f.only_in_a.len(),
                f.only_in_b.len()
            ))
            .weak(),
        );
    }
    ui.columns(2, |cols| {
        for (col, (title, list)) in cols.iter_mut().zip([
            ("right to wrong", &f.right_to_wrong),
            ("wrong to right", &f.wrong_to_right),
        ]) {
            col.push_id(title, |ui| {
                ui.label(RichText::new(format!("{title} ({})", list.len())).strong());
                egui::ScrollArea::vertical()
                    .max_height(120.0)
                    .show(ui, |ui| {
                        if list.is_empty() {
                            ui.label(RichText::new("none").weak());
                        }
                        for &(ia, ib) in list.iter() {
                            let prompt = a.get(ia).map(|i| i.prompt.as_str()).unwrap_or("");
                            let text: String = one_line(prompt).chars().take(90).collect();
                            if ui
                                .selectable_label(
                                    shown == Some((ia, ib)),
                                    format!("problem {}: {}", ia + 1, drawable(ui, &text)),
                                )
                                .on_hover_text("Open both completions side by side")
                                .clicked()
                            {
                                chosen = Some((ia, ib));
                            }
                        }
                    });
            });
        }
    });
    chosen
}

/// The slot of the picked checkpoints an evaluation is of.
fn slot_of(settings: &CompareSettings, e: &EvaluationRecord) -> Option<usize> {
    settings
        .specs
        .iter()
        .position(|spec| match ModelSpec::parse(spec) {
            ModelSpec::Checkpoint(CheckpointRef::Id(id)) => e.summary.checkpoint_id == Some(id),
            ModelSpec::Checkpoint(CheckpointRef::RunStep { run, step }) => {
                e.summary.run_id == Some(run) && e.summary.step == Some(step)
            }
            ModelSpec::Model(m) => e.summary.checkpoint_id.is_none() && e.summary.model == m,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::store::EvaluationSummary;

    fn summary(
        checkpoint: Option<i64>,
        run: Option<i64>,
        step: Option<u64>,
        model: &str,
    ) -> EvaluationRecord {
        EvaluationRecord {
            id: 1,
            summary: EvaluationSummary {
                checkpoint_id: checkpoint,
                run_id: run,
                step,
                model: model.into(),
                source: "builtin:arithmetic".into(),
                difficulty: Some(1),
                seed: Some(0),
                count: 4,
                chat: false,
                max_new_tokens: 16,
                accuracy: 0.5,
            },
            created_at: String::new(),
        }
    }

    #[test]
    fn evaluations_belong_to_the_slot_that_names_their_checkpoint_or_model() {
        let settings = CompareSettings {
            specs: vec!["7".into(), "2:40".into(), "builtin:tiny-reasoner".into()],
            ..CompareSettings::default()
        };
        assert_eq!(
            slot_of(&settings, &summary(Some(7), Some(1), Some(10), "m")),
            Some(0)
        );
        assert_eq!(
            slot_of(&settings, &summary(Some(9), Some(2), Some(40), "m")),
            Some(1)
        );
        assert_eq!(
            slot_of(
                &settings,
                &summary(None, None, None, "builtin:tiny-reasoner")
            ),
            Some(2)
        );
        // A checkpoint of the same model is not the model itself.
        assert_eq!(
            slot_of(
                &settings,
                &summary(Some(3), Some(5), Some(1), "builtin:tiny-reasoner")
            ),
            None
        );
    }
}
