//! The toolbar: presets, Open/Save (typed path or file dialog), Copy as TOML and as CLI
//! command, the study run picker, and the row with the check's verdict and Start.

use std::path::PathBuf;

use egui::{RichText, TextEdit};
use engine::train::preflight::human_bytes;
use engine::train::settings;
use toml_edit::Value;

use super::{DialogKind, Launch};
use crate::context::{AppCommand, AppContext, TRY_IT_RUN};

/// The documents the preset menu offers, by name.
pub const PRESETS: &[(&str, &str)] = &[
    ("New run (defaults)", settings::MINIMAL_RUN),
    ("Try it (SFT on arithmetic)", TRY_IT_RUN),
    (
        "tiny-reasoner (how the built-in model was trained)",
        include_str!("../../../../assets/presets/tiny-reasoner.toml"),
    ),
    (
        "cold-start SFT then GRPO",
        include_str!("../../../../assets/presets/cold-start-sft-then-grpo.toml"),
    ),
    (
        "clip-higher",
        include_str!("../../../../assets/presets/clip-higher.toml"),
    ),
    (
        "Dr. GRPO length",
        include_str!("../../../../assets/presets/dr-grpo-length.toml"),
    ),
    (
        "forking tokens",
        include_str!("../../../../assets/presets/forking-tokens.toml"),
    ),
];

impl Launch {
    /// The command line that starts what the form shows.
    pub fn cli_command(&self, workspace: &std::path::Path) -> String {
        let (verb, text) = if self.is_study() {
            ("study", self.toml())
        } else {
            ("train", self.toml())
        };
        format!(
            "studio --workspace '{}' {verb} - <<'TOML'\n{}{}TOML\n",
            workspace.display(),
            text,
            if text.ends_with('\n') { "" } else { "\n" }
        )
    }

    pub(super) fn toolbar_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal_wrapped(|ui| {
            let mut chosen = None;
            ui.menu_button("Presets", |ui| {
                for (name, text) in PRESETS {
                    if ui.button(*name).clicked() {
                        chosen = Some((*name, *text));
                        ui.close();
                    }
                }
            });
            if let Some((name, text)) = chosen
                && let Err(e) = self.open_text(text, name)
            {
                ctx.error = Some(e);
            }
            ui.separator();
            let label = ui.label("File");
            ui.add(
                TextEdit::singleline(&mut self.path)
                    .hint_text("path/to/run.toml")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            if ui
                .button("Open")
                .on_hover_text("Open the run or study TOML at this path")
                .clicked()
            {
                let path = PathBuf::from(self.path.trim());
                self.open_file(ui.ctx(), &path);
            }
            if ui
                .button("Save")
                .on_hover_text("Write the document to this path")
                .clicked()
            {
                let path = PathBuf::from(self.path.trim());
                self.save_file(ui.ctx(), &path);
            }
            self.browse_buttons(ui);
            ui.separator();
            if ui
                .button("Copy as TOML")
                .on_hover_text("The document, as `studio train FILE` reads it")
                .clicked()
            {
                ui.ctx().copy_text(self.toml());
                self.status = Some("copied the TOML".into());
            }
            if ui
                .button("Copy as CLI command")
                .on_hover_text("A shell command that starts this run from a terminal")
                .clicked()
            {
                ui.ctx().copy_text(self.cli_command(&ctx.workspace_dir));
                self.status = Some("copied the command".into());
            }
        });
        if self.is_study() {
            ui.horizontal_wrapped(|ui| {
                ui.label("Study run:");
                let mut selected = self.selected_run;
                for (i, key) in self.study_runs.iter().enumerate() {
                    ui.selectable_value(&mut selected, i, key);
                }
                if selected != self.selected_run {
                    self.selected_run = selected;
                    self.buffers.clear();
                    self.field_errors.clear();
                    self.touch();
                }
            });
        }
    }

    fn browse_buttons(&mut self, ui: &mut egui::Ui) {
        if crate::dialogs::button(ui, "Browse…", "Pick a run or study TOML") {
            let dialog = rfd::FileDialog::new()
                .set_title("Open a run or study")
                .add_filter("TOML", &["toml"]);
            self.dialog = Some((
                DialogKind::OpenDocument,
                crate::dialogs::pick_file(ui.ctx(), dialog),
            ));
        }
        if crate::dialogs::button(ui, "Save as…", "Write the document to a file you pick") {
            let dialog = rfd::FileDialog::new()
                .set_title("Save the run")
                .add_filter("TOML", &["toml"])
                .set_file_name("run.toml");
            self.dialog = Some((
                DialogKind::SaveDocument,
                crate::dialogs::save_file(ui.ctx(), dialog),
            ));
        }
    }

