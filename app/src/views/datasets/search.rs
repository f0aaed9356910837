//! Search: a column and a text, the rows that contain it found in the background with
//! progress and Cancel; the table then shows only those.

use std::sync::Arc;

use egui::TextEdit;
use engine::data::Dataset;

use super::DatasetsView;
use crate::jobs::Job;

impl DatasetsView {
    pub(super) fn search_ui(&mut self, ui: &mut egui::Ui, dataset: &Arc<Dataset>) {
        ui.horizontal_wrapped(|ui| {
            let columns = dataset.columns().to_vec();
            let column = self
                .search_column
                .clone()
                .filter(|c| columns.contains(c))
                .or_else(|| columns.first().cloned())
                .unwrap_or_default();
            let label = ui.label("Search column");
            egui::ComboBox::from_id_salt("datasets_search_column")
                .selected_text(&column)
                .show_ui(ui, |ui| {
                    for c in &columns {
                        ui.selectable_value(&mut self.search_column, Some(c.clone()), c);
                    }
                })
                .response
                .labelled_by(label.id);
            let label = ui.label("for");
            let edit = ui.add(TextEdit::singleline(&mut self.query).desired_width(200.0));
            let edit = edit.labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            match &self.search {
                Some(job) => {
                    job.progress_ui(ui, "searching");
                }
                None => {
                    if (ui.button("Search").clicked() || enter) && !self.query.is_empty() {
                        self.search = Some(search(
                            ui.ctx(),
                            dataset.clone(),
                            column.clone(),
                            self.query.clone(),
                        ));
                    }
                    if self.matches.is_some() && ui.button("Show all rows").clicked() {
                        self.matches = None;
                        self.message = None;
                    }
                }
            }
        });
    }
}

/// Rows whose `column` contains `query` (case-insensitive), or `None` when cancelled.
fn search(
    ctx: &egui::Context,
    dataset: Arc<Dataset>,
    column: String,
    query: String,
) -> Job<Option<Vec<usize>>> {
    Job::spawn("dataset-search", ctx, move |progress| {
        let total = dataset.len();
        progress.set_total(total);
        let needle = query.to_lowercase();
        let mut found = Vec::new();
        for i in 0..total {
            if progress.cancelled() {
                return None;
            }
            if let Ok(row) = dataset.row(i)
                && let Some(value) = row.get(&column)
            {
                let text = match value {
                    serde_json::Value::String(s) => s.to_lowercase(),
                    other => other.to_string().to_lowercase(),
                };
                if text.contains(&needle) {
                    found.push(i);
                }
            }
            progress.set_done(i + 1);
        }
        Some(found)
    })
}
