//! The plots under the token view: entropy by position (this completion against the step's
//! mean), the step's entropy histogram against another step's, and the prompt over training.

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, Points};
use engine::store::{PromptPoint, RunId, Trace, TraceKind};

use super::TracesView;
use super::loader::Request;
use crate::context::AppContext;
use crate::series::downsample_min_max;

/// Width of an entropy histogram bin, nats.
const HISTOGRAM_BIN_NATS: f64 = 0.1;

/// What the plots under the token view draw, computed once per shown completion.
pub(super) struct PlotData {
    /// Entropy by position of the completion, and the step's mean at each position, both
    /// min/max-downsampled to [`POSITION_COLUMNS`] columns.
    this: Vec<[f64; 2]>,
    step_mean: Vec<[f64; 2]>,
    histogram: Vec<Bar>,
}

/// Columns the entropy-by-position lines are downsampled to.
const POSITION_COLUMNS: usize = 600;

impl PlotData {
    pub(super) fn new(traces: &[Trace], trace: &Trace) -> Self {
        let positions = |n: usize| (0..n).map(|i| i as f64).collect::<Vec<f64>>();
        let ys: Vec<f64> = trace.tokens.iter().map(|t| f64::from(t.entropy)).collect();
        let xs = positions(ys.len());
        let this = downsample_min_max(&xs, &ys, 0.0, xs.len() as f64, POSITION_COLUMNS);
        let mut sums: Vec<(f64, usize)> = Vec::new();
        for t in traces {
            if sums.len() < t.tokens.len() {
                sums.resize(t.tokens.len(), (0.0, 0));
            }
            for (slot, x) in sums.iter_mut().zip(&t.tokens) {
                slot.0 += f64::from(x.entropy);
                slot.1 += 1;
            }
        }
        let means: Vec<f64> = sums.iter().map(|(s, n)| s / *n as f64).collect();
        let xs = positions(means.len());
        let step_mean = downsample_min_max(&xs, &means, 0.0, xs.len() as f64, POSITION_COLUMNS);
        let entropies: Vec<f32> = traces
            .iter()
            .flat_map(|t| t.tokens.iter().map(|x| x.entropy))
            .collect();
        Self {
            this,
            step_mean,
            histogram: histogram(&entropies),
        }
    }
}

