//! Launch: a form over every setting of a run config (or of one run of a study), edited in
//! place in the TOML document so a file opened here and saved again is unchanged, byte for
//! byte, and `studio train FILE` reads exactly what the form shows. Presets from
//! `assets/presets/`; each setting with its default and a tooltip; the checks of
//! `engine::train::preflight` run in the background after each change, their messages next
//! to the fields; Copy as TOML, Copy as CLI command; Start spawns a worker (or the study) and
//! opens the run's plots.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};

use egui::{RichText, TextEdit};
use engine::train::preflight::{Preflight, human_bytes};
use engine::train::settings::{self, Setting, SettingKind};
use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use crate::context::{AppCommand, AppContext, TRY_IT_RUN};

/// The documents the preset menu offers, by name.
pub const PRESETS: &[(&str, &str)] = &[
    ("New run (defaults)", settings::MINIMAL_RUN),
    ("Try it (SFT on arithmetic)", TRY_IT_RUN),
    (
        "tiny-reasoner (how the built-in model was trained)",
        include_str!("../../../assets/presets/tiny-reasoner.toml"),
    ),
    (
        "cold-start SFT then GRPO",
        include_str!("../../../assets/presets/cold-start-sft-then-grpo.toml"),
    ),
    (
        "clip-higher",
        include_str!("../../../assets/presets/clip-higher.toml"),
    ),
    (
        "Dr. GRPO length",
        include_str!("../../../assets/presets/dr-grpo-length.toml"),
    ),
    (
        "forking tokens",
        include_str!("../../../assets/presets/forking-tokens.toml"),
    ),
];

/// Which settings belong to a group of the form.
type KeyFilter = dyn Fn(&str) -> bool;

/// The settings whose fields show only while their table is present.
const SECTIONS: [&str; 3] = ["init_from", "sft.lora", "grpo.lora"];

