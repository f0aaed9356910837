//! The summary line of the open file: its path, format, rows, layout and columns, the bad
//! rows skipped, and Use in Launch.

use egui::RichText;
use engine::data::Dataset;

use super::DatasetsView;
use crate::context::{AppCommand, AppContext};

impl DatasetsView {
    pub(super) fn summary_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        dataset: &Dataset,
    ) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(dataset.path().display().to_string()).strong());
            ui.label(format!(
                "{} · {} rows · layout {} · {} columns",
                dataset.format().name(),
                dataset.len(),
                dataset.schema().name(),
                dataset.columns().len()
            ));
            if !dataset.bad_rows().is_empty() {
                ui.colored_label(
                    ui.visuals().warn_fg_color,
                    format!("{} bad rows skipped", dataset.bad_rows().len()),
                );
            }
            if ui
                .button("Use in Launch")
                .on_hover_text("Open Launch on a run over this file with this role mapping")
                .clicked()
            {
                ctx.commands.push(AppCommand::UseDataset {
                    path: dataset.path().display().to_string(),
                    mapping: Some(self.mapping.clone()),
                });
            }
            if let Some(m) = &self.message {
                ui.label(RichText::new(m).weak());
            }
        });
    }
}
