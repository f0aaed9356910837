//! Models: every model found on disk (the built-in tiny reasoner, the Hugging Face cache,
//! `STUDIO_MODEL_DIRS`) with its config summary, read from headers only; "Open in Playground"
//! and "Fine-tune" (the Launch form on a new run of it). Locations that could not be read are
//! listed with the reason.

use egui::RichText;
use engine::discovery::ModelInfo;

use crate::context::{AppCommand, AppContext};
use crate::views::home::human_count;

/// The Models view's state.
#[derive(Default)]
pub struct ModelsView {
    /// Filters the table by name or path.
    pub filter: String,
}

impl ModelsView {
    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal(|ui| {
            ui.heading("Models");
            if ui
                .button("Look again")
                .on_hover_text("Search the Hugging Face cache and STUDIO_MODEL_DIRS again")
                .clicked()
            {
                ctx.rediscover();
            }
            let label = ui.label("Filter");
            ui.add(egui::TextEdit::singleline(&mut self.filter).desired_width(200.0))
                .labelled_by(label.id);
        });
        ui.label(
            RichText::new(
                "Searched: the built-in tiny reasoner, the Hugging Face cache (HF_HUB_CACHE, \
                 HF_HOME/hub, ~/.cache/huggingface/hub) and the folders in STUDIO_MODEL_DIRS.",
            )
            .weak(),
        );
        ui.separator();
        let Some(found) = ctx.models(ui.ctx()) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("looking for models on disk…");
            });
            return;
        };
        let needle = self.filter.to_lowercase();
        let matches = |text: &str| needle.is_empty() || text.to_lowercase().contains(&needle);
        let models: Vec<ModelInfo> = found
            .iter()
            .filter_map(|m| m.as_ref().ok())
            .filter(|m| matches(&m.name) || matches(&m.path))
            .cloned()
            .collect();
        let failed: Vec<(String, String)> = found
            .iter()
            .filter_map(|m| m.as_ref().err())
            .filter(|(path, _)| matches(path))
            .cloned()
            .collect();
        let mut commands = Vec::new();
        egui::ScrollArea::both()
            .auto_shrink([false, false])
            .show(ui, |ui| {
                egui::Grid::new("models_table")
                    .num_columns(11)
                    .striped(true)
                    .spacing([14.0, 6.0])
                    .show(ui, |ui| {
                        for title in [
                            "Model",
                            "Format",
                            "Family",
                            "Parameters",
                            "Layers",
                            "Heads",
                            "Hidden",
                            "Vocab",
                            "Context",
                            "Dtype",
                            "Size",
                        ] {
                            ui.label(RichText::new(title).strong());
                        }
                        ui.label("");
                        ui.end_row();
                        for m in &models {
                            ui.label(RichText::new(&m.name).strong())
                                .on_hover_text(&m.path);
                            ui.label(format!("{:?}", m.format).to_lowercase());
                            ui.label(&m.architecture);
                            ui.label(human_count(m.parameters));
                            ui.label(m.layers.to_string());
                            ui.label(if m.kv_heads == m.attention_heads {
                                m.attention_heads.to_string()
                            } else {
                                format!("{} ({} kv)", m.attention_heads, m.kv_heads)
                            });
                            ui.label(m.hidden_size.to_string());
                            ui.label(m.vocab_size.to_string());
                            ui.label(m.context.to_string());
                            ui.label(&m.dtype);
                            ui.label(if m.file_size == 0 {
                                "—".to_string()
                            } else {
                                engine::train::preflight::human_bytes(m.file_size)
                            });
                            ui.horizontal(|ui| {
                                if ui
                                    .button("Open in Playground")
                                    .on_hover_text(format!("Chat with {}", m.path))
                                    .clicked()
                                {
                                    commands.push(AppCommand::OpenInPlayground(m.path.clone()));
                                }
                                if ui
                                    .button("Fine-tune")
                                    .on_hover_text("Open Launch on a new run of this model")
                                    .clicked()
                                {
                                    commands.push(AppCommand::FineTune(m.path.clone()));
                                }
                            });
                            ui.end_row();
                        }
                    });
                if models.is_empty() {
                    ui.label("No model matches the filter.");
                }
                if !failed.is_empty() {
                    ui.add_space(8.0);
                    ui.label(RichText::new("Could not be read").strong());
                    for (path, why) in &failed {
                        ui.horizontal_wrapped(|ui| {
                            ui.label(RichText::new(path).monospace());
                            ui.colored_label(ui.visuals().error_fg_color, why);
                        });
                    }
                }
            });
        ctx.commands.extend(commands);
    }
}
