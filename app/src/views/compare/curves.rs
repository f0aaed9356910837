//! The Curves tab: the metric curves of the compared checkpoints' runs overlaid, the
//! checkpoints' steps marked.

use std::collections::{BTreeMap, BTreeSet};

use egui::RichText;
use egui_plot::{Legend, Line, Plot, VLine};
use engine::store::RunId;

use super::slots::{run_step, slot_color};
use super::{CompareSettings, CompareView};
use crate::context::AppContext;
use crate::series::downsample_min_max;
use crate::views::runs::run_color;
use crate::views::traces::empty_ui;

impl CompareView {
    pub(super) fn curves_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut CompareSettings,
    ) {
        // The runs of the picked checkpoints, with the picked steps.
        let mut runs: BTreeMap<RunId, Vec<(usize, u64)>> = BTreeMap::new();
        for (i, spec) in settings.specs.iter().enumerate() {
            if let Some((run, step)) = run_step(self.catalog.as_ref(), spec) {
                runs.entry(run).or_default().push((i, step));
            }
        }
        if runs.is_empty() {
            empty_ui(
                ui,
                "None of the picked ones is a checkpoint of a run: models on disk have no curves.",
            );
            return;
        }
        let mut names: BTreeSet<String> = BTreeSet::new();
        for run in runs.keys() {
            if let Some(n) = ctx.names.get(run) {
                names.extend(n.iter().cloned());
            }
        }
        ui.horizontal(|ui| {
            let name = ui.label("metric");
            egui::ComboBox::from_id_salt("compare_metric")
                .selected_text(settings.metric.clone())
                .width(220.0)
                .show_ui(ui, |ui| {
                    for n in &names {
                        ui.selectable_value(&mut settings.metric, n.clone(), n);
                    }
                })
                .response
                .labelled_by(name.id);
            ui.label(RichText::new("vertical lines: the picked checkpoints' steps").weak());
        });
        if !names.is_empty() && !names.contains(&settings.metric) {
            settings.metric = names
                .iter()
                .find(|n| *n == "reward" || *n == "loss")
                .unwrap_or_else(|| names.iter().next().expect("not empty"))
                .clone();
        }
        let metric = settings.metric.clone();
        let width = ui.available_width().max(1.0) as usize;
        let mut lines = Vec::new();
        for &run in runs.keys() {
            let name = ctx.run(run).map_or_else(
                || format!("#{run}"),
                |r| format!("#{run} {}", r.record.name),
            );
            if let Some(series) = ctx.want(run, &metric)
                && !series.is_empty()
            {
                // Min–max per pixel column: a million points draw as a few thousand, made
                // again only when points arrive or the width changes.
                let key = (run, metric.clone());
                let fresh = (series.len(), width);
                let stale = self.curves.get(&key).is_none_or(|c| c.0 != fresh);
                if stale {
                    let (lo, hi) = (series.steps[0], series.steps[series.len() - 1]);
                    let points = downsample_min_max(&series.steps, &series.values, lo, hi, width);
                    self.curves.insert(key.clone(), (fresh, points));
                }
                if let Some((_, points)) = self.curves.get(&key) {
                    lines.push((run, name, points.clone()));
                }
            }
        }
        let marks: Vec<(usize, u64)> = runs.values().flatten().copied().collect();
        Plot::new("compare_curves")
            .legend(Legend::default())
            .x_axis_label("step")
            .height(ui.available_height().max(200.0))
            .show(ui, |plot_ui| {
                for (run, name, points) in lines {
                    plot_ui.line(Line::new(name, points).color(run_color(run)).width(1.5));
                }
                for (i, step) in &marks {
                    plot_ui.vline(
                        VLine::new(format!("[{}] step {step}", i + 1), *step as f64)
                            .color(slot_color(*i))
                            .style(egui_plot::LineStyle::dashed_loose()),
                    );
                }
            });
    }
}
