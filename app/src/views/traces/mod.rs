//! Traces: every completion a run sampled (GRPO rollouts) or answered (evaluations), step by
//! step. A step slider and a table of the step's completions grouped by prompt (sortable,
//! filterable); the chosen completion's tokens coloured by entropy, log-prob, rank bucket or
//! advantage, with forking tokens, masked tokens, `<think>`/`<answer>` segments and reflection
//! phrases marked; plots of entropy by position, the step's entropy histogram against another
//! step's, and the prompt's reward and entropy over training. The Run analytics tab plots the
//! engine's analysis of the whole run (`engine::analysis`, what `studio analyze` prints).
//!
//! Reads run on the `studio-traces-loader` thread: the step's traces, the run's tokenizer for
//! the token texts, a prompt's history and the analysis. The UI thread only draws.

use std::time::{Duration, Instant};

use egui::RichText;
use egui_plot::Bar;
use engine::analysis::{AnalysisOptions, RunAnalysis};
use engine::store::{PromptPoint, RunId, Trace, TraceKind};
use serde::{Deserialize, Serialize};

use crate::context::AppContext;
use crate::widgets::token_heatmap::printable_text;
use crate::widgets::token_view::Colouring;

/// How often the steps of a live run are listed again.
const STEPS_REFRESH: Duration = Duration::from_secs(1);

/// The Traces view's settings, kept between launches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TracesSettings {
    /// The run shown (default: the newest).
    pub run: Option<RunId>,
    /// Evaluation answers instead of training rollouts. Default: rollouts.
    pub eval: bool,
    pub colouring: Colouring,
    /// Top of the colour scale; `None` is the colouring's default.
    pub scale: Option<f32>,
    /// The share of a step's tokens, by entropy, that are its forking tokens. Default 0.2.
    pub rho: f64,
    /// Entropy (nats) above which a token counts as high-entropy in the analytics. Default 0.672.
    pub threshold: f32,
    /// Phrases marked and counted as reflection.
    pub reflection_words: Vec<String>,
    /// Group the table's rows by prompt. Default: true.
    pub group_by_prompt: bool,
    pub tab: TracesTab,
}

impl Default for TracesSettings {
    fn default() -> Self {
        let options = AnalysisOptions::default();
        Self {
            run: None,
            eval: false,
            colouring: Colouring::Entropy,
            scale: None,
            rho: options.rho,
            threshold: options.threshold,
            reflection_words: options.reflection_words,
            group_by_prompt: true,
            tab: TracesTab::Step,
        }
    }
}

impl TracesSettings {
    fn kind(&self) -> TraceKind {
        if self.eval {
            TraceKind::Eval
        } else {
            TraceKind::Rollout
        }
    }

    fn analysis_options(&self) -> AnalysisOptions {
        AnalysisOptions {
            threshold: self.threshold,
            rho: self.rho,
            reflection_words: self.reflection_words.clone(),
            ..AnalysisOptions::default()
        }
    }
}

/// The view's two tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TracesTab {
    /// One step's completions, token by token.
    #[default]
    Step,
    /// The analysis of the whole run.
    Analytics,
}

mod analytics;
mod loader;
mod plots;
mod step_bar;
mod table;
mod token_detail;

use crate::jobs::SendError;
use loader::{AnalysisKey, Loader, Reply, Request, StepKey};
pub use loader::{LoadedStep, forking_flags};
use plots::histogram;
pub use step_bar::nearest_step;
use table::Row;
pub use table::{SortBy, Verdict};
use token_detail::Shown;
pub use token_detail::view_tokens;

/// The loader's last answer for a key: what it read, or why it could not.
type Answer<K, T> = Option<(K, Result<T, String>)>;