/// How long the form waits after the last edit before it checks the document.
const CHECK_DELAY: Duration = Duration::from_millis(300);

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
    checking: Option<(u64, Receiver<Preflight>)>,
    checked: Option<(u64, Preflight)>,
    /// The file path typed or picked for Open/Save.
    pub path: String,
    dialog: Option<(DialogKind, Receiver<Option<PathBuf>>)>,
    defaults: toml::Table,
    /// A message about the last Open/Save/Copy.
    status: Option<String>,
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
    /// Replaces the form's document. The document is kept as written (comments, order).
    pub fn open_text(&mut self, text: &str, source: &str) -> Result<(), String> {
        let doc: DocumentMut = text
            .parse()
            .map_err(|e| format!("{source} is not valid TOML: {e}"))?;
        self.study_runs = doc
            .get("runs")
            .and_then(Item::as_array_of_tables)
            .map(|runs| {
                runs.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        r.get("key")
                            .and_then(Item::as_str)
                            .map_or_else(|| format!("run {}", i + 1), str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.doc = doc;
        self.source = source.to_string();
        self.selected_run = 0;
        self.buffers.clear();
        self.field_errors.clear();
        self.touch();
        Ok(())
    }

    /// Opens a run config or study file.
    pub fn open_file(&mut self, path: &std::path::Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read {}: {e}", path.display()))?;
        self.open_text(&text, &path.display().to_string())?;
        self.path = path.display().to_string();
        Ok(())
    }

    /// Opens the form on a run config whose model is `model` (the Models view's Fine-tune).
    pub fn fine_tune(&mut self, model: &str) {
        let text = format!(
            "model = {}\n\n[data]\nbuiltin = \"arithmetic\"\n",
            Value::from(model)
        );
        self.open_text(&text, &format!("Fine-tune {model}"))
            .expect("a generated run parses");
    }

    /// Points the edited run at a dataset file with its role mapping (the Datasets view's
    /// Use in Launch): `data.path` replaces a built-in task.
    pub fn use_dataset(&mut self, path: &str, mapping: Option<&engine::data::RoleMapping>) {
        self.remove("data.builtin");
        self.set("data.path", Value::from(path));
        self.remove("data.mapping");
        if let Some(m) = mapping {
            let mut table = toml_edit::InlineTable::new();
            for (role, column) in [
                ("prompt", &m.prompt),
                ("reasoning", &m.reasoning),
                ("answer", &m.answer),
                ("messages", &m.messages),
                ("image", &m.image),
            ] {
                if let Some(c) = column {
                    table.insert(role, Value::from(c.as_str()));
                }
            }
            if !table.is_empty() {
                self.set("data.mapping", Value::InlineTable(table));
            }
        }
    }

    /// The whole document as it would be saved.
    pub fn toml(&self) -> String {
        self.doc.to_string()
    }

    /// Whether the document is a study (several runs).
    pub fn is_study(&self) -> bool {
        !self.study_runs.is_empty()
    }

    /// The run config the form edits, as its own document (a study's run: its `config` table).
    pub fn run_toml(&self) -> String {
        if !self.is_study() {
            return self.toml();
        }
        let mut doc = DocumentMut::new();
        if let Some(table) = self.config_table() {
            let mut copy = Table::new();
            for (k, item) in table.iter() {
                copy.insert(k, item.clone());
            }
            *doc.as_table_mut() = copy;
        }
        doc.to_string()
    }

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

    fn touch(&mut self) {
        self.revision += 1;
        self.changed_at = Some(Instant::now());
    }

    fn config_table(&self) -> Option<&dyn TableLike> {
        if self.is_study() {
            let run = self
                .doc
                .get("runs")?
                .as_array_of_tables()?
                .get(self.selected_run)?;
            run.get("config")?.as_table_like()
        } else {
            Some(self.doc.as_table())
        }
    }

    fn config_table_mut(&mut self) -> Option<&mut dyn TableLike> {
        if self.is_study() {
            let run = self
                .doc
                .get_mut("runs")?
                .as_array_of_tables_mut()?
                .get_mut(self.selected_run)?;
            if run.get("config").is_none() {
                run.insert("config", Item::Table(Table::new()));
            }
            run.get_mut("config")?.as_table_like_mut()
        } else {
            Some(self.doc.as_table_mut())
        }
    }

    /// The item at dotted `key` of the edited run config.
    pub fn get(&self, key: &str) -> Option<&Item> {
        let mut table = self.config_table()?;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let item = table.get(part)?;
            if parts.peek().is_none() {
                return Some(item);
            }
            table = item.as_table_like()?;
        }
        None
    }

    /// The table at dotted `path` of the edited config ("" = the config itself), creating
    /// missing tables on the way when `create`: `[header]` tables under `[header]` tables,
    /// inline tables inside inline ones.
    fn table_mut(&mut self, path: &str, create: bool) -> Option<&mut dyn TableLike> {
        let mut table = self.config_table_mut()?;
        if path.is_empty() {
            return Some(table);
        }
        // The config itself is a `[header]` table (the document, or `[runs.config]`).
        let mut standard = true;
        for part in path.split('.') {
            if table.get(part).and_then(Item::as_table_like).is_none() {
                if !create {
                    return None;
                }
                let new = if standard {
                    Item::Table(Table::new())
                } else {
                    Item::Value(Value::InlineTable(toml_edit::InlineTable::new()))
                };
                table.insert(part, new);
            }
            let item = table.get_mut(part)?;
            standard = item.is_table();
            table = item.as_table_like_mut()?;
        }
        Some(table)
    }

    /// Sets the value at dotted `key`, creating its tables; keeps the old value's decor
    /// (spacing, trailing comment).
    pub fn set(&mut self, key: &str, mut value: Value) {
        let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
        let Some(table) = self.table_mut(parent, true) else {
            return;
        };
        if let Some(old) = table.get(last).and_then(Item::as_value) {
            *value.decor_mut() = old.decor().clone();
        }
        table.insert(last, Item::Value(value));
        self.touch();
    }

    /// Replaces the item at dotted `key` (a table or array of tables edited as TOML).
    fn set_item(&mut self, key: &str, item: Item) {
        let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
        self.table_mut(parent, true);
        let header = parent.is_empty() || self.get(parent).is_some_and(Item::is_table);
        let item = match item {
            // Inside an inline table everything is a value.
            Item::Table(t) if !header => Item::Value(Value::InlineTable(t.into_inline_table())),
            other => other,
        };
        if let Some(table) = self.table_mut(parent, false) {
            table.insert(last, item);
        }
        self.touch();
    }

    /// Removes the setting at `key` (back to its default).
    pub fn remove(&mut self, key: &str) {
        let (parent, last) = key.rsplit_once('.').unwrap_or(("", key));
        if let Some(t) = self.table_mut(parent, false)
            && t.remove(last).is_some()
        {
            self.touch();
        }
    }

    /// Adds an empty section (`[sft.lora]`, `init_from`) or removes it.
    fn set_section(&mut self, key: &str, on: bool) {
        if on {
            self.table_mut(key, true);
            self.touch();
        } else {
            self.remove(key);
        }
    }

    /// The text a field shows for the item at `key`.
    fn field_text(&self, setting: &Setting) -> Option<String> {
        if let Some(buffer) = self.buffers.get(setting.key) {
            return Some(buffer.clone());
        }
        let item = self.get(setting.key)?;
        Some(match (setting.kind, item) {
            (SettingKind::Text, Item::Value(Value::String(s))) => s.value().clone(),
            (SettingKind::Toml, item) => toml_fragment(setting.key, item),
            (_, Item::Value(v)) => v.clone().decorated("", "").to_string(),
            (_, other) => other.to_string().trim().to_string(),
        })
    }

    /// The effective value at `key`: the document's, else the default.
    fn effective(&self, key: &str) -> Option<toml::Value> {
        self.get(key)
            .and_then(|item| item.as_value())
            .and_then(|v| {
                toml::from_str::<toml::Table>(&format!("v = {}", v.clone().decorated("", ""))).ok()
            })
            .and_then(|t| t.get("v").cloned())
            .or_else(|| settings::default_of(&self.defaults, key))
    }

    /// Takes what the user typed into a field: a value of the setting's kind is written to
    /// the document; anything else is kept as text with a message, and blocks Start.
    fn typed(&mut self, setting: &Setting, text: String) {
        let key = setting.key;
        if text.trim().is_empty() && setting.kind != SettingKind::Toml {
            self.buffers.remove(key);
            self.field_errors.remove(key);
            self.remove(key);
            return;
        }
        let parsed: Result<Option<Item>, String> = match setting.kind {
            SettingKind::Text => Ok(Some(Item::Value(Value::from(text.as_str())))),
            SettingKind::Integer => match text.trim().parse::<Value>() {
                Ok(v @ Value::Integer(_)) => Ok(Some(Item::Value(v))),
                _ => Err("a whole number".to_string()),
            },
            SettingKind::Float => match text.trim().parse::<Value>() {
                Ok(v @ (Value::Float(_) | Value::Integer(_))) => Ok(Some(Item::Value(v))),
                _ => Err("a number (1e-4, 0.2)".to_string()),
            },
            SettingKind::List => match text.trim().parse::<Value>() {
                Ok(v @ Value::Array(_)) => Ok(Some(Item::Value(v))),
                _ => Err("a list in brackets ([0.9, 0.99], [\"q_proj\"])".to_string()),
            },
            SettingKind::Toml => parse_fragment(key, &text),
            SettingKind::Bool | SettingKind::Choice(_) | SettingKind::Section => Ok(None),
        };
        match parsed {
            Ok(Some(item)) => {
                self.buffers.remove(key);
                self.field_errors.remove(key);
                match item {
                    Item::Value(v) => self.set(key, v),
                    other => self.set_item(key, other),
                }
            }
            Ok(None) => {
                self.buffers.remove(key);
                self.field_errors.remove(key);
                self.remove(key);
            }
            Err(expected) => {
                self.buffers.insert(key.to_string(), text);
                self.field_errors
                    .insert(key.to_string(), format!("`{key}` takes {expected}"));
                self.touch();
            }
        }
    }

    /// Starts a check of the document when it changed and the user paused typing; collects a
    /// finished check.
    fn poll_check(&mut self, ctx: &egui::Context, workspace: &std::path::Path) {
        if let Some((rev, rx)) = &self.checking {
            match rx.try_recv() {
                Ok(result) => {
                    self.checked = Some((*rev, result));
                    self.checking = None;
                }
                Err(TryRecvError::Disconnected) => self.checking = None,
                Err(TryRecvError::Empty) => {}
            }
        }
        let stale = self
            .checked
            .as_ref()
            .is_none_or(|(r, _)| *r != self.revision);
        let in_flight = self
            .checking
            .as_ref()
            .is_some_and(|(r, _)| *r == self.revision);
        if !stale || in_flight {
            return;
        }
        let waited = self.changed_at.is_none_or(|t| t.elapsed() >= CHECK_DELAY);
        if !waited || self.checking.is_some() {
            ctx.request_repaint_after(CHECK_DELAY);
            return;
        }
        let (tx, rx) = channel();
        let run = self.run_toml();
        let study = self.is_study().then(|| self.toml());
        let dir = workspace.to_path_buf();
        let repaint = ctx.clone();
        std::thread::spawn(move || {
            let workspace = engine::store::Workspace::open(&dir).ok();
            let mut result = engine::train::preflight::check_toml(&run, workspace.as_ref());
            if let Some(study) = study
                && let Err(e) = engine::train::study::Study::from_toml(&study, "the study")
            {
                result.problems.insert(
                    0,
                    engine::train::preflight::Problem {
                        setting: String::new(),
                        message: e.to_string(),
                    },
                );
            }
            let _ = tx.send(result);
            repaint.request_repaint();
        });
        self.checking = Some((self.revision, rx));
    }

    /// The current check, if it is of the document as it is now.
    fn current_check(&self) -> Option<&Preflight> {
        self.checked
            .as_ref()
            .filter(|(r, _)| *r == self.revision)
            .map(|(_, p)| p)
    }

    /// Whether the document as it is now has been checked.
    pub fn checked(&self) -> bool {
        self.current_check().is_some()
    }

    /// Whether Start is possible: the check of this revision passed and every field parses.
    pub fn can_start(&self) -> bool {
        self.field_errors.is_empty() && self.current_check().is_some_and(Preflight::ok)
    }

    fn problem_for(&self, key: &str) -> Option<String> {
        if let Some(e) = self.field_errors.get(key) {
            return Some(e.clone());
        }
        self.current_check()?
            .problems
            .iter()
            .find(|p| p.setting == key)
            .map(|p| p.message.clone())
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        self.poll_dialog(ctx);
        self.poll_check(ui.ctx(), &ctx.workspace_dir.clone());
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

    fn toolbar_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
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
                match self.open_file(&path) {
                    Ok(()) => self.status = Some(format!("opened {}", path.display())),
                    Err(e) => ctx.error = Some(e),
                }
            }
            if ui
                .button("Save")
                .on_hover_text("Write the document to this path")
                .clicked()
            {
                let path = PathBuf::from(self.path.trim());
                match std::fs::write(&path, self.toml()) {
                    Ok(()) => self.status = Some(format!("saved {}", path.display())),
                    Err(e) => ctx.error = Some(format!("could not write {}: {e}", path.display())),
                }
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
            if let Some(rx) = crate::dialogs::pick_file(ui.ctx().clone(), dialog) {
                self.dialog = Some((DialogKind::OpenDocument, rx));
            }
        }
        if crate::dialogs::button(ui, "Save as…", "Write the document to a file you pick") {
            let dialog = rfd::FileDialog::new()
                .set_title("Save the run")
                .add_filter("TOML", &["toml"])
                .set_file_name("run.toml");
            if let Some(rx) = crate::dialogs::save_file(ui.ctx().clone(), dialog) {
                self.dialog = Some((DialogKind::SaveDocument, rx));
            }
        }
    }

    fn poll_dialog(&mut self, ctx: &mut AppContext) {
        let Some((kind, rx)) = &self.dialog else {
            return;
        };
        let kind = *kind;
        let picked = match rx.try_recv() {
            Ok(p) => p,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => None,
        };
        self.dialog = None;
        let Some(path) = picked else {
            return;
        };
        match kind {
            DialogKind::OpenDocument => {
                if let Err(e) = self.open_file(&path) {
                    ctx.error = Some(e);
                }
            }
            DialogKind::SaveDocument => match std::fs::write(&path, self.toml()) {
                Ok(()) => {
                    self.path = path.display().to_string();
                    self.status = Some(format!("saved {}", path.display()));
                }
                Err(e) => ctx.error = Some(format!("could not write {}: {e}", path.display())),
            },
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
    fn status_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal_wrapped(|ui| {
            let can_start = self.can_start() && ctx.can_start_runs();
            let label = if self.is_study() {
                "Start study"
            } else {
                "Start"
            };
            let start = ui.add_enabled(can_start, egui::Button::new(RichText::new(label).strong()));
            let start = if ctx.can_start_runs() {
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
        match ctx.start_run(&self.toml(), &self.source) {
            Ok(run) => ctx.commands.push(AppCommand::ShowRun(run)),
            Err(e) => ctx.error = Some(e),
        }
    }

    fn form_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        let grpo = self
            .effective("algorithm")
            .is_some_and(|v| v.as_str() == Some("grpo"));
        let all = settings::all();
        let is_grpo = |k: &str| k.starts_with("grpo.") || k == "rewards";
        let is_sft = |k: &str| k.starts_with("sft.");
        let algorithm: &KeyFilter = if grpo { &is_grpo } else { &is_sft };
        let groups: [(&str, &KeyFilter); 6] = [
            ("Run", &|k: &str| !k.contains('.') && k != "rewards"),
            ("Start from a checkpoint", &|k: &str| {
                k.starts_with("init_from.")
            }),
            ("Data", &|k: &str| k.starts_with("data.")),
            (if grpo { "GRPO" } else { "SFT" }, algorithm),
            ("Evaluation", &|k: &str| k.starts_with("eval.")),
            ("Checkpoints", &|k: &str| k.starts_with("checkpoint.")),
        ];
        for (title, member) in groups {
            let in_group: Vec<Setting> = all.iter().copied().filter(|s| member(s.key)).collect();
            egui::CollapsingHeader::new(RichText::new(title).strong())
                .id_salt(("launch_group", title))
                .default_open(title != "Start from a checkpoint")
                .show(ui, |ui| {
                    egui::Grid::new(("launch_grid", title))
                        .num_columns(3)
                        .striped(true)
                        .spacing([12.0, 6.0])
                        .show(ui, |ui| {
                            for setting in &in_group {
                                if self.visible(setting) {
                                    self.setting_ui(ui, ctx, setting);
                                    ui.end_row();
                                }
                            }
                        });
                });
        }
    }

    /// A section's fields show only while the section is present.
    fn visible(&self, setting: &Setting) -> bool {
        let key = setting.key;
        SECTIONS.iter().all(|section| {
            !(key.len() > section.len()
                && key.starts_with(section)
                && key.as_bytes()[section.len()] == b'.'
                && self.get(section).is_none())
        })
    }

    fn setting_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, setting: &Setting) {
        let key = setting.key;
        let default = settings::default_of(&self.defaults, key);
        let set_here = self.get(key).is_some();
        let hover = match &default {
            Some(d) => format!("{}\nDefault: {d}", setting.help),
            None => format!("{}\nDefault: none", setting.help),
        };
        let name = RichText::new(key).monospace();
        let label = ui
            .label(if set_here { name.strong() } else { name })
            .on_hover_text(&hover);
        ui.horizontal(|ui| {
            match setting.kind {
                SettingKind::Bool => {
                    let mut on = self
                        .effective(key)
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false);
                    if ui
                        .checkbox(&mut on, "")
                        .labelled_by(label.id)
                        .on_hover_text(&hover)
                        .changed()
                    {
                        self.set(key, Value::from(on));
                    }
                }
                SettingKind::Choice(options) => {
                    let current = self
                        .effective(key)
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let mut chosen = None;
                    let combo = egui::ComboBox::from_id_salt(("launch_choice", key))
                        .selected_text(if current.is_empty() { "—" } else { &current })
                        .show_ui(ui, |ui| {
                            for option in options {
                                if ui.selectable_label(current == *option, *option).clicked() {
                                    chosen = Some(*option);
                                }
                            }
                        });
                    combo.response.labelled_by(label.id).on_hover_text(&hover);
                    if let Some(option) = chosen
                        && option != current
                    {
                        if key == "data.builtin" {
                            self.remove("data.path");
                        }
                        self.set(key, Value::from(option));
                    }
                }
                SettingKind::Section => {
                    let mut on = set_here;
                    if ui
                        .checkbox(&mut on, "")
                        .labelled_by(label.id)
                        .on_hover_text(&hover)
                        .changed()
                    {
                        self.set_section(key, on);
                    }
                }
                SettingKind::Toml => {
                    let mut text = self.field_text(setting).unwrap_or_default();
                    let edit = ui.add(
                        TextEdit::multiline(&mut text)
                            .code_editor()
                            .desired_rows(3)
                            .desired_width(420.0)
                            .hint_text(match key {
                                "rewards" => "[[rewards]]\nkind = \"accuracy\"",
                                _ => "prompt = \"question\"\nanswer = \"solution\"",
                            }),
                    );
                    let edit = edit.labelled_by(label.id).on_hover_text(&hover);
                    if edit.changed() {
                        self.typed(setting, text);
                    }
                }
                SettingKind::Integer
                | SettingKind::Float
                | SettingKind::List
                | SettingKind::Text => {
                    let mut text = self.field_text(setting).unwrap_or_default();
                    let hint = match &default {
                        Some(toml::Value::String(s)) => s.clone(),
                        Some(d) => d.to_string(),
                        None => String::new(),
                    };
                    let width = if setting.kind == SettingKind::Text {
                        320.0
                    } else {
                        140.0
                    };
                    let edit = ui.add(
                        TextEdit::singleline(&mut text)
                            .hint_text(hint)
                            .desired_width(width),
                    );
                    let edit = edit.labelled_by(label.id).on_hover_text(&hover);
                    if edit.changed() {
                        self.typed(setting, text);
                    }
                    if key == "model" {
                        self.model_picker(ui, ctx);
                    }
                    if (key == "model" || key == "data.path")
                        && crate::dialogs::button(ui, "…", "Pick a file")
                    {
                        let (kind, dialog) = if key == "model" {
                            (
                                DialogKind::Model,
                                rfd::FileDialog::new()
                                    .set_title("A model: .gguf file or config.json")
                                    .add_filter("Models", &["gguf", "json"]),
                            )
                        } else {
                            (
                                DialogKind::Dataset,
                                rfd::FileDialog::new()
                                    .set_title("A dataset file")
                                    .add_filter(
                                        "Datasets",
                                        &["jsonl", "json", "csv", "tsv", "parquet"],
                                    ),
                            )
                        };
                        if let Some(rx) = crate::dialogs::pick_file(ui.ctx().clone(), dialog) {
                            self.dialog = Some((kind, rx));
                        }
                    }
                }
            }
            if set_here
                && setting.kind != SettingKind::Section
                && key != "model"
                && ui
                    .small_button("default")
                    .on_hover_text("Back to the default (remove from the document)")
                    .clicked()
            {
                self.buffers.remove(key);
                self.field_errors.remove(key);
                self.remove(key);
            }
        });
        match self.problem_for(key) {
            Some(problem) => {
                ui.colored_label(ui.visuals().error_fg_color, problem);
            }
            None => {
                ui.label(RichText::new(setting.help).weak().small());
            }
        }
    }

    fn model_picker(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        let models: Vec<(String, String)> = ctx
            .models(ui.ctx())
            .unwrap_or_default()
            .iter()
            .filter_map(|m| m.as_ref().ok())
            .map(|m| (m.name.clone(), m.path.clone()))
            .collect();
        let mut chosen = None;
        ui.menu_button("found on disk", |ui| {
            for (name, path) in &models {
                if ui
                    .selectable_label(false, name)
                    .on_hover_text(path)
                    .clicked()
                {
                    chosen = Some(path.clone());
                }
            }
        });
        if let Some(path) = chosen {
            self.buffers.remove("model");
            self.set("model", Value::from(path));
        }
    }
}

/// How a table or array of tables at `key` shows in its text box: a table as its body, an
/// array of tables as `[[name]]` blocks.
fn toml_fragment(key: &str, item: &Item) -> String {
    let name = key.rsplit('.').next().unwrap_or(key);
    let mut doc = DocumentMut::new();
    match item {
        Item::Table(t) => {
            let mut copy = Table::new();
            for (k, v) in t.iter() {
                copy.insert(k, v.clone());
            }
            *doc.as_table_mut() = copy;
        }
        Item::Value(Value::InlineTable(t)) => {
            let mut copy = Table::new();
            for (k, v) in t.iter() {
                copy.insert(k, Item::Value(v.clone().decorated("", "")));
            }
            *doc.as_table_mut() = copy;
        }
        other => {
            doc.insert(name, other.clone());
        }
    }
    doc.to_string().trim().to_string()
}

/// The inverse of [`toml_fragment`]: `Ok(None)` for empty text (remove the setting).
fn parse_fragment(key: &str, text: &str) -> Result<Option<Item>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let name = key.rsplit('.').next().unwrap_or(key);
    let doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| format!("TOML: {}", first_line(&e.to_string())))?;
    if name == "rewards" {
        return match doc.get("rewards") {
            Some(item @ (Item::ArrayOfTables(_) | Item::Value(Value::Array(_)))) => {
                Ok(Some(item.clone()))
            }
            _ => Err("[[rewards]] tables".into()),
        };
    }
    let mut table = Table::new();
    for (k, v) in doc.as_table().iter() {
        table.insert(k, v.clone());
    }
    Ok(Some(Item::Table(table)))
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_survives_the_form_unchanged() {
        for (name, text) in PRESETS {
            let mut launch = Launch::default();
            launch.open_text(text, name).expect("parses");
            assert_eq!(launch.toml(), *text, "{name}");
        }
    }

    #[test]
    fn edits_write_the_setting_where_it_belongs() {
        let mut launch = Launch::default();
        let lr = settings::find("sft.lr").expect("sft.lr");
        launch.typed(&lr, "3e-3".into());
        let steps = settings::find("sft.max_steps").expect("max_steps");
        launch.typed(&steps, "12".into());
        let config = engine::train::RunConfig::from_toml(&launch.toml(), "form").expect("valid");
        assert_eq!(config.sft.lr, 3e-3);
        assert_eq!(config.sft.max_steps, 12);
        assert!(
            launch.toml().contains("[sft]\nlr = 3e-3\nmax_steps = 12\n"),
            "{}",
            launch.toml()
        );
        // Not a number: kept as typed, flagged, the document untouched.
        let before = launch.toml();
        launch.typed(&lr, "fast".into());
        assert_eq!(launch.toml(), before);
        assert!(!launch.can_start());
        assert!(launch.problem_for("sft.lr").is_some());
        // Emptied: back to the default.
        launch.typed(&lr, String::new());
        let config = engine::train::RunConfig::from_toml(&launch.toml(), "form").expect("valid");
        assert_eq!(config.sft.lr, 1e-4);
    }

    #[test]
    fn a_study_run_is_edited_inside_its_config_table() {
        let (name, text) = PRESETS[3];
        let mut launch = Launch::default();
        launch.open_text(text, name).expect("parses");
        assert!(launch.is_study());
        launch.selected_run = 1;
        let steps = settings::find("sft.max_steps").expect("max_steps");
        launch.typed(&steps, "7".into());
        let study = engine::train::study::Study::from_toml(&launch.toml(), "form").expect("valid");
        assert_eq!(
            study.runs[1].config["sft"]["max_steps"].as_integer(),
            Some(7),
            "{}",
            launch.toml()
        );
        assert_eq!(
            study.runs[0].config["sft"]["max_steps"].as_integer(),
            Some(300)
        );
        let run = engine::train::RunConfig::from_toml(&launch.run_toml(), "run").expect("valid");
        assert_eq!(run.sft.max_steps, 7);
    }

    #[test]
    fn sections_and_fragments_round_trip() {
        let mut launch = Launch::default();
        launch.set_section("sft.lora", true);
        let rank = settings::find("sft.lora.rank").expect("rank");
        launch.typed(&rank, "4".into());
        let rewards = settings::find("rewards").expect("rewards");
        let algo = Value::from("grpo");
        launch.set("algorithm", algo);
        launch.typed(
            &rewards,
            "[[rewards]]\nkind = \"accuracy\"\n\n[[rewards]]\nkind = \"format\"\npattern = \"=\""
                .into(),
        );
        let config = engine::train::RunConfig::from_toml(&launch.toml(), "form").expect("valid");
        assert_eq!(config.sft.lora.as_ref().map(|l| l.rank), Some(4));
        assert_eq!(config.rewards.len(), 2);
        let shown = launch.field_text(&rewards).expect("shown");
        assert!(shown.starts_with("[[rewards]]"), "{shown}");
        launch.set_section("sft.lora", false);
        let config = engine::train::RunConfig::from_toml(&launch.toml(), "form").expect("valid");
        assert!(config.sft.lora.is_none());
    }

    #[test]
    fn sections_are_the_section_settings() {
        let mut sections: Vec<&str> = settings::all()
            .iter()
            .filter(|s| s.kind == SettingKind::Section)
            .map(|s| s.key)
            .collect();
        sections.sort_unstable();
        let mut ours = SECTIONS.to_vec();
        ours.sort_unstable();
        assert_eq!(sections, ours);
    }

    #[test]
    fn the_cli_command_is_the_document() {
        let launch = Launch::default();
        let cmd = launch.cli_command(std::path::Path::new("/tmp/ws"));
        assert!(cmd.starts_with("studio --workspace '/tmp/ws' train - <<'TOML'\n"));
        assert!(cmd.contains(settings::MINIMAL_RUN));
        assert!(cmd.ends_with("TOML\n"));
    }
}
