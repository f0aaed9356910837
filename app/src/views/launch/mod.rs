//! Launch: a form over every setting of a run config (or of one run of a study), edited in
//! place in the TOML document so a file opened here and saved again is unchanged, byte for
//! byte, and `studio train FILE` reads exactly what the form shows. Presets from
//! `assets/presets/`; each setting with its default and a tooltip; the checks of
//! `engine::train::preflight` run in the background after each change, their messages next
//! to the fields; Copy as TOML, Copy as CLI command; "Try the rewards" scores a pasted
//! completion with the form's `[[rewards]]` as training would; Start registers the run through
//! the workspace service, spawns a worker (or the study) and opens the run's plots. Files are
//! read and written on background jobs.

mod checks;
mod document;
mod form;
mod rewards;
mod toolbar;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use egui::RichText;
use engine::train::preflight::Preflight;
use engine::train::settings;
use toml_edit::DocumentMut;

use crate::context::AppContext;
use crate::dialogs::DialogJob;
use crate::jobs::Job;

pub use rewards::{RewardsTry, Tried};
pub use toolbar::PRESETS;

/// The Launch view's state.
pub struct Launch {
    doc: DocumentMut,
    /// Where the document came from (a preset's name or a file), for messages.
    source: String,
    /// The study's run keys, when the document is a study (`[[runs]]` with `config` tables).
    study_runs: Vec<String>,
    /// Which study run the form edits.
    selected_run: usize,
    /// Text of fields being typed that is not (yet) a valid value, by setting key.
    buffers: HashMap<String, String>,
    /// Why a buffered field's text is not a value.
    field_errors: HashMap<String, String>,
    /// Bumped on every change; checks are matched against it.
    revision: u64,
    changed_at: Option<Instant>,
    checking: Option<(u64, Job<Preflight>)>,
    checked: Option<(u64, Preflight)>,
    /// The file path typed or picked for Open/Save.
    pub path: String,
    dialog: Option<(DialogKind, DialogJob)>,
    /// A document being read or written.
    file: Option<(FileOp, Job<Result<String, String>>)>,
    /// The "Try the rewards" box.
    pub try_rewards: RewardsTry,
    defaults: toml::Table,
    /// A message about the last Open/Save/Copy.
    status: Option<String>,
}

/// What a file job does.
#[derive(Debug, Clone, PartialEq)]
enum FileOp {
    Open(PathBuf),
    Save(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DialogKind {
    OpenDocument,
    SaveDocument,
    Model,
    Dataset,
}

impl Default for Launch {
    fn default() -> Self {
        let mut launch = Self {
            doc: DocumentMut::new(),
            source: String::new(),
            study_runs: Vec::new(),
            selected_run: 0,
            buffers: HashMap::new(),
            field_errors: HashMap::new(),
            revision: 0,
            changed_at: None,
            checking: None,
            checked: None,
            path: String::new(),
            dialog: None,
            file: None,
            try_rewards: RewardsTry::default(),
            defaults: settings::defaults(),
            status: None,
        };
        launch
            .open_text(PRESETS[0].1, PRESETS[0].0)
            .expect("the minimal run parses");
        launch
    }
}

impl Launch {
    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        self.poll_dialog(ui.ctx(), ctx);
        self.poll_file(ctx);
        self.poll_check(ui.ctx(), ctx.workspace.shared());
        ui.horizontal(|ui| {
            ui.heading("Launch");
            ui.label(RichText::new(format!("from {}", self.source)).weak());
        });
        self.toolbar_ui(ui, ctx);
        ui.separator();
        self.status_ui(ui, ctx);
        ui.separator();
        egui::ScrollArea::vertical()
            .auto_shrink([false, false])
            .show(ui, |ui| self.form_ui(ui, ctx));
    }
}
