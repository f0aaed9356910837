//! Home: what the studio is for, a Try it button that starts the built-in tiny reasoner on a
//! built-in task (no download) and shows its curves, and the workspace at a glance: recent
//! runs with a sparkline of their main metric, the models found on disk and the built-in
//! datasets.

use egui::{RichText, Sense, Stroke};
use engine::data::builtin::BuiltinTask;
use engine::discovery::ModelInfo;
use engine::store::{DatasetRecord, RunId};

use crate::context::{AppCommand, AppContext};
use crate::feed::RunInfo;
use crate::series::downsample_min_max;
use crate::views::View;
use crate::views::runs::run_color;
use crate::workspace_service::Ticket;

/// Recent runs listed.
pub const RECENT_RUNS: usize = 8;

/// How often the workspace's dataset files are listed again.
const DATASETS_REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// The Home view's runtime state.
#[derive(Default)]
pub struct Home {
    /// The workspace's datasets, newest first (or why they could not be listed), and when
    /// they were read.
    datasets: Option<(std::time::Instant, Result<Vec<String>, String>)>,
    /// The list asked of the workspace.
    asked: Option<Ticket<Vec<DatasetRecord>>>,
}

/// `llama · 2.1M · 4 layers · float32`.
pub fn model_summary(info: &ModelInfo) -> String {
    format!(
        "{} · {} · {} layers · {}",
        info.architecture,
        human_count(info.parameters),
        info.layers,
        info.dtype
    )
}

/// The series a run's sparkline shows: its reward for RL, else its loss.
pub fn main_metric(run: &RunInfo) -> &'static str {
    if run.algorithm == engine::train::config::Algorithm::Grpo {
        "reward"
    } else {
        "loss"
    }
}

impl Home {
    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        egui::ScrollArea::vertical()
            .id_salt("home_scroll")
            .show(ui, |ui| {
                ui.add_space(8.0);
                ui.heading(RichText::new("Reasoning Studio").size(26.0));
                ui.label(
                    "Teach language models to reason: fine-tune with SFT, LoRA or GRPO with \
                 verifiable rewards, watch the curves live, read every trace token by token.",
                );
                ui.add_space(10.0);
                ui.horizontal(|ui| {
                    let try_it = ui
                        .add(
                            egui::Button::new(RichText::new("Try it").size(18.0))
                                .min_size(egui::vec2(120.0, 36.0)),
                        )
                        .on_hover_text(
                            "Train the built-in tiny reasoner from scratch on built-in arithmetic \
                         problems (about a minute, no download) and watch its curves",
                        );
                    if try_it.clicked() && !ctx.starting() {
                        ctx.try_it();
                    }
                    if let Some((what, waited)) = ctx.pending_action()
                        && waited >= crate::workspace_service::BUSY_AFTER
                    {
                        ui.spinner();
                        ui.label(format!("waiting for the workspace to {what}…"));
                    }
                    ui.label(
                        RichText::new(
                            "starts a real run in a worker process: loss falls within seconds, \
                         held-out accuracy climbs every 50 steps",
                        )
                        .weak(),
                    );
                });
                ui.add_space(14.0);
                ui.columns(2, |cols| {
                    self.recent_runs_ui(&mut cols[0], ctx);
                    self.models_ui(&mut cols[1], ctx);
                    cols[1].add_space(12.0);
                    self.workspace_datasets_ui(&mut cols[1], ctx);
                    datasets_ui(&mut cols[1]);
                });
            });
    }

    fn recent_runs_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.horizontal(|ui| {
            ui.heading("Recent runs");
            if ui.small_button("All runs").clicked() {
                ctx.commands.push(AppCommand::ShowView(View::Runs));
            }
        });
        if !ctx.loaded {
            ui.spinner();
            ctx.workspace_note_ui(ui);
            return;
        }
        if ctx.runs.is_empty() {
            ui.label("No runs yet. Try it starts one; so does `studio train FILE`.");
            return;
        }
        let runs: Vec<RunInfo> = ctx.runs.iter().take(RECENT_RUNS).cloned().collect();
        egui::Grid::new("recent_runs")
            .striped(true)
            .num_columns(5)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                for header in ["run", "status", "algorithm · model", "steps", "main metric"] {
                    ui.label(RichText::new(header).weak());
                }
                ui.end_row();
                for run in &runs {
                    let id = run.record.id;
                    if ui
                        .link(format!("#{id} {}", run.record.name))
                        .on_hover_text("Show its curves")
                        .clicked()
                    {
                        ctx.commands.push(AppCommand::ShowRun(id));
                    }
                    let color = if run.died || run.record.status.as_str() == "failed" {
                        ui.visuals().error_fg_color
                    } else {
                        ui.visuals().text_color()
                    };
                    ui.label(RichText::new(run.status_text()).color(color));
                    let model = short_model(&run.model);
                    if model.is_empty() {
                        ui.label(run.algorithm.to_string());
                    } else {
                        ui.label(format!("{} · {model}", run.algorithm));
                    }
                    ui.label(run.record.last_step.unwrap_or(0).to_string());
                    let metric = main_metric(run);
                    sparkline_ui(ui, ctx, id, metric);
                    ui.end_row();
                }
            });
    }

    fn models_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        ui.heading("Models");
        let Some(models) = ctx.models(ui.ctx()) else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("looking for models on disk…");
            });
            return;
        };
        let models: Vec<ModelInfo> = models
            .iter()
            .filter_map(|m| m.as_ref().ok())
            .cloned()
            .collect();
        for model in &models {
            ui.horizontal(|ui| {
                ui.label(RichText::new(&model.name).strong());
                ui.label(RichText::new(model_summary(model)).weak());
                if ui
                    .small_button("Open")
                    .on_hover_text(format!("Open {} in the Playground", model.path))
                    .clicked()
                {
                    ctx.commands
                        .push(AppCommand::OpenInPlayground(model.path.clone()));
                }
            });
        }
    }
}