impl TracesView {
    pub(super) fn plots_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        run: RunId,
        kind: TraceKind,
        steps: &[(u64, usize)],
        prompt: &str,
        step: u64,
    ) {
        // The other step's entropies, for the histogram.
        let compare_step = self
            .compare_step
            .filter(|s| steps.iter().any(|x| x.0 == *s));
        if let Some(other) = compare_step {
            let key = (run, kind, other);
            let have = self.compare.as_ref().is_some_and(|(k, _)| *k == key);
            if !have
                && self.compare_asked != Some(key)
                && self.send(
                    ctx,
                    ui.ctx(),
                    Request::Entropies {
                        run,
                        kind,
                        step: other,
                    },
                )
            {
                self.compare_asked = Some(key);
            }
        }
        let history_key = (run, kind, prompt.to_string());
        let have_history = self
            .history
            .as_ref()
            .is_some_and(|(k, _)| *k == history_key);
        if !have_history
            && self.history_asked.as_ref() != Some(&history_key)
            && self.send(
                ctx,
                ui.ctx(),
                Request::History {
                    run,
                    kind,
                    prompt: prompt.to_string(),
                },
            )
        {
            self.history_asked = Some(history_key.clone());
        }
        let Some(data) = self.shown.as_ref().map(|s| &s.plots) else {
            return;
        };
        let height = 190.0;
        // Three plots side by side, with the item spacing between them and a margin.
        let width = ((ui.available_width() - 40.0) / 3.0).max(160.0);
        let compare = match (&self.compare, compare_step) {
            (Some(((r, k, s), Ok(bars))), Some(other)) if (*r, *k, *s) == (run, kind, other) => {
                Some((other, bars.clone()))
            }
            _ => None,
        };
        let history: Vec<PromptPoint> = match &self.history {
            Some((k, Ok(h))) if *k == history_key => h.clone(),
            _ => Vec::new(),
        };
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.set_width(width);
                ui.label(RichText::new("Entropy by position").strong());
                Plot::new("traces_entropy_by_position")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("token")
                    .show(ui, |p| {
                        p.line(Line::new("this completion", data.this.clone()).width(1.5));
                        p.line(
                            Line::new(format!("step {step} mean"), data.step_mean.clone())
                                .color(Color32::GRAY),
                        );
                    });
            });
            ui.vertical(|ui| {
                ui.set_width(width);
                ui.horizontal(|ui| {
                    ui.label(RichText::new("Entropy histogram").strong());
                    let shown = compare_step.map_or("none".to_string(), |s| format!("step {s}"));
                    let label = ui.label("vs");
                    egui::ComboBox::from_id_salt("traces_compare_step")
                        .width(80.0)
                        .selected_text(shown)
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut self.compare_step, None, "none");
                            for (s, _) in steps.iter().filter(|x| x.0 != step) {
                                ui.selectable_value(
                                    &mut self.compare_step,
                                    Some(*s),
                                    format!("step {s}"),
                                );
                            }
                        })
                        .response
                        .labelled_by(label.id);
                });
                Plot::new("traces_entropy_histogram")
                    .height(height - 6.0)
                    .legend(Legend::default())
                    .x_axis_label("entropy (nats)")
                    .y_axis_label("share of tokens")
                    .show(ui, |p| {
                        p.bar_chart(
                            BarChart::new(format!("step {step}"), data.histogram.clone())
                                .color(Color32::from_rgb(66, 135, 245))
                                .width(HISTOGRAM_BIN_NATS),
                        );
                        if let Some((other, bars)) = compare {
                            p.bar_chart(
                                BarChart::new(format!("step {other}"), bars)
                                    .color(Color32::from_rgba_unmultiplied(245, 130, 48, 140))
                                    .width(HISTOGRAM_BIN_NATS * 0.6),
                            );
                        }
                    });
            });
            ui.vertical(|ui| {
                ui.set_width(width);
                ui.label(RichText::new("This prompt over training").strong());
                let mut by_step: Vec<(u64, f64, f64, usize)> = Vec::new();
                for p in &history {
                    match by_step.last_mut() {
                        Some(last) if last.0 == p.step => {
                            last.1 += p.reward;
                            last.2 += p.mean_entropy;
                            last.3 += 1;
                        }
                        _ => by_step.push((p.step, p.reward, p.mean_entropy, 1)),
                    }
                }
                let reward: Vec<[f64; 2]> = by_step
                    .iter()
                    .map(|(s, r, _, n)| [*s as f64, r / *n as f64])
                    .collect();
                let entropy: Vec<[f64; 2]> = by_step
                    .iter()
                    .map(|(s, _, h, n)| [*s as f64, h / *n as f64])
                    .collect();
                Plot::new("traces_prompt_history")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("step")
                    .show(ui, |p| {
                        p.line(
                            Line::new("mean reward", reward.clone())
                                .color(Color32::from_rgb(60, 180, 75)),
                        );
                        p.points(
                            Points::new("reward", reward)
                                .color(Color32::from_rgb(60, 180, 75))
                                .radius(2.5),
                        );
                        p.line(
                            Line::new("mean entropy", entropy)
                                .color(Color32::from_rgb(245, 130, 48)),
                        );
                    });
                if by_step.len() <= 1 {
                    ui.label(
                        RichText::new("this prompt appears at one step only")
                            .weak()
                            .small(),
                    );
                }
            });
        });
    }
}

/// Shares of `entropies` in bins of [`HISTOGRAM_BIN_NATS`], as bars at the bins' centres.
pub(super) fn histogram(entropies: &[f32]) -> Vec<Bar> {
    if entropies.is_empty() {
        return Vec::new();
    }
    let mut counts: Vec<usize> = Vec::new();
    for &h in entropies {
        if !h.is_finite() {
            continue;
        }
        let bin = (f64::from(h.max(0.0)) / HISTOGRAM_BIN_NATS) as usize;
        if counts.len() <= bin {
            counts.resize(bin + 1, 0);
        }
        counts[bin] += 1;
    }
    let n = entropies.len() as f64;
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(i, c)| Bar::new((i as f64 + 0.5) * HISTOGRAM_BIN_NATS, *c as f64 / n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_holds_shares_by_bin() {
        let bars = histogram(&[0.05, 0.07, 0.25, 1.01]);
        let got: Vec<(f64, f64)> = bars.iter().map(|b| (b.argument, b.value)).collect();
        let want = [(0.05, 0.5), (0.25, 0.25), (1.05, 0.25)];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(
                (g.0 - w.0).abs() < 1e-9 && (g.1 - w.1).abs() < 1e-9,
                "{got:?}"
            );
        }
    }
}