/// The Traces view's runtime state.
#[derive(Default)]
pub struct TracesView {
    loader: Option<Loader>,
    /// Why the loader stopped or could not start, shown in place of the traces.
    loader_error: Option<String>,
    /// (run, kind) and its steps with how many completions each has.
    steps: Answer<(RunId, TraceKind), Vec<(u64, usize)>>,
    steps_asked: Option<((RunId, TraceKind), Instant)>,
    /// The step shown.
    pub step: Option<u64>,
    /// A step asked for before the steps were known (deep link, a click on a Runs plot).
    pub pending_step: Option<u64>,
    loaded: Answer<StepKey, LoadedStep>,
    step_asked: Option<StepKey>,
    rows: Vec<Row>,
    /// The completion shown in the token view (index into the step's traces).
    pub selected: Option<usize>,
    /// The completion shown, ready to draw.
    shown: Option<Shown>,
    /// Another step whose entropy histogram is overlaid.
    pub compare_step: Option<u64>,
    /// The other step's entropy histogram.
    compare: Answer<(RunId, TraceKind, u64), Vec<Bar>>,
    compare_asked: Option<(RunId, TraceKind, u64)>,
    history: Answer<(RunId, TraceKind, String), Vec<PromptPoint>>,
    history_asked: Option<(RunId, TraceKind, String)>,
    analysis: Option<(AnalysisKey, Result<RunAnalysis, String>)>,
    analysis_asked: Option<AnalysisKey>,
    /// The table's filter: text in the completion or prompt.
    pub filter: String,
    pub verdict: Verdict,
    pub sort: SortBy,
    pub sort_descending: bool,
    /// The reflection phrases as typed (comma-separated).
    reflection_text: Option<String>,
}

impl TracesView {
    /// Shows `run` at `step` (the nearest stored step when that one has none).
    pub fn show(&mut self, settings: &mut TracesSettings, run: RunId, step: Option<u64>) {
        if settings.run != Some(run) {
            settings.run = Some(run);
            self.step = None;
            self.selected = None;
        }
        settings.tab = TracesTab::Step;
        if step.is_some() {
            self.pending_step = step;
        }
    }

    fn send(&mut self, ctx: &AppContext, egui_ctx: &egui::Context, request: Request) -> bool {
        if self.loader.is_none() {
            match loader::start(ctx.workspace.shared(), egui_ctx) {
                Ok(l) => self.loader = Some(l),
                Err(e) => {
                    self.loader_error = Some(format!("could not start the traces loader: {e}"));
                    return false;
                }
            }
        }
        let Some(loader) = &self.loader else {
            return false;
        };
        match loader.send(request) {
            Ok(()) => true,
            Err(SendError::Busy) => false,
            Err(SendError::Stopped) => {
                self.loader = None;
                false
            }
        }
    }

    fn drain(&mut self) {
        let Some(loader) = &self.loader else {
            return;
        };
        let replies = match loader.drain(Duration::from_millis(4)) {
            Ok(replies) => replies,
            Err(_) => {
                self.loader = None;
                return;
            }
        };
        for reply in replies {
            match reply {
                Reply::Steps { run, kind, result } => self.steps = Some(((run, kind), result)),
                Reply::Step { key, result } => {
                    if self.step_asked == Some(key) {
                        self.loaded = Some((key, result));
                        self.rows.clear();
                        self.shown = None;
                    }
                }
                Reply::Entropies { key, result } => {
                    self.compare = Some((key, result.map(|e| histogram(&e))));
                }
                Reply::History { key, result } => self.history = Some((key, result)),
                Reply::Analysis { key, result } => self.analysis = Some((key, result)),
            }
        }
    }

