//! Runs: every run of the workspace with its status; select one or several to overlay their
//! curves; a metric picker with search, grouped by prefix; EMA smoothing, x axis by step, wall
//! time or tokens, log scale; stop and resume; the selected run's config and worker log beside
//! the plots. Points arrive from the workspace feed off the UI thread; each series is prepared
//! (axis, smoothing, log) once per change and drawn min/max-downsampled to the plot's width.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot};
use engine::store::{RunId, RunStatus};
use serde::{Deserialize, Serialize};

use crate::context::{AppCommand, AppContext};
use crate::feed::{RunInfo, SeriesKey};
use crate::jobs::Job;
use crate::series::{XAxis, downsample_min_max, ema, log10_values, metric_group};

/// Bytes of the worker log shown.
const LOG_TAIL_BYTES: u64 = 32 * 1024;
/// How often the shown log is read again while its run is live.
const LOG_REFRESH: Duration = Duration::from_secs(1);
/// Metrics shown for a run until the user picks others, the first present.
pub const DEFAULT_METRICS: [&str; 4] = ["loss", "reward", "eval/accuracy", "entropy"];

/// The plot settings, kept between launches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunsSettings {
    /// Runs overlaid, in the order selected.
    pub selected: Vec<RunId>,
    /// Metrics plotted; empty means [`DEFAULT_METRICS`].
    pub metrics: Vec<String>,
    /// EMA weight in [0, 0.99]. Default 0.6, TensorBoard's.
    pub smoothing: f64,
    pub x_axis: XAxis,
    pub log_y: bool,
}

impl Default for RunsSettings {
    fn default() -> Self {
        Self {
            selected: Vec::new(),
            metrics: Vec::new(),
            smoothing: 0.6,
            x_axis: XAxis::Step,
            log_y: false,
        }
    }
}

/// A series made ready to draw: recomputed only when its points or the settings change.
struct Prepared {
    len: usize,
    settings: (u64, XAxis, bool),
    xs: Vec<f64>,
    raw: Vec<f64>,
    smooth: Option<Vec<f64>>,
    /// The last downsampling: (x range, width in pixels) → raw and smoothed points.
    drawn: Option<Drawn>,
}

/// A series downsampled for one view: (x min, x max, width in pixels), raw and smoothed points.
type Drawn = ((f64, f64, usize), Vec<[f64; 2]>, Option<Vec<[f64; 2]>>);

/// The Runs view's runtime state.
#[derive(Default)]
pub struct RunsView {
    /// Search text of the metric picker.
    pub metric_search: String,
    prepared: HashMap<SeriesKey, Prepared>,
    log: Option<(RunId, Instant, String)>,
    /// The worker log being read (a background job: the UI thread never reads the disk).
    log_job: Option<(RunId, Job<String>)>,
    /// Where each metric's plot frame was drawn in the last frame (a click there opens the
    /// traces of the nearest step; tests click on it).
    plot_frames: HashMap<String, egui::Rect>,
}

/// A run's colour: the same in every plot and in the list.
pub fn run_color(run: RunId) -> Color32 {
    const PALETTE: [Color32; 8] = [
        Color32::from_rgb(66, 135, 245),
        Color32::from_rgb(245, 130, 48),
        Color32::from_rgb(60, 180, 75),
        Color32::from_rgb(230, 25, 75),
        Color32::from_rgb(145, 30, 180),
        Color32::from_rgb(70, 200, 200),
        Color32::from_rgb(240, 50, 230),
        Color32::from_rgb(170, 110, 40),
    ];
    PALETTE[run.unsigned_abs() as usize % PALETTE.len()]
}

fn status_color(ui: &egui::Ui, run: &RunInfo) -> Color32 {
    if run.died || run.record.status == RunStatus::Failed {
        ui.visuals().error_fg_color
    } else if run.is_live() {
        Color32::from_rgb(60, 180, 75)
    } else {
        ui.visuals().weak_text_color()
    }
}

