//! Native file dialogs (rfd), always off the UI thread, and never where they cannot work: with
//! `STUDIO_NO_DIALOGS` set or no display, the views say why and take a typed path instead
//! (`../shared/notes/gui-toolchain.md`: rfd's portal backend answers `None` at once without a
//! desktop session).

use std::path::PathBuf;

use crate::jobs::Job;

/// Why native file dialogs are off, if they are: `STUDIO_NO_DIALOGS` is set, or there is no
/// display to show them on.
pub fn unavailable_reason() -> Option<&'static str> {
    if std::env::var_os("STUDIO_NO_DIALOGS").is_some() {
        Some("File dialogs are turned off (STUDIO_NO_DIALOGS is set); type the path instead")
    } else if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        Some(
            "No display for a file dialog (neither DISPLAY nor WAYLAND_DISPLAY is set); type the path instead",
        )
    } else {
        None
    }
}

/// A button that opens a file dialog: disabled, saying why, where dialogs cannot work.
/// Returns whether it was clicked.
pub fn button(ui: &mut egui::Ui, text: &str, hover: &str) -> bool {
    let block = unavailable_reason();
    let button = ui.add_enabled(block.is_none(), egui::Button::new(text));
    let button = match block {
        Some(why) => button.on_disabled_hover_text(why),
        None => button.on_hover_text(hover),
    };
    button.clicked()
}

/// A dialog's answer on its way: the chosen path, or `None` when cancelled.
pub type DialogJob = Job<Option<PathBuf>>;

/// Shows `dialog` as an "open file" dialog on a background job; the UI is woken when it answers.
pub fn pick_file(ctx: &egui::Context, dialog: rfd::FileDialog) -> DialogJob {
    run(ctx, move || dialog.pick_file())
}

/// Shows `dialog` as a "save file" dialog on a background job.
pub fn save_file(ctx: &egui::Context, dialog: rfd::FileDialog) -> DialogJob {
    run(ctx, move || dialog.save_file())
}

/// Runs `show` (a dialog) on the `studio-file-dialog` job.
pub fn run(
    ctx: &egui::Context,
    show: impl FnOnce() -> Option<PathBuf> + Send + 'static,
) -> DialogJob {
    Job::spawn("file-dialog", ctx, move |_| show())
}

/// A dialog's answer, once it has come: `Some(None)` when cancelled; a failed dialog thread
/// is an error for the window's banner.
pub fn poll(job: &mut Option<DialogJob>, error: &mut Option<String>) -> Option<Option<PathBuf>> {
    let answer = job.as_mut()?.poll()?;
    *job = None;
    match answer {
        Ok(path) => Some(path),
        Err(e) => {
            *error = Some(format!("the file dialog failed: {e}"));
            Some(None)
        }
    }
}