impl Home {
    /// The dataset files opened in this workspace (asked again every few seconds; the last
    /// list stays while the workspace answers).
    fn workspace_datasets_ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext) {
        if let Some(ticket) = &mut self.asked
            && let Some(answer) = ticket.poll()
        {
            self.asked = None;
            let answer = answer.map(|l| l.into_iter().map(|r| r.path).collect());
            self.datasets = Some((std::time::Instant::now(), answer));
        }
        let stale = self
            .datasets
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > DATASETS_REFRESH);
        if stale && self.asked.is_none() {
            self.asked = Some(ctx.workspace.datasets());
        }
        ui.ctx().request_repaint_after(DATASETS_REFRESH);
        ui.horizontal(|ui| {
            ui.heading("Datasets");
            if ui.small_button("Open a file…").clicked() {
                ctx.commands.push(AppCommand::ShowView(View::Datasets));
            }
        });
        if self.asked.as_ref().is_some_and(Ticket::is_slow) {
            ctx.workspace_note_ui(ui);
        }
        let list = match &self.datasets {
            None => {
                ui.spinner();
                Vec::new()
            }
            Some((_, Err(e))) => {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("could not list the datasets: {e}"),
                );
                Vec::new()
            }
            Some((_, Ok(list))) => list.clone(),
        };
        if self.datasets.as_ref().is_some_and(|(_, l)| l.is_ok()) && list.is_empty() {
            ui.label(RichText::new("none opened in this workspace yet").weak());
        }
        for path in list.iter().take(6) {
            let name = std::path::Path::new(path)
                .file_name()
                .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
            if ui.link(name).on_hover_text(path).clicked() {
                ctx.commands.push(AppCommand::OpenDataset(path.into()));
            }
        }
        ui.add_space(8.0);
    }
}

fn datasets_ui(ui: &mut egui::Ui) {
    ui.label(RichText::new("Built-in tasks (no download)").strong());
    for task in BuiltinTask::ALL {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("builtin:{}", task.name())).monospace());
            ui.label(RichText::new(task.description()).weak());
        });
    }
}

/// A 120×24 sparkline of one series, min/max-downsampled to its width.
fn sparkline_ui(ui: &mut egui::Ui, ctx: &mut AppContext, run: RunId, metric: &str) {
    let (rect, response) = ui.allocate_exact_size(egui::vec2(120.0, 24.0), Sense::hover());
    let Some(series) = ctx.want(run, metric) else {
        return;
    };
    let points: Vec<[f64; 2]> = if series.is_empty() {
        Vec::new()
    } else {
        let (x0, x1) = (series.steps[0], series.steps[series.len() - 1]);
        downsample_min_max(&series.steps, &series.values, x0, x1, rect.width() as usize)
    };
    let finite: Vec<[f64; 2]> = points.into_iter().filter(|p| p[1].is_finite()).collect();
    if finite.len() < 2 {
        return;
    }
    let (x0, x1) = (finite[0][0], finite[finite.len() - 1][0]);
    let (lo, hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p[1]), hi.max(p[1]))
        });
    let span_x = (x1 - x0).max(1e-12);
    let span_y = (hi - lo).max(1e-12);
    let line: Vec<egui::Pos2> = finite
        .iter()
        .map(|p| {
            egui::pos2(
                rect.left() + ((p[0] - x0) / span_x) as f32 * rect.width(),
                rect.bottom() - ((p[1] - lo) / span_y) as f32 * rect.height(),
            )
        })
        .collect();
    ui.painter()
        .add(egui::Shape::line(line, Stroke::new(1.2, run_color(run))));
    let last = finite[finite.len() - 1][1];
    response.on_hover_text(format!("{metric}: {last:.4} (range {lo:.4} – {hi:.4})"));
}

/// A model spec shortened for a table cell: the last path component.
fn short_model(spec: &str) -> &str {
    spec.rsplit('/').find(|s| !s.is_empty()).unwrap_or(spec)
}

/// 1234567 → "1.2M".
pub fn human_count(n: usize) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n}")
    }
}
