//! Opening a file: the path box, the file dialog, the workspace's recent files, the Hugging
//! Face cache menu, and the thread that indexes the file (a dropped file comes here too).

use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;

use egui::TextEdit;
use engine::data::{Dataset, RoleMapping};

use super::DatasetsView;
use crate::context::AppContext;

impl DatasetsView {
    /// Opens `path` in the background, with `mapping` when given (else the one the workspace
    /// saved for it, else detection).
    pub fn open(
        &mut self,
        ctx: &mut AppContext,
        egui_ctx: &egui::Context,
        path: &Path,
        mapping: Option<RoleMapping>,
    ) {
        let key = path.display().to_string();
        self.path = key.clone();
        let workspace = engine::store::Workspace::open(&ctx.workspace_dir).ok();
        let mapping = mapping.or_else(|| {
            workspace
                .as_ref()
                .and_then(|w| w.dataset(&key).ok().flatten())
                .and_then(|r| r.mapping::<RoleMapping>())
        });
        if let Some(w) = &workspace {
            let _ = w.touch_dataset(&key);
            self.recent = None;
        }
        let (tx, rx) = channel();
        let path = path.to_path_buf();
        let repaint = egui_ctx.clone();
        std::thread::spawn(move || {
            let opened = Dataset::open(&path, mapping.as_ref()).map_err(|e| e.to_string());
            let _ = tx.send(opened);
            repaint.request_repaint();
        });
        self.opening = Some((key, rx));
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
                self.dialog = crate::dialogs::pick_file(ui.ctx().clone(), dialog);
            }
            let mut pick = None;
            let recent = self.recent.clone().unwrap_or_default();
            ui.menu_button("Recent", |ui| {
                if recent.is_empty() {
                    ui.label("none yet");
                }
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
