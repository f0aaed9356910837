//! The Run analytics tab: the engine's entropy analysis of the whole run
//! (`engine::analysis::analyse_stored`, what `studio analyze` prints), plotted.

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot, Points};
use engine::store::{RunId, TraceKind};

use super::loader::{AnalysisKey, Request, options_key};
use super::{TracesSettings, TracesTab, TracesView, drawable, empty_ui};
use crate::context::AppContext;

impl TracesView {
    pub(super) fn analytics_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut TracesSettings,
        run: RunId,
        kind: TraceKind,
        steps: &[(u64, usize)],
    ) {
        let text = self
            .reflection_text
            .get_or_insert_with(|| settings.reflection_words.join(", "));
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("high entropy above");
            ui.add(
                egui::DragValue::new(&mut settings.threshold)
                    .range(0.0..=12.0)
                    .speed(0.01)
                    .suffix(" nats"),
            )
            .labelled_by(label.id);
            let label = ui.label("forking: top ρ");
            ui.add(
                egui::DragValue::new(&mut settings.rho)
                    .range(0.01..=1.0)
                    .speed(0.01),
            )
            .labelled_by(label.id);
            let label = ui.label("reflection phrases");
            let response = ui
                .add(egui::TextEdit::singleline(text).desired_width(380.0))
                .labelled_by(label.id);
            if response.lost_focus() || response.changed() {
                let words: Vec<String> = text
                    .split(',')
                    .map(|w| w.trim().to_string())
                    .filter(|w| !w.is_empty())
                    .collect();
                if words != settings.reflection_words {
                    settings.reflection_words = words;
                    self.rows.clear();
                }
            }
        });
        let options = settings.analysis_options();
        let key: AnalysisKey = (run, kind, steps.len(), options_key(&options));
        let have = self.analysis.as_ref().is_some_and(|(k, _)| *k == key);
        if !have
            && self.analysis_asked.as_ref() != Some(&key)
            && self.send(ctx, ui.ctx(), Request::Analyse { run, kind, options })
        {
            self.analysis_asked = Some(key.clone());
        }
        // Show the last analysis of this run while a newer one is computed.
        let shown = match &self.analysis {
            Some(((r, k, ..), result)) if (*r, *k) == (run, kind) => Some(result),
            _ => None,
        };
        if !have {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Analysing {} steps…", steps.len()));
            });
        }
        let analysis = match shown {
            Some(Ok(a)) => a.clone(),
            Some(Err(e)) => {
                empty_ui(ui, &format!("Could not analyse run {run}: {e}"));
                return;
            }
            None => return,
        };
        ui.label(match analysis.fit {
            Some(f) => format!(
                "Reward against entropy: R = -{:.4}·exp(H) + {:.4}  (R² {:.3}, {} steps)",
                f.a, f.b, f.r2, f.points
            ),
            None => "Reward against entropy: no fit yet (it needs three steps whose mean entropy \
                     differs)"
                .to_string(),
        });
        let mut clicked_step = None;
        let width = ((ui.available_width() - 12.0) / 2.0).max(200.0);
        let height = 200.0;
        let series = |f: &dyn Fn(&engine::analysis::StepAnalysis) -> Option<f64>| -> Vec<[f64; 2]> {
            analysis
                .steps
                .iter()
                .filter_map(|s| f(s).filter(|v| v.is_finite()).map(|v| [s.step as f64, v]))
                .collect()
        };
        let mut plot = |ui: &mut egui::Ui,
                        id: &str,
                        title: &str,
                        lines: Vec<(String, Vec<[f64; 2]>, Color32)>| {
            ui.vertical(|ui| {
                ui.set_width(width);
                ui.label(RichText::new(title).strong());
                let response = Plot::new(id)
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("step")
                    .show(ui, |p| {
                        for (name, points, color) in lines {
                            p.line(Line::new(name.clone(), points.clone()).color(color));
                            p.points(Points::new(name, points).color(color).radius(2.0));
                        }
                    });
                if response.response.clicked()
                    && let Some(pos) = response.response.interact_pointer_pos()
                {
                    let x = response.transform.value_from_position(pos).x;
                    clicked_step = Some(x.round().max(0.0) as u64);
                }
            });
        };
        let blue = Color32::from_rgb(66, 135, 245);
        let orange = Color32::from_rgb(245, 130, 48);
        let green = Color32::from_rgb(60, 180, 75);
        let red = Color32::from_rgb(220, 80, 60);
        ui.horizontal(|ui| {
            plot(
                ui,
                "analysis_entropy",
                "Mean entropy and high-entropy share",
                vec![
                    (
                        "mean entropy".into(),
                        series(&|s| Some(s.mean_entropy)),
                        blue,
                    ),
                    (
                        format!("share > {:.2}", settings.threshold),
                        series(&|s| Some(s.high_entropy_share)),
                        orange,
                    ),
                ],
            );
            plot(
                ui,
                "analysis_length",
                "Length of correct and wrong answers",
                vec![
                    ("correct".into(), series(&|s| s.mean_length_correct), green),
                    ("wrong".into(), series(&|s| s.mean_length_wrong), red),
                ],
            );
        });
        ui.horizontal(|ui| {
            plot(
                ui,
                "analysis_reflection",
                "Reflection phrases per completion, and reward",
                vec![
                    (
                        "reflection per completion".into(),
                        series(&|s| Some(s.reflection_per_rollout)),
                        orange,
                    ),
                    (
                        "mean reward".into(),
                        series(&|s| Some(s.mean_reward)),
                        green,
                    ),
                ],
            );
            ui.vertical(|ui| {
                ui.set_width(width);
                ui.label(RichText::new("Reward against entropy, with the fit").strong());
                let points: Vec<[f64; 2]> = analysis
                    .steps
                    .iter()
                    .filter(|s| s.mean_entropy.is_finite() && s.mean_reward.is_finite())
                    .map(|s| [s.mean_entropy, s.mean_reward])
                    .collect();
                let (lo, hi) = points
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
                        (a.0.min(p[0]), a.1.max(p[0]))
                    });
                Plot::new("analysis_fit")
                    .height(height)
                    .legend(Legend::default())
                    .x_axis_label("mean entropy (nats)")
                    .y_axis_label("mean reward")
                    .show(ui, |p| {
                        p.points(Points::new("steps", points).color(blue).radius(2.5));
                        if let Some(f) = analysis.fit
                            && lo.is_finite()
                            && hi > lo
                        {
                            let curve: Vec<[f64; 2]> = (0..=40)
                                .map(|i| {
                                    let h = lo + (hi - lo) * f64::from(i) / 40.0;
                                    [h, -f.a * h.exp() + f.b]
                                })
                                .collect();
                            p.line(Line::new("fit", curve).color(red));
                        }
                    });
            });
        });
        ui.columns(2, |cols| {
            cols[0].label(RichText::new("Forking tokens (times among a step's top ρ)").strong());
            egui::ScrollArea::vertical()
                .id_salt("analysis_forking")
                .max_height(200.0)
                .show(&mut cols[0], |ui| {
                    egui::Grid::new("analysis_forking_grid")
                        .num_columns(3)
                        .striped(true)
                        .show(ui, |ui| {
                            ui.label(RichText::new("token").weak());
                            ui.label(RichText::new("total").weak());
                            ui.label(RichText::new("last step").weak());
                            ui.end_row();
                            for f in &analysis.forking_tokens {
                                let text = drawable(ui, &format!("{:?}", f.text));
                                ui.label(RichText::new(text).monospace());
                                ui.label(f.total.to_string());
                                ui.label(f.per_step.last().copied().unwrap_or(0).to_string());
                                ui.end_row();
                            }
                        });
                });
            cols[1].label(RichText::new("Reflection phrases over the run").strong());
            egui::Grid::new("analysis_reflection_grid")
                .num_columns(2)
                .striped(true)
                .show(&mut cols[1], |ui| {
                    for (i, word) in analysis.reflection_words.iter().enumerate() {
                        let n: usize = analysis.steps.iter().map(|s| s.reflection[i]).sum();
                        ui.label(word);
                        ui.label(n.to_string());
                        ui.end_row();
                    }
                });
        });
        if let Some(step) = clicked_step {
            self.pending_step = Some(step);
            settings.tab = TracesTab::Step;
        }
    }
}
