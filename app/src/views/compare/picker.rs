//! The checkpoint picker above the tabs: one menu per compared slot, and the choices they
//! offer (the workspace's checkpoints, then models on disk).

use std::collections::BTreeSet;

use egui::RichText;
use engine::train::checkpoint::ModelSpec;

use super::slots::{label_of, slot_color};
use super::{CompareSettings, CompareView, MAX_CHECKPOINTS};
use crate::context::AppContext;
use crate::views::traces::drawable;

impl CompareView {
    /// Adds a checkpoint (or model) to compare, unless it is there or four are.
    pub fn add(&mut self, settings: &mut CompareSettings, spec: &str) {
        if !settings.specs.iter().any(|s| s == spec) && settings.specs.len() < MAX_CHECKPOINTS {
            settings.specs.push(spec.to_string());
        }
    }

    /// A spec's label: the run and step of a checkpoint, else the model's file name.
    fn label(&self, spec: &str) -> String {
        label_of(self.catalog.as_ref(), spec)
    }

    pub(super) fn picker_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut CompareSettings,
        recent: &[String],
    ) {
        let choices = self.choices(ctx, ui.ctx(), recent);
        let mut remove = None;
        ui.horizontal_wrapped(|ui| {
            for (i, spec) in settings.specs.iter_mut().enumerate() {
                ui.group(|ui| {
                    let name = ui.label(
                        RichText::new(format!("[{}]", i + 1))
                            .strong()
                            .color(slot_color(i)),
                    );
                    let label = self.label(spec);
                    egui::ComboBox::from_id_salt(("compare_slot", i))
                        .selected_text(label)
                        .width(200.0)
                        .show_ui(ui, |ui| {
                            choices_ui(ui, &choices, |picked| *spec = picked.to_string());
                        })
                        .response
                        .labelled_by(name.id);
                    if ui
                        .small_button("Remove")
                        .on_hover_text("Stop comparing this one")
                        .clicked()
                    {
                        remove = Some(i);
                    }
                });
            }
            if settings.specs.len() < MAX_CHECKPOINTS {
                let name = ui.label("Compare with");
                egui::ComboBox::from_id_salt("compare_add")
                    .selected_text("a checkpoint or model…")
                    .width(200.0)
                    .show_ui(ui, |ui| {
                        let mut picked = None;
                        choices_ui(ui, &choices, |p| picked = Some(p.to_string()));
                        if let Some(p) = picked {
                            self.add(settings, &p);
                        }
                    })
                    .response
                    .labelled_by(name.id);
                let typed = ui.add(
                    egui::TextEdit::singleline(&mut self.typed_model)
                        .hint_text("or a model path, checkpoint id, RUN:STEP")
                        .desired_width(230.0),
                );
                let enter = typed.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if (ui.button("Add").clicked() || enter) && !self.typed_model.trim().is_empty() {
                    let spec = self.typed_model.trim().to_string();
                    self.add(settings, &spec);
                    self.typed_model.clear();
                }
            }
        });
        if let Some(i) = remove {
            settings.specs.remove(i);
            self.scored = None;
            self.generation.clear();
        }
    }

    /// Everything the pickers offer: (spec, label, group).
    fn choices(
        &self,
        ctx: &mut AppContext,
        egui_ctx: &egui::Context,
        recent: &[String],
    ) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        if let Some(c) = &self.catalog {
            for ch in &c.checkpoints {
                let r = &ch.record;
                out.push((
                    r.id.to_string(),
                    format!(
                        "#{} {} · step {} ({}) · checkpoint {}",
                        r.run_id, ch.run_name, r.step, r.kind, r.id
                    ),
                    "Checkpoints",
                ));
            }
        }
        let mut models: Vec<String> = vec![
            engine::models::tiny::TINY_REASONER.to_string(),
            engine::models::tiny::TINY_REASONER_INIT.to_string(),
        ];
        models.extend(recent.iter().cloned());
        if let Some(found) = ctx.models(egui_ctx) {
            models.extend(
                found
                    .iter()
                    .filter_map(|m| m.as_ref().ok())
                    .map(|m| m.path.clone()),
            );
        }
        let mut seen = BTreeSet::new();
        for m in models {
            if seen.insert(m.clone()) && !ModelSpec::parse(&m).is_checkpoint() {
                out.push((m.clone(), m, "Models"));
            }
        }
        out
    }
}

/// The pickers' menu entries, by group.
fn choices_ui(
    ui: &mut egui::Ui,
    choices: &[(String, String, &'static str)],
    mut pick: impl FnMut(&str),
) {
    egui::ScrollArea::vertical()
        .max_height(320.0)
        .show(ui, |ui| {
            let mut group = "";
            for (spec, label, g) in choices {
                if *g != group {
                    group = g;
                    ui.label(RichText::new(*g).weak());
                }
                if ui.selectable_label(false, drawable(ui, label)).clicked() {
                    pick(spec);
                }
            }
            if choices.iter().all(|c| c.2 != "Checkpoints") {
                ui.label(RichText::new("No checkpoints yet").weak());
            }
        });
}