impl RunsView {
    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, settings: &mut RunsSettings) {
        // Drop runs that are gone; keep ones newer than the feed has listed yet (just started).
        let newest_known = ctx.runs.iter().map(|r| r.record.id).max().unwrap_or(0);
        settings
            .selected
            .retain(|id| ctx.run(*id).is_some() || !ctx.loaded || *id > newest_known);
        if settings.selected.is_empty()
            && let Some(newest) = ctx.runs.first()
        {
            settings.selected.push(newest.record.id);
        }
        egui::Panel::left("runs_list")
            .resizable(true)
            .default_size(290.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("runs_list_scroll")
                    .show(ui, |ui| {
                        self.runs_list_ui(ui, ctx, settings);
                        ui.separator();
                        self.metric_picker_ui(ui, ctx, settings);
                    });
            });
        let focused = settings.selected.first().copied();
        egui::Panel::right("run_details")
            .resizable(true)
            .default_size(330.0)
            .show(ui, |ui| self.details_ui(ui, ctx, focused));
        egui::CentralPanel::default().show(ui, |ui| {
            self.toolbar_ui(ui, settings);
            ui.separator();
            self.plots_ui(ui, ctx, settings);
        });
    }

    fn runs_list_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut RunsSettings,
    ) {
        ui.heading("Runs");
        if !ctx.loaded {
            ui.spinner();
            ctx.workspace_note_ui(ui);
            return;
        }
        if ctx.runs.is_empty() {
            ui.label("No runs in this workspace yet.");
            ui.label(
                RichText::new("Start one with Try it on Home, or `studio train FILE`.").weak(),
            );
            return;
        }
        let runs = ctx.runs.clone();
        for run in &runs {
            let id = run.record.id;
            let mut on = settings.selected.contains(&id);
            ui.horizontal(|ui| {
                let (rect, _) =
                    ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
                ui.painter().rect_filled(rect, 2.0, run_color(id));
                if ui
                    .checkbox(&mut on, format!("#{id} {}", run.record.name))
                    .on_hover_text("Overlay this run's curves")
                    .changed()
                {
                    if on {
                        settings.selected.push(id);
                    } else {
                        settings.selected.retain(|r| *r != id);
                    }
                }
            });
            ui.horizontal(|ui| {
                ui.add_space(20.0);
                ui.label(RichText::new(run.status_text()).color(status_color(ui, run)));
                ui.label(
                    RichText::new(format!(
                        "{} · step {}",
                        run.algorithm,
                        run.record.last_step.unwrap_or(0)
                    ))
                    .weak(),
                );
            });
        }
    }

    fn metric_picker_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &AppContext,
        settings: &mut RunsSettings,
    ) {
        ui.heading("Metrics");
        ui.add(
            egui::TextEdit::singleline(&mut self.metric_search)
                .hint_text("search")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(ui.label("Search metrics").id);
        let mut names: Vec<&String> = settings
            .selected
            .iter()
            .filter_map(|id| ctx.names.get(id))
            .flatten()
            .collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            ui.label(RichText::new("The selected runs have no metrics yet.").weak());
            return;
        }
        let search = self.metric_search.to_lowercase();
        let mut groups: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
        for name in names {
            if search.is_empty() || name.to_lowercase().contains(&search) {
                groups.entry(metric_group(name)).or_default().push(name);
            }
        }
        // Until the user picks, the defaults the runs have are shown (and follow the runs as
        // their metrics appear); the first pick starts from them.
        let shown = shown_metrics(settings, ctx);
        for (group, members) in groups {
            egui::CollapsingHeader::new(format!("{group} ({})", members.len()))
                .id_salt(("metric_group", group))
                .default_open(group == "train" || group == "eval" || group == "rewards")
                .show(ui, |ui| {
                    for name in members {
                        let mut on = shown.contains(name);
                        if ui.checkbox(&mut on, name.as_str()).changed() {
                            if settings.metrics.is_empty() {
                                settings.metrics = shown.clone();
                            }
                            if on {
                                settings.metrics.push(name.clone());
                            } else {
                                settings.metrics.retain(|m| m != name);
                            }
                        }
                    }
                });
        }
    }

    fn toolbar_ui(&mut self, ui: &mut egui::Ui, settings: &mut RunsSettings) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Smoothing");
            ui.add(egui::Slider::new(&mut settings.smoothing, 0.0..=0.99).fixed_decimals(2))
                .on_hover_text(
                    "Exponential moving average weight, debiased (as TensorBoard's); 0 is off",
                );
            ui.separator();
            ui.label("X axis");
            egui::ComboBox::from_id_salt("x_axis")
                .selected_text(settings.x_axis.label())
                .show_ui(ui, |ui| {
                    for axis in XAxis::ALL {
                        ui.selectable_value(&mut settings.x_axis, axis, axis.label());
                    }
                });
            ui.separator();
            ui.checkbox(&mut settings.log_y, "Log scale")
                .on_hover_text("Plot log10 of the values; values ≤ 0 leave gaps");
        });
    }

    fn plots_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, settings: &RunsSettings) {
        if settings.selected.is_empty() {
            ui.centered_and_justified(|ui| ui.label("Select a run on the left to see its curves."));
            return;
        }
        let metrics = shown_metrics(settings, ctx);
        if metrics.is_empty() {
            ui.centered_and_justified(|ui| {
                ui.label("Waiting for the first metrics…");
            });
            return;
        }
        let columns = if ui.available_width() > 900.0 { 2 } else { 1 };
        let plot_height = 230.0;
        egui::ScrollArea::vertical()
            .id_salt("plots_scroll")
            .show(ui, |ui| {
                for row in metrics.chunks(columns) {
                    ui.columns(columns, |cols| {
                        for (col, metric) in cols.iter_mut().zip(row) {
                            self.plot_ui(col, ctx, settings, metric, plot_height);
                        }
                    });
                    ui.add_space(8.0);
                }
            });
    }

    fn plot_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &RunsSettings,
        metric: &str,
        height: f32,
    ) {
        ui.label(RichText::new(metric).strong());
        let key_settings = (
            settings.smoothing.to_bits(),
            settings.x_axis,
            settings.log_y,
        );
        // Prepare every selected run's series (cheap when nothing changed).
        let mut lines: Vec<(RunId, String, SeriesKey)> = Vec::new();
        for &run in &settings.selected {
            let tokens = (settings.x_axis == XAxis::Tokens)
                .then(|| ctx.want(run, "num_tokens").cloned())
                .flatten();
            let Some(series) = ctx.want(run, metric) else {
                continue;
            };
            if series.is_empty() {
                continue;
            }
            let key = (run, metric.to_string());
            let stale = self
                .prepared
                .get(&key)
                .is_none_or(|p| p.len != series.len() || p.settings != key_settings);
            if stale {
                let xs = series.xs(settings.x_axis, tokens.as_ref());
                let transform = |v: Vec<f64>| if settings.log_y { log10_values(&v) } else { v };
                let smooth = (settings.smoothing > 0.0)
                    .then(|| transform(ema(&series.values, settings.smoothing)));
                self.prepared.insert(
                    key.clone(),
                    Prepared {
                        len: series.len(),
                        settings: key_settings,
                        xs,
                        raw: transform(series.values.clone()),
                        smooth,
                        drawn: None,
                    },
                );
            }
            let name = ctx.run(run).map_or_else(
                || format!("#{run}"),
                |r| format!("#{run} {}", r.record.name),
            );
            lines.push((run, name, key));
        }
        if lines.is_empty() {
            ui.allocate_space(egui::vec2(ui.available_width(), height));
            return;
        }
        let log_y = settings.log_y;
        let x_label = settings.x_axis.label();
        let clickable: Vec<(RunId, SeriesKey)> = lines
            .iter()
            .map(|(run, _, key)| (*run, key.clone()))
            .collect();
        let prepared = &mut self.prepared;
        let plot = Plot::new(("metric_plot", metric))
            .height(height)
            .legend(Legend::default())
            .x_axis_label(x_label)
            .y_axis_formatter(move |mark, _| {
                if log_y {
                    format!("{:.3e}", 10f64.powf(mark.value))
                } else {
                    axis_label(mark.value, mark.step_size)
                }
            })
            .label_formatter(move |pos| match pos {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => {
                    let y = if log_y {
                        10f64.powf(position.y)
                    } else {
                        position.y
                    };
                    Some(format!(
                        "{plot_name}\n{x_label} {:.0}\nvalue {y:.5}\nclick: this step's traces",
                        position.x
                    ))
                }
                _ => None,
            })
            .show(ui, |plot_ui| {
                let width_px = plot_ui.transform().frame().width().max(1.0) as usize;
                let auto_x = plot_ui.auto_bounds().x;
                let bounds = plot_ui.plot_bounds();
                for (run, name, key) in lines {
                    let Some(p) = prepared.get_mut(&key) else {
                        continue;
                    };
                    let (x_min, x_max) = if auto_x {
                        (p.xs[0], p.xs[p.xs.len() - 1])
                    } else {
                        (bounds.min()[0], bounds.max()[0])
                    };
                    let view = (x_min, x_max, width_px);
                    if p.drawn.as_ref().is_none_or(|d| d.0 != view) {
                        let raw = downsample_min_max(&p.xs, &p.raw, x_min, x_max, width_px);
                        let smooth = p
                            .smooth
                            .as_ref()
                            .map(|s| downsample_min_max(&p.xs, s, x_min, x_max, width_px));
                        p.drawn = Some((view, raw, smooth));
                    }
                    let Some((_, raw, smooth)) = &p.drawn else {
                        continue;
                    };
                    let color = run_color(run);
                    match smooth {
                        Some(smooth) => {
                            plot_ui.line(
                                Line::new(format!("{name} (raw)"), raw.clone())
                                    .color(color.gamma_multiply(0.3))
                                    .allow_hover(false),
                            );
                            plot_ui.line(Line::new(name, smooth.clone()).color(color).width(1.5));
                        }
                        None => plot_ui.line(Line::new(name, raw.clone()).color(color).width(1.5)),
                    }
                }
            });
        self.plot_frames
            .insert(metric.to_string(), *plot.transform.frame());
        if plot.response.clicked()
            && let Some(pos) = plot.response.interact_pointer_pos()
        {
            let at = plot.transform.value_from_position(pos);
            if let Some((run, step)) = self.step_at(ctx, &clickable, at.x, at.y) {
                ctx.commands.push(AppCommand::ShowTraces {
                    run,
                    step: Some(step),
                });
            }
        }
    }

    /// Where `metric`'s plot frame was drawn in the last frame.
    pub fn plot_frame(&self, metric: &str) -> Option<egui::Rect> {
        self.plot_frames.get(metric).copied()
    }

    /// The run and step of the drawn point nearest a click at plot coordinates (x, y): the
    /// nearest point in x of each line, then the line nearest in y.
    fn step_at(
        &self,
        ctx: &AppContext,
        lines: &[(RunId, SeriesKey)],
        x: f64,
        y: f64,
    ) -> Option<(RunId, u64)> {
        let mut best: Option<(f64, RunId, u64)> = None;
        for (run, key) in lines {
            let (Some(p), Some(series)) = (self.prepared.get(key), ctx.series.get(key)) else {
                continue;
            };
            let i = nearest_index(&p.xs, x)?;
            let value = p.smooth.as_ref().unwrap_or(&p.raw).get(i).copied()?;
            let step = series.steps.get(i).copied()?;
            let distance = (value - y).abs();
            if best.is_none_or(|b| distance < b.0) {
                best = Some((distance, *run, step.max(0.0).round() as u64));
            }
        }
        best.map(|(_, run, step)| (run, step))
    }

    fn details_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, focused: Option<RunId>) {
        let Some(run) = focused.and_then(|id| ctx.run(id).cloned()) else {
            ui.label(RichText::new("No run selected.").weak());
            return;
        };
        let id = run.record.id;
        ui.heading(format!("Run #{id}"));
        ui.label(&run.record.name);
        ui.horizontal(|ui| {
            ui.label("Status:");
            ui.label(RichText::new(run.status_text()).color(status_color(ui, &run)));
        });
        if let Some(message) = &run.record.message {
            ui.label(RichText::new(message).weak());
        }
        if run.died {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                format!(
                    "worker died at step {} — its last checkpoint is kept",
                    run.record.last_step.unwrap_or(0)
                ),
            );
        }
        ui.horizontal(|ui| {
            let stoppable = run.is_live() && run.record.status != RunStatus::Stopping;
            if ui
                .add_enabled(stoppable, egui::Button::new("Stop"))
                .on_hover_text("Stop after the current step (the worker checkpoints first)")
                .clicked()
                && let Err(e) = ctx.stop_run(id)
            {
                ctx.error = Some(e);
            }
            let resumable = !run.imported
                && (run.died
                    || matches!(run.record.status, RunStatus::Stopped | RunStatus::Failed));
            if ui
                .add_enabled(resumable, egui::Button::new("Resume"))
                .on_hover_text("Continue from the last checkpoint in a new worker")
                .clicked()
                && let Err(e) = ctx.resume_run(id)
            {
                ctx.error = Some(e);
            }
            if let Some((what, _)) = ctx.pending_action() {
                ui.spinner();
                ui.label(format!("waiting for the workspace to {what}…"));
            }
        });
        ui.separator();
        if let Some((run, job)) = &mut self.log_job
            && let Some(text) = job.poll()
        {
            let text = text.unwrap_or_else(|e| format!("(could not read the log: {e})"));
            self.log = Some((*run, Instant::now(), text));
            self.log_job = None;
        }
        let refresh = self
            .log
            .as_ref()
            .is_none_or(|(r, at, _)| *r != id || (run.is_live() && at.elapsed() > LOG_REFRESH));
        if refresh && self.log_job.as_ref().is_none_or(|(r, _)| *r != id) {
            let dir = ctx.workspace_dir.clone();
            let job = Job::spawn("worker-log", ui.ctx(), move |_| {
                crate::context::read_worker_log(&dir, id, LOG_TAIL_BYTES)
            });
            self.log_job = Some((id, job));
        }
        egui::CollapsingHeader::new("Config")
            .id_salt("run_config")
            .default_open(true)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("config_scroll")
                    .max_height(260.0)
                    .show(ui, |ui| {
                        ui.add(
                            egui::Label::new(RichText::new(&run.record.config_toml).monospace())
                                .wrap(),
                        );
                    });
            });
        egui::CollapsingHeader::new("Log")
            .id_salt("run_log")
            .default_open(true)
            .show(ui, |ui| {
                let text = self
                    .log
                    .as_ref()
                    .filter(|l| l.0 == id)
                    .map_or("", |l| l.2.as_str());
                egui::ScrollArea::vertical()
                    .id_salt("log_scroll")
                    .stick_to_bottom(true)
                    .show(ui, |ui| {
                        if text.is_empty() {
                            ui.label(RichText::new("(no log yet)").weak());
                        } else {
                            ui.add(
                                egui::Label::new(RichText::new(text).monospace().small()).wrap(),
                            );
                        }
                    });
            });
    }
}