    /// The shown step's completions, once loaded.
    pub fn loaded_step(&self) -> Option<&LoadedStep> {
        match &self.loaded {
            Some((_, Ok(step))) => Some(step),
            _ => None,
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut AppContext, settings: &mut TracesSettings) {
        self.drain();
        if settings.run.is_none() {
            settings.run = ctx.runs.first().map(|r| r.record.id);
        }
        self.header_ui(ui, ctx, settings);
        ui.separator();
        if let Some(e) = &self.loader_error {
            empty_ui(ui, e);
            return;
        }
        let Some(run) = settings.run else {
            empty_ui(
                ui,
                "No runs yet. A GRPO run stores every rollout it samples, and every run stores \
                 its evaluation answers: start one in Launch, or press Try it on Home.",
            );
            return;
        };
        let kind = settings.kind();
        self.keep_steps_fresh(ui.ctx(), ctx, run, kind);
        let steps = match &self.steps {
            Some((key, Ok(steps))) if *key == (run, kind) => steps.clone(),
            Some((key, Err(e))) if *key == (run, kind) => {
                empty_ui(ui, &format!("Could not list the traces of run {run}: {e}"));
                return;
            }
            _ => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Listing the run's traces…");
                });
                ctx.workspace_note_ui(ui);
                return;
            }
        };
        if steps.is_empty() {
            empty_ui(
                ui,
                &if settings.eval {
                    format!(
                        "Run {run} has no evaluation answers stored yet: runs evaluate every \
                         [eval] every steps and at the end."
                    )
                } else {
                    format!(
                        "Run {run} has no rollouts stored: only GRPO runs sample them. Its \
                         evaluation answers are under Eval answers."
                    )
                },
            );
            return;
        }
        match settings.tab {
            TracesTab::Step => self.step_tab_ui(ui, ctx, settings, run, kind, &steps),
            TracesTab::Analytics => {
                egui::ScrollArea::vertical()
                    .id_salt("traces_analytics_scroll")
                    .show(ui, |ui| {
                        self.analytics_ui(ui, ctx, settings, run, kind, &steps)
                    });
            }
        }
    }

    fn keep_steps_fresh(
        &mut self,
        egui_ctx: &egui::Context,
        ctx: &AppContext,
        run: RunId,
        kind: TraceKind,
    ) {
        let live = ctx.run(run).is_some_and(|r| r.is_live());
        let due = match &self.steps_asked {
            Some((key, at)) if *key == (run, kind) => live && at.elapsed() >= STEPS_REFRESH,
            _ => true,
        };
        if due && self.send(ctx, egui_ctx, Request::Steps { run, kind }) {
            self.steps_asked = Some(((run, kind), Instant::now()));
        }
        if live {
            egui_ctx.request_repaint_after(STEPS_REFRESH);
        }
    }

    fn header_ui(&mut self, ui: &mut egui::Ui, ctx: &AppContext, settings: &mut TracesSettings) {
        ui.horizontal(|ui| {
            let shown = settings.run.map_or_else(
                || "no run".to_string(),
                |id| {
                    ctx.run(id).map_or_else(
                        || format!("#{id}"),
                        |r| format!("#{id} {} ({})", r.record.name, r.algorithm),
                    )
                },
            );
            let label = ui.label("Run");
            let before = settings.run;
            egui::ComboBox::from_id_salt("traces_run")
                .selected_text(shown)
                .width(260.0)
                .show_ui(ui, |ui| {
                    for r in &ctx.runs {
                        ui.selectable_value(
                            &mut settings.run,
                            Some(r.record.id),
                            format!("#{} {} ({})", r.record.id, r.record.name, r.algorithm),
                        );
                    }
                })
                .response
                .labelled_by(label.id);
            if settings.run != before {
                self.step = None;
                self.selected = None;
            }
            ui.separator();
            let before = settings.eval;
            ui.selectable_value(&mut settings.eval, false, "Rollouts")
                .on_hover_text("What a GRPO run sampled for training");
            ui.selectable_value(&mut settings.eval, true, "Eval answers")
                .on_hover_text("The greedy answers of each evaluation on the held-out items");
            if settings.eval != before {
                self.step = None;
                self.selected = None;
            }
            ui.separator();
            ui.selectable_value(&mut settings.tab, TracesTab::Step, "Step");
            ui.selectable_value(&mut settings.tab, TracesTab::Analytics, "Run analytics");
        });
    }

    fn step_tab_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut TracesSettings,
        run: RunId,
        kind: TraceKind,
        steps: &[(u64, usize)],
    ) {
        if let Some(wanted) = self.pending_step.take() {
            self.step = Some(nearest_step(steps, wanted));
            self.selected = None;
        }
        let step = match self.step {
            Some(s) if steps.iter().any(|(x, _)| *x == s) => s,
            _ => {
                let last = steps[steps.len() - 1].0;
                self.step = Some(last);
                last
            }
        };
        self.step_bar_ui(ui, steps, step);
        let key: StepKey = (run, kind, step, settings.rho.to_bits());
        let loaded_here = self.loaded.as_ref().is_some_and(|(k, _)| *k == key);
        if !loaded_here
            && self.step_asked != Some(key)
            && self.send(
                ctx,
                ui.ctx(),
                Request::Step {
                    run,
                    kind,
                    step,
                    rho: settings.rho,
                },
            )
        {
            self.step_asked = Some(key);
        }
        if !loaded_here {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Reading step {step}…"));
            });
            return;
        }
        if let Some((_, Err(e))) = &self.loaded {
            empty_ui(ui, &format!("Could not read step {step}: {e}"));
            return;
        }
        self.prepare_rows(settings);
        egui::Panel::left("traces_table")
            .resizable(true)
            .default_size(470.0)
            .show(ui, |ui| self.table_ui(ui, settings));
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("traces_detail_scroll")
                .show(ui, |ui| {
                    self.detail_ui(ui, ctx, settings, run, kind, steps, key)
                });
        });
    }
}

