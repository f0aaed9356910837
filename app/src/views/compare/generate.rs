//! The Generate tab: one prompt, one seed, each checkpoint's completion side by side, coloured
//! by entropy.

use egui::RichText;

use super::slots::{label_of, slot_color};
use super::worker::Job;
use super::{CompareSettings, CompareView, Running};
use crate::context::AppContext;
use crate::views::traces::empty_ui;
use crate::widgets::token_heatmap::{HeatmapToken, gradient_legend_ui, heat_color};
use crate::widgets::token_view::{Colouring, Marks, RankBucket, TokenView, ViewToken};

/// One checkpoint's generation.
#[derive(Default)]
pub(super) struct GenSlot {
    pub(super) name: Option<String>,
    pub(super) tokens: Vec<HeatmapToken>,
    view: Option<(usize, TokenView)>,
    pub(super) error: Option<String>,
    pub(super) opening: bool,
    pub(super) done: bool,
}

impl CompareView {
    /// Each checkpoint's generated token ids, or its error.
    pub fn generated(&self) -> Vec<Result<Vec<u32>, String>> {
        self.generation
            .iter()
            .map(|g| match &g.error {
                Some(e) => Err(e.clone()),
                None => Ok(g.tokens.iter().map(|t| t.id).collect()),
            })
            .collect()
    }

    pub(super) fn generate_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &AppContext,
        settings: &mut CompareSettings,
    ) {
        ui.label("Prompt");
        ui.add(
            egui::TextEdit::multiline(&mut settings.prompt)
                .desired_rows(2)
                .desired_width(f32::INFINITY)
                .hint_text("The same prompt goes to every checkpoint"),
        );
        let busy = self.running.is_some_and(|r| r.1 == Running::Generate);
        ui.horizontal_wrapped(|ui| {
            ui.label("max tokens");
            ui.add(egui::DragValue::new(&mut settings.max_new_tokens).range(1..=4096));
            ui.label("temperature");
            ui.add(
                egui::DragValue::new(&mut settings.sampling.temperature)
                    .range(0.0..=2.0)
                    .speed(0.01),
            );
            ui.label("top-p");
            ui.add(
                egui::DragValue::new(&mut settings.sampling.top_p)
                    .range(0.0..=1.0)
                    .speed(0.01),
            );
            ui.label("seed");
            ui.add(egui::DragValue::new(&mut settings.sampling.seed));
            ui.checkbox(&mut settings.chat, "chat template")
                .on_hover_text(
                    "For models on disk; a checkpoint sees the prompt as its run's training did",
                );
            if busy {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
                ui.spinner();
            } else if ui
                .add_enabled(
                    !settings.prompt.trim().is_empty(),
                    egui::Button::new("Generate side by side"),
                )
                .on_hover_text("Every checkpoint, the same seed: run it again and it repeats")
                .clicked()
            {
                self.generation = settings.specs.iter().map(|_| GenSlot::default()).collect();
                let job = Job::Generate {
                    specs: settings.specs.clone(),
                    prompt: settings.prompt.clone(),
                    chat: settings.chat,
                    max_new_tokens: settings.max_new_tokens,
                    sampling: settings.sampling.clone(),
                };
                self.start(ctx, ui.ctx(), Running::Generate, job);
            }
        });
        if let Err(e) = settings.sampling.validate() {
            ui.colored_label(ui.visuals().error_fg_color, e.to_string());
        }
        ui.separator();
        if self.generation.is_empty() {
            empty_ui(
                ui,
                "Generate to see each checkpoint's completion, coloured by entropy.",
            );
            return;
        }
        gradient_legend_ui(ui, "entropy", "0", "4+ nats", heat_color);
        let n = self.generation.len();
        let height = ui.available_height() - 8.0;
        ui.columns(n, |cols| {
            for (i, (col, slot)) in cols.iter_mut().zip(&mut self.generation).enumerate() {
                col.push_id(("generation", i), |ui| {
                    let spec = settings.specs.get(i).cloned().unwrap_or_default();
                    ui.label(
                        RichText::new(format!(
                            "[{}] {}",
                            i + 1,
                            label_of(self.catalog.as_ref(), &spec)
                        ))
                        .strong()
                        .color(slot_color(i)),
                    );
                    let mean = if slot.tokens.is_empty() {
                        f32::NAN
                    } else {
                        slot.tokens.iter().map(|t| t.entropy_nats).sum::<f32>()
                            / slot.tokens.len() as f32
                    };
                    let status = if let Some(e) = &slot.error {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                        None
                    } else if slot.opening {
                        Some("opening the model…".to_string())
                    } else {
                        Some(format!(
                            "{} token{} · mean entropy {}{}",
                            slot.tokens.len(),
                            if slot.tokens.len() == 1 { "" } else { "s" },
                            if mean.is_finite() {
                                format!("{mean:.2} nats")
                            } else {
                                "–".into()
                            },
                            if slot.done { "" } else { " · generating" }
                        ))
                    };
                    if let Some(s) = status {
                        ui.label(RichText::new(s).weak());
                    }
                    let stale = slot
                        .view
                        .as_ref()
                        .is_none_or(|(len, _)| *len != slot.tokens.len());
                    if stale {
                        let tokens = slot
                            .tokens
                            .iter()
                            .map(|t| ViewToken {
                                rank: RankBucket::of(t.id, &t.alternatives),
                                token: t.clone(),
                                marks: Marks::default(),
                            })
                            .collect();
                        slot.view = Some((slot.tokens.len(), TokenView::new(tokens, 0.0)));
                    }
                    if let Some((_, view)) = &mut slot.view {
                        view.ui(ui, Colouring::Entropy, 4.0, height.max(120.0));
                    }
                });
            }
        });
    }
}
