//! Opening a file: the path box, the file dialog, the workspace's recent files, the Hugging
//! Face cache menu, and the job that indexes the file (a dropped file comes here too) after the
//! workspace has answered with the mapping saved for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::TextEdit;
use engine::data::{Dataset, RoleMapping};

use super::{DatasetsView, Opening};
use crate::context::AppContext;
use crate::jobs::Job;

impl DatasetsView {
    /// Opens `path` in the background, with `mapping` when given (else the one the workspace
    /// saved for it, else detection). The workspace remembers the file.
    pub fn open(
        &mut self,
        ctx: &mut AppContext,
        egui_ctx: &egui::Context,
        path: &Path,
        mapping: Option<RoleMapping>,
    ) {
        let key = path.display().to_string();
        self.path = key.clone();
        let remembered = ctx.workspace.opened_dataset(&key);
        // The list of recent files is read again once the workspace has this one.
        self.recent = None;
        self.recent_asked = None;
        let opening = match mapping {
            Some(mapping) => {
                // Remembered in the background; the answer (the saved mapping) is not needed.
                self.remember = Some(remembered);
                Opening::Indexing(index(egui_ctx, path, Some(mapping)))
            }
            None => Opening::Mapping(remembered),
        };
        self.opening = Some((key, opening));
    }

    /// Moves the open along: the saved mapping arrived (the file is indexed with it), or the
    /// file is indexed.
    pub(super) fn poll_opening(&mut self, ctx: &mut AppContext, egui_ctx: &egui::Context) {
        if let Some(ticket) = &mut self.remember
            && let Some(answer) = ticket.poll()
        {
            self.remember = None;
            if let Err(e) = answer {
                ctx.error = Some(e);
            }
        }
        let Some((key, opening)) = &mut self.opening else {
            return;
        };
        match opening {
            Opening::Mapping(ticket) => {
                let Some(answer) = ticket.poll() else {
                    return;
                };
                let mapping = answer.unwrap_or_else(|e| {
                    // The file still opens (with detection); the failure is said.
                    ctx.error = Some(e);
                    None
                });
                *opening = Opening::Indexing(index(egui_ctx, Path::new(key.as_str()), mapping));
            }
            Opening::Indexing(job) => {
                let Some(result) = job.poll_flat() else {
                    return;
                };
                self.opening = None;
                match result {
                    Ok(dataset) => {
                        self.mapping = dataset.roles().clone();
                        self.selected = (!dataset.is_empty()).then_some(0);
                        self.dataset = Some(Arc::new(dataset));
                        self.cells.clear();
                        self.matches = None;
                        self.lengths = None;
                        self.image = None;
                    }
                    Err(e) => ctx.error = Some(e),
                }
            }
        }
    }

    pub(super) fn open_bar_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Dataset path");
            let edit = ui.add(
                TextEdit::singleline(&mut self.path)
                    .hint_text("/path/to/data.jsonl")
                    .desired_width(360.0),
            );
            let edit = edit.labelled_by(label.id);
            let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            if ui.button("Open").clicked() || enter {
                let path = PathBuf::from(self.path.trim());
                self.open(ctx, &ui.ctx().clone(), &path, None);
            }
            if crate::dialogs::button(ui, "Browse…", "Pick a dataset file") {
                let dialog = rfd::FileDialog::new()
                    .set_title("Open a dataset")
                    .add_filter("Datasets", &["jsonl", "json", "csv", "tsv", "parquet"]);
                self.dialog = Some(crate::dialogs::pick_file(ui.ctx(), dialog));
            }
            let mut pick = None;
            let recent = self.recent.clone();
            ui.menu_button("Recent", |ui| {
                let recent = match recent {
                    None => {
                        ui.label("reading the workspace…");
                        Vec::new()
                    }
                    Some(Err(e)) => {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                        Vec::new()
                    }
                    Some(Ok(list)) => {
                        if list.is_empty() {
                            ui.label("none yet");
                        }
                        list
                    }
                };
                for path in &recent {
                    if ui.selectable_label(false, path).clicked() {
                        pick = Some(PathBuf::from(path));
                    }
                }
            });
            let hf = self.hf_files.clone();
            ui.menu_button("Hugging Face cache", |ui| match &hf {
                None => {
                    ui.label("looking…");
                }
                Some(files) if files.is_empty() => {
                    ui.label("no datasets in the cache");
                }
                Some(files) => {
                    for path in files {
                        if ui
                            .selectable_label(false, hf_name(path))
                            .on_hover_text(path.display().to_string())
                            .clicked()
                        {
                            pick = Some(path.clone());
                        }
                    }
                }
            });
            if let Some(path) = pick {
                self.open(ctx, &ui.ctx().clone(), &path, None);
            }
        });
    }
}

/// Indexes the file at `path` on the `studio-dataset-open` job.
fn index(
    egui_ctx: &egui::Context,
    path: &Path,
    mapping: Option<RoleMapping>,
) -> Job<Result<Dataset, String>> {
    let path = path.to_path_buf();
    Job::spawn("dataset-open", egui_ctx, move |_| {
        Dataset::open(&path, mapping.as_ref()).map_err(|e| e.to_string())
    })
}

/// `org/name: path/in/snapshot` for a file in the hub cache.
fn hf_name(path: &Path) -> String {
    let text = path.display().to_string();
    let Some(start) = text.find("datasets--") else {
        return text;
    };
    let rest = &text[start + "datasets--".len()..];
    let (repo, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let file = tail.splitn(3, '/').nth(2).unwrap_or(tail);
    format!("{}: {file}", repo.replacen("--", "/", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_cache_files_are_named_by_repository() {
        let p = Path::new("/h/hub/datasets--openai--gsm8k/snapshots/abc/main/train-0.parquet");
        assert_eq!(hf_name(p), "openai/gsm8k: main/train-0.parquet");
    }
}