/// A tick label: `value` with as many decimals as the tick spacing `step` needs, so sums of
/// floating-point steps (0.7000000000000001) print as the tick they are (0.7).
pub fn axis_label(value: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step.is_finite() {
        (-step.log10().floor()).clamp(0.0, 12.0) as usize
    } else {
        3
    };
    if value == 0.0 {
        "0".into()
    } else if value.abs() >= 1e6 || value.abs() < 1e-4 {
        format!("{value:.2e}")
    } else {
        format!("{value:.decimals$}")
    }
}

/// The metrics to plot: those picked, else the first defaults the selected runs have.
pub fn shown_metrics(settings: &RunsSettings, ctx: &AppContext) -> Vec<String> {
    let has = |name: &str| {
        settings.selected.iter().any(|id| {
            ctx.names
                .get(id)
                .is_some_and(|n| n.iter().any(|m| m == name))
        })
    };
    if !settings.metrics.is_empty() {
        return settings
            .metrics
            .iter()
            .filter(|m| has(m))
            .cloned()
            .collect();
    }
    DEFAULT_METRICS
        .iter()
        .filter(|m| has(m))
        .map(|m| m.to_string())
        .collect()
}

/// The index of the value in ascending `xs` nearest `x`.
fn nearest_index(xs: &[f64], x: f64) -> Option<usize> {
    if xs.is_empty() {
        return None;
    }
    let after = xs.partition_point(|&v| v < x);
    if after == 0 {
        return Some(0);
    }
    if after == xs.len() {
        return Some(xs.len() - 1);
    }
    Some(if x - xs[after - 1] <= xs[after] - x {
        after - 1
    } else {
        after
    })
}

#[cfg(test)]
mod tests {
    use super::nearest_index;

    #[test]
    fn a_click_finds_the_nearest_point_in_x() {
        let xs = [0.0, 10.0, 20.0, 40.0];
        assert_eq!(nearest_index(&xs, -5.0), Some(0));
        assert_eq!(nearest_index(&xs, 14.0), Some(1));
        assert_eq!(nearest_index(&xs, 15.0), Some(1));
        assert_eq!(nearest_index(&xs, 31.0), Some(3));
        assert_eq!(nearest_index(&xs, 99.0), Some(3));
        assert_eq!(nearest_index(&[], 1.0), None);
    }
}
