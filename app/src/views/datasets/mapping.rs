//! The role mapping: which column holds each role (prompt, reasoning, answer, messages,
//! image), applied by reopening the file and saved to the workspace (in the background).

use egui::RichText;
use engine::data::Dataset;

use super::DatasetsView;
use crate::context::AppContext;

impl DatasetsView {
    pub(super) fn mapping_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        dataset: &Dataset,
    ) {
        ui.label(RichText::new("Role mapping").strong())
            .on_hover_text(
                "Which column holds each role, for layouts the studio does not recognise",
            );
        let columns = dataset.columns().to_vec();
        let mut changed = false;
        egui::Grid::new("dataset_mapping")
            .num_columns(2)
            .show(ui, |ui| {
                let roles: [(&str, &mut Option<String>); 5] = [
                    ("prompt", &mut self.mapping.prompt),
                    ("reasoning", &mut self.mapping.reasoning),
                    ("answer", &mut self.mapping.answer),
                    ("messages", &mut self.mapping.messages),
                    ("image", &mut self.mapping.image),
                ];
                for (role, slot) in roles {
                    let label = ui.label(role);
                    let before = slot.clone();
                    egui::ComboBox::from_id_salt(("dataset_role", role))
                        .selected_text(slot.as_deref().unwrap_or("—"))
                        .show_ui(ui, |ui| {
                            ui.selectable_value(slot, None, "—");
                            for c in &columns {
                                ui.selectable_value(slot, Some(c.clone()), c);
                            }
                        })
                        .response
                        .labelled_by(label.id);
                    changed |= *slot != before;
                    ui.end_row();
                }
            });
        let differs = &self.mapping != dataset.roles();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(differs || changed, egui::Button::new("Apply"))
                .on_hover_text("Reopen the file with this mapping")
                .clicked()
            {
                let path = dataset.path().to_path_buf();
                let mapping = self.mapping.clone();
                self.open(ctx, &ui.ctx().clone(), &path, Some(mapping));
            }
            if ui
                .button("Save to workspace")
                .on_hover_text("Remember this mapping for the file (Launch and later opens use it)")
                .clicked()
            {
                let path = dataset.path().display().to_string();
                self.saving = Some(ctx.workspace.save_mapping(&path, self.mapping.clone()));
                self.message = Some("saving the mapping…".into());
            }
        });
    }
}