    pub(super) fn poll_dialog(&mut self, egui_ctx: &egui::Context, ctx: &mut AppContext) {
        let Some((kind, job)) = &mut self.dialog else {
            return;
        };
        let kind = *kind;
        let Some(answer) = job.poll() else {
            return;
        };
        self.dialog = None;
        let picked = answer.unwrap_or_else(|e| {
            ctx.error = Some(format!("the file dialog failed: {e}"));
            None
        });
        let Some(path) = picked else {
            return;
        };
        match kind {
            DialogKind::OpenDocument => self.open_file(egui_ctx, &path),
            DialogKind::SaveDocument => self.save_file(egui_ctx, &path),
            DialogKind::Model => {
                let path = if path.file_name().is_some_and(|n| n == "config.json") {
                    path.parent().map_or(path.clone(), PathBuf::from)
                } else {
                    path
                };
                self.set("model", Value::from(path.display().to_string()));
            }
            DialogKind::Dataset => {
                self.remove("data.builtin");
                self.set("data.path", Value::from(path.display().to_string()));
            }
        }
    }

    /// The check's verdict, the memory estimate, and Start.
    pub(super) fn status_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal_wrapped(|ui| {
            let can_start = self.can_start() && ctx.can_start_runs() && !ctx.starting();
            let label = if self.is_study() {
                "Start study"
            } else {
                "Start"
            };
            let start = ui.add_enabled(can_start, egui::Button::new(RichText::new(label).strong()));
            let start = if ctx.starting() {
                start.on_disabled_hover_text("A run is being registered in the workspace")
            } else if ctx.can_start_runs() {
                start.on_disabled_hover_text("Fix the settings marked in red first")
            } else {
                start.on_disabled_hover_text("This window was opened without the studio executable")
            };
            if start.clicked() {
                self.start(ctx);
            }
            match (self.current_check(), self.field_errors.is_empty()) {
                (_, false) => {
                    ui.colored_label(ui.visuals().error_fg_color, "a setting does not parse");
                }
                (None, true) => {
                    ui.spinner();
                    ui.label("checking…");
                }
                (Some(check), true) => {
                    if check.ok() {
                        ui.colored_label(egui::Color32::from_rgb(60, 170, 90), "ready to start");
                    } else {
                        ui.colored_label(
                            ui.visuals().error_fg_color,
                            format!("{} problem(s)", check.problems.len()),
                        );
                    }
                    if let Some(p) = check.parameters {
                        ui.label(format!("{} parameters", crate::views::home::human_count(p)));
                    }
                    if let Some(rows) = check.dataset_rows {
                        ui.label(format!("{rows} rows"));
                    }
                    if let Some(need) = check.memory_bytes {
                        let have = check.available_bytes.map_or("?".into(), human_bytes);
                        ui.label(format!(
                            "memory ≈ {} of {have} available",
                            human_bytes(need)
                        ))
                        .on_hover_text(
                            "f32 weights, gradients and AdamW moments of what is trained, \
                                 and one micro-batch of activations",
                        );
                    }
                }
            }
            if let Some(status) = &self.status {
                ui.label(RichText::new(status).weak());
            }
        });
        if let Some((what, waited)) = ctx.pending_action() {
            ui.horizontal_wrapped(|ui| {
                ui.spinner();
                ui.label(format!("waiting for the workspace to {what}…"));
                if waited >= crate::workspace_service::BUSY_AFTER {
                    ctx.workspace_note_ui(ui);
                }
            });
        }
        // Problems that belong to no field (syntax, unknown settings, memory, the study).
        if let Some(check) = self.current_check() {
            let known: Vec<&str> = settings::all().iter().map(|s| s.key).collect();
            for p in &check.problems {
                if !known.contains(&p.setting.as_str()) {
                    let text = if p.setting.is_empty() {
                        p.message.clone()
                    } else {
                        format!("{}: {}", p.setting, p.message)
                    };
                    ui.colored_label(ui.visuals().error_fg_color, text);
                }
            }
        }
    }

    fn start(&mut self, ctx: &mut AppContext) {
        if self.is_study() {
            // The study's runs appear in Runs as its process registers them.
            match ctx.start_study(&self.toml()) {
                Ok(()) => {
                    self.status =
                        Some("study started: its runs appear in Runs as they start".into());
                    ctx.commands
                        .push(AppCommand::ShowView(crate::views::View::Runs));
                }
                Err(e) => ctx.error = Some(e),
            }
            return;
        }
        // The window shows the run's plots once the workspace has registered it.
        if let Err(e) = ctx.start_run(&self.toml(), &self.source) {
            ctx.error = Some(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_command_is_the_document() {
        let launch = Launch::default();
        let cmd = launch.cli_command(std::path::Path::new("/tmp/ws"));
        assert!(cmd.starts_with("studio --workspace '/tmp/ws' train - <<'TOML'\n"));
        assert!(cmd.contains(settings::MINIMAL_RUN));
        assert!(cmd.ends_with("TOML\n"));
    }
}