fn mean_entropy(trace: &Trace) -> f64 {
    if trace.tokens.is_empty() {
        return f64::NAN;
    }
    trace
        .tokens
        .iter()
        .map(|t| f64::from(t.entropy))
        .sum::<f64>()
        / trace.tokens.len() as f64
}

/// `text` as the default fonts can draw it: a character they lack becomes a `\u{..}` escape
/// (model output and datasets hold any character; a missing glyph must never reach a label).
pub(crate) fn drawable(ui: &egui::Ui, text: &str) -> String {
    // Escaped for both families, so the text may be shown in either.
    let monospace = egui::TextStyle::Monospace.resolve(ui.style());
    let body = egui::TextStyle::Body.resolve(ui.style());
    printable_text(ui.ctx(), &body, &printable_text(ui.ctx(), &monospace, text))
}

/// A text on one line: line breaks shown as ⏎-free spaces, for table cells.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn empty_ui(ui: &mut egui::Ui, message: &str) {
    ui.add_space(24.0);
    ui.vertical_centered(|ui| {
        ui.label(RichText::new(message).weak());
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::store::TraceToken;

    pub(super) fn trace(ids: &[u32], entropies: &[f32]) -> Trace {
        Trace {
            step: 1,
            kind: TraceKind::Rollout,
            prompt_index: 0,
            sample_index: 0,
            prompt: "p".into(),
            completion: String::new(),
            tokens: ids
                .iter()
                .zip(entropies)
                .map(|(&id, &entropy)| TraceToken {
                    id,
                    logprob: -0.5,
                    entropy,
                    top: vec![(id, -0.5)],
                    counted: true,
                    trained: true,
                })
                .collect(),
            reward: 1.0,
            rewards: Vec::new(),
            advantage: 0.5,
            correct: Some(true),
            finish_reason: "eos".into(),
        }
    }

    #[test]
    fn forking_flags_mark_exactly_the_steps_top_share() {
        // Two completions, 5 tokens: ⌈0.4·5⌉ = 2 forking tokens, the two highest entropies,
        // wherever they are.
        let traces = [
            trace(&[1, 2, 3], &[0.1, 2.0, 0.3]),
            trace(&[4, 5], &[1.5, 0.2]),
        ];
        let flags = forking_flags(&traces, 0.4);
        assert_eq!(flags, vec![vec![false, true, false], vec![true, false]]);
        assert_eq!(
            forking_flags(&traces, 1.0)
                .concat()
                .iter()
                .filter(|f| **f)
                .count(),
            5
        );
    }
}
