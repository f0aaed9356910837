//! The settings form: every setting of the run config in its group, each field with its
//! default, tooltip and the check's message, and how the text typed into a field becomes a value.

use egui::{RichText, TextEdit};
use engine::train::settings::{self, Setting, SettingKind};
use toml_edit::{DocumentMut, Item, Table, Value};

use super::{DialogKind, Launch};
use crate::context::AppContext;

/// Which settings belong to a group of the form.
type KeyFilter = dyn Fn(&str) -> bool;

/// The settings whose fields show only while their table is present.
const SECTIONS: [&str; 3] = ["init_from", "sft.lora", "grpo.lora"];

impl Launch {
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
    pub(super) fn typed(&mut self, setting: &Setting, text: String) {
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

    pub(super) fn form_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        let grpo = self
            .effective("algorithm")
            .is_some_and(|v| v.as_str() == Some("grpo"));
        let all = settings::all();
        let is_grpo = |k: &str| k.starts_with("grpo.") || k == "rewards";
        let is_sft = |k: &str| k.starts_with("sft.");
        let algorithm: &KeyFilter = if grpo { &is_grpo } else { &is_sft };
        if grpo {
            self.try_rewards_ui(ui);
        }
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
                        self.dialog = Some((kind, crate::dialogs::pick_file(ui.ctx(), dialog)));
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
}
