//! The TOML document the form edits in place: opening it (text, file, Fine-tune, Use in
//! Launch), and reading and writing its settings (a study's inside the selected run's `config`
//! table), keeping comments and order so what is saved is what was opened.

use std::time::Instant;

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

use super::{FileOp, Launch};
use crate::jobs::Job;

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

    /// Opens a run config or study file: read on a background job, the form replaced when it
    /// has been (a failure lands in the window's error banner).
    pub fn open_file(&mut self, egui_ctx: &egui::Context, path: &std::path::Path) {
        let from = path.to_path_buf();
        let job = Job::spawn("launch-file", egui_ctx, move |_| {
            std::fs::read_to_string(&from)
                .map_err(|e| format!("could not read {}: {e}", from.display()))
        });
        self.file = Some((FileOp::Open(path.to_path_buf()), job));
    }

    /// Writes the document to `path` on a background job.
    pub fn save_file(&mut self, egui_ctx: &egui::Context, path: &std::path::Path) {
        let to = path.to_path_buf();
        let text = self.toml();
        let job = Job::spawn("launch-file", egui_ctx, move |_| {
            std::fs::write(&to, text)
                .map(|()| String::new())
                .map_err(|e| format!("could not write {}: {e}", to.display()))
        });
        self.file = Some((FileOp::Save(path.to_path_buf()), job));
    }

    /// Whether a document is being read (Start waits for it).
    pub fn opening_file(&self) -> bool {
        matches!(self.file, Some((FileOp::Open(_), _)))
    }

    /// Takes a finished file job: the document opened or saved, or why not.
    pub(super) fn poll_file(&mut self, ctx: &mut crate::context::AppContext) {
        let Some((op, job)) = &mut self.file else {
            return;
        };
        let Some(answer) = job.poll_flat() else {
            return;
        };
        let op = op.clone();
        self.file = None;
        let result = match (&op, answer) {
            (FileOp::Open(path), Ok(text)) => self
                .open_text(&text, &path.display().to_string())
                .map(|()| format!("opened {}", path.display())),
            (FileOp::Save(path), Ok(_)) => Ok(format!("saved {}", path.display())),
            (_, Err(e)) => Err(e),
        };
        match result {
            Ok(status) => {
                let (FileOp::Open(path) | FileOp::Save(path)) = &op;
                self.path = path.display().to_string();
                self.status = Some(status);
            }
            Err(e) => ctx.error = Some(e),
        }
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

    pub(super) fn touch(&mut self) {
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
    pub(super) fn set_item(&mut self, key: &str, item: Item) {
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
    pub(super) fn set_section(&mut self, key: &str, on: bool) {
        if on {
            self.table_mut(key, true);
            self.touch();
        } else {
            self.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use engine::train::settings;

    use super::*;
    use crate::views::launch::PRESETS;

    #[test]
    fn every_preset_survives_the_form_unchanged() {
        for (name, text) in PRESETS {
            let mut launch = Launch::default();
            launch.open_text(text, name).expect("parses");
            assert_eq!(launch.toml(), *text, "{name}");
        }
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
}
