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

use std::collections::HashMap;
use std::sync::mpsc::{TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, Points};
use engine::analysis::{AnalysisOptions, RunAnalysis, Segment};
use engine::store::{PromptPoint, RunId, Trace, TraceKind, TraceToken};
use serde::{Deserialize, Serialize};

use crate::context::{AppCommand, AppContext};
use crate::series::downsample_min_max;
use crate::widgets::token_heatmap::{
    Alternative, HeatmapToken, gradient_legend_ui, heat_color, printable_text,
};
use crate::widgets::token_view::{
    Colouring, Marks, RankBucket, TokenView, ViewToken, advantage_color, marks_legend_ui,
};

/// How often the steps of a live run are listed again.
const STEPS_REFRESH: Duration = Duration::from_secs(1);
/// Width of an entropy histogram bin, nats.
const HISTOGRAM_BIN_NATS: f64 = 0.1;

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

/// Which completions the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    All,
    Correct,
    Wrong,
}

/// A column the table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Order,
    Reward,
    Length,
    Entropy,
    Advantage,
}

mod analytics;
mod loader;

use loader::{AnalysisKey, Loader, Reply, Request, StepKey};
pub use loader::{LoadedStep, forking_flags};

/// The tokens of a completion as the token view draws them: texts, rank buckets, and marks
/// (forking, loss masks, reflection phrases, think/answer segments over the joined texts).
pub fn view_tokens(
    tokens: &[TraceToken],
    texts: &HashMap<u32, String>,
    forking: &[bool],
    reflection_words: &[String],
) -> Vec<ViewToken> {
    let text_of = |id: u32| {
        texts
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("<id {id}>"))
    };
    let pieces: Vec<String> = tokens.iter().map(|t| text_of(t.id)).collect();
    // Byte offsets of each token in the joined text, which the phrase and tag search read.
    let mut joined = String::new();
    let mut starts = Vec::with_capacity(pieces.len());
    for p in &pieces {
        starts.push(joined.len());
        joined.push_str(p);
    }
    let token_at = |byte: usize| starts.partition_point(|&s| s <= byte).saturating_sub(1);
    let mut reflection = vec![false; pieces.len()];
    for word in reflection_words {
        for range in engine::analysis::phrase_matches(&joined, word) {
            if range.is_empty() {
                continue;
            }
            for flag in &mut reflection[token_at(range.start)..=token_at(range.end - 1)] {
                *flag = true;
            }
        }
    }
    let mut segment = vec![Segment::Other; pieces.len()];
    for (range, s) in engine::analysis::segments(&joined) {
        if s == Segment::Other || range.is_empty() {
            continue;
        }
        for slot in &mut segment[token_at(range.start)..=token_at(range.end - 1)] {
            // A token that holds a tag and text keeps the text's segment.
            if *slot == Segment::Other || *slot == Segment::Tag {
                *slot = s;
            }
        }
    }
    tokens
        .iter()
        .zip(pieces)
        .enumerate()
        .map(|(i, (t, text))| {
            let alternatives: Vec<Alternative> = t
                .top
                .iter()
                .map(|&(id, logprob)| Alternative {
                    id,
                    text: text_of(id),
                    logprob,
                })
                .collect();
            ViewToken {
                rank: RankBucket::of(t.id, &alternatives),
                token: HeatmapToken {
                    id: t.id,
                    text,
                    logprob: t.logprob,
                    entropy_nats: t.entropy,
                    alternatives,
                },
                marks: Marks {
                    forking: forking.get(i).copied().unwrap_or(false),
                    counted: t.counted,
                    trained: t.trained,
                    reflection: reflection[i],
                    segment: segment[i],
                },
            }
        })
        .collect()
}

/// The completion shown: its token view, the plots' data and the header's lines, all made
/// once when it is chosen (a frame only draws them).
struct Shown {
    /// (step, completion, reflection phrases) it was made for.
    key: (StepKey, usize, Vec<String>),
    view: TokenView,
    plots: PlotData,
    prompt: String,
    lines: [String; 3],
}

impl Shown {
    fn new(
        step: &LoadedStep,
        index: usize,
        key: (StepKey, usize, Vec<String>),
        words: &[String],
    ) -> Self {
        let trace = &step.traces[index];
        let mut tokens = view_tokens(
            &trace.tokens,
            &step.texts,
            step.forking.get(index).map_or(&[][..], Vec::as_slice),
            words,
        );
        // An evaluation answer was never trained on: its loss masks mean nothing.
        if key.0.1 == TraceKind::Eval {
            for t in &mut tokens {
                t.marks.counted = true;
                t.marks.trained = true;
            }
        }
        let mut parts = vec![
            format!(
                "prompt {} · sample {}",
                trace.prompt_index, trace.sample_index
            ),
            format!("reward {:.3}", trace.reward),
        ];
        if !trace.rewards.is_empty() {
            parts.push(
                trace
                    .rewards
                    .iter()
                    .map(|(n, v)| format!("{n} {v:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
        }
        parts.push(format!("advantage {:+.3}", trace.advantage));
        parts.push(
            match trace.correct {
                Some(true) => "correct",
                Some(false) => "wrong",
                None => "no verdict",
            }
            .into(),
        );
        parts.push(format!(
            "{} tokens ({})",
            trace.tokens.len(),
            trace.finish_reason
        ));
        parts.push(format!("mean entropy {:.3}", mean_entropy(trace)));
        let count = |f: &dyn Fn(&ViewToken) -> bool| tokens.iter().filter(|t| f(t)).count();
        let marks = format!(
            "think {} tokens · answer {} tokens · forking {} · masked {}",
            count(&|t| t.marks.segment == Segment::Think),
            count(&|t| t.marks.segment == Segment::Answer),
            count(&|t| t.marks.forking),
            count(&|t| !t.marks.counted),
        );
        let reflections: Vec<String> = words
            .iter()
            .filter_map(|word| {
                let n = engine::analysis::count_phrase(&trace.completion, word);
                (n > 0).then(|| format!("\"{word}\" x{n}"))
            })
            .collect();
        let reflection = if reflections.is_empty() {
            "reflection: none".to_string()
        } else {
            format!("reflection: {}", reflections.join(", "))
        };
        Self {
            key,
            view: TokenView::new(tokens, trace.advantage),
            plots: PlotData::new(&step.traces, trace),
            prompt: trace.prompt.clone(),
            lines: [parts.join(" · "), marks, reflection],
        }
    }

    fn header_ui(&self, ui: &mut egui::Ui) {
        ui.label(RichText::new(&self.lines[0]).strong());
        ui.label(&self.lines[1]);
        ui.label(&self.lines[2]);
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("prompt").weak());
            let shown = drawable(ui, &one_line(&self.prompt));
            ui.add(egui::Label::new(RichText::new(shown).monospace()).truncate())
                .on_hover_text(drawable(ui, &self.prompt));
        });
    }
}

/// What the plots under the token view draw, computed once per shown completion.
struct PlotData {
    /// Entropy by position of the completion, and the step's mean at each position, both
    /// min/max-downsampled to [`POSITION_COLUMNS`] columns.
    this: Vec<[f64; 2]>,
    step_mean: Vec<[f64; 2]>,
    histogram: Vec<Bar>,
}

/// Columns the entropy-by-position lines are downsampled to.
const POSITION_COLUMNS: usize = 600;

impl PlotData {
    fn new(traces: &[Trace], trace: &Trace) -> Self {
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

/// A completion's figures for the table.
#[derive(Debug, Clone)]
struct Row {
    index: usize,
    mean_entropy: f64,
    reflection: usize,
}

/// The loader's last answer for a key: what it read, or why it could not.
type Answer<K, T> = Option<(K, Result<T, String>)>;

/// The Traces view's runtime state.
#[derive(Default)]
pub struct TracesView {
    loader: Option<Loader>,
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
        let loader = self
            .loader
            .get_or_insert_with(|| Loader::start(ctx.workspace_dir.clone(), egui_ctx.clone()));
        match loader.requests.try_send(request) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                self.loader = None;
                false
            }
        }
    }

    fn drain(&mut self) {
        let Some(loader) = &self.loader else {
            return;
        };
        loop {
            match loader.replies.try_recv() {
                Ok(Reply::Steps { run, kind, result }) => self.steps = Some(((run, kind), result)),
                Ok(Reply::Step { key, result }) => {
                    if self.step_asked == Some(key) {
                        self.loaded = Some((key, result));
                        self.rows.clear();
                        self.shown = None;
                    }
                }
                Ok(Reply::Entropies { key, result }) => {
                    self.compare = Some((key, result.map(|e| histogram(&e))));
                }
                Ok(Reply::History { key, result }) => self.history = Some((key, result)),
                Ok(Reply::Analysis { key, result }) => self.analysis = Some((key, result)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.loader = None;
                    break;
                }
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

    fn step_bar_ui(&mut self, ui: &mut egui::Ui, steps: &[(u64, usize)], step: u64) {
        let mut index = steps.iter().position(|(s, _)| *s == step).unwrap_or(0);
        ui.horizontal(|ui| {
            if ui
                .add_enabled(index > 0, egui::Button::new("<"))
                .on_hover_text("Previous step")
                .clicked()
            {
                index -= 1;
            }
            let labels: Vec<u64> = steps.iter().map(|s| s.0).collect();
            // Room for the buttons, the value box and the label after the slider.
            ui.spacing_mut().slider_width = (ui.available_width() - 420.0).clamp(100.0, 900.0);
            let last = steps.len() - 1;
            ui.add(
                egui::Slider::new(&mut index, 0..=last)
                    .custom_formatter(move |i, _| {
                        labels
                            .get(i as usize)
                            .map_or_else(String::new, |s| s.to_string())
                    })
                    .custom_parser(|_| None)
                    .text("step"),
            );
            if ui
                .add_enabled(index < last, egui::Button::new(">"))
                .on_hover_text("Next step")
                .clicked()
            {
                index += 1;
            }
            let (shown, n) = steps[index];
            ui.label(format!(
                "step {shown}: {n} completions, {} steps",
                steps.len()
            ));
        });
        let chosen = steps[index].0;
        if chosen != step {
            self.step = Some(chosen);
            self.selected = None;
        }
    }

    fn prepare_rows(&mut self, settings: &TracesSettings) {
        let Some(step) = self.loaded_step() else {
            return;
        };
        if !self.rows.is_empty() || step.traces.is_empty() {
            return;
        }
        let rows = step
            .traces
            .iter()
            .enumerate()
            .map(|(index, t)| Row {
                index,
                mean_entropy: mean_entropy(t),
                reflection: settings
                    .reflection_words
                    .iter()
                    .map(|w| engine::analysis::count_phrase(&t.completion, w))
                    .sum(),
            })
            .collect();
        self.rows = rows;
    }

    /// Whether the table groups by prompt: asked for, and some prompt has several completions
    /// (evaluation answers have one each).
    fn grouped(&self, settings: &TracesSettings) -> bool {
        settings.group_by_prompt
            && self
                .loaded_step()
                .is_some_and(|s| s.traces.iter().any(|t| t.sample_index > 0))
    }

    /// The rows shown, in order: (prompt group starts here, row).
    fn shown_rows(&self, settings: &TracesSettings) -> Vec<&Row> {
        let Some(step) = self.loaded_step() else {
            return Vec::new();
        };
        let needle = self.filter.trim().to_lowercase();
        let mut shown: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| {
                let t = &step.traces[r.index];
                let verdict = match self.verdict {
                    Verdict::All => true,
                    Verdict::Correct => t.correct == Some(true),
                    Verdict::Wrong => t.correct == Some(false),
                };
                verdict
                    && (needle.is_empty()
                        || t.completion.to_lowercase().contains(&needle)
                        || t.prompt.to_lowercase().contains(&needle))
            })
            .collect();
        let value = |r: &Row| -> f64 {
            let t = &step.traces[r.index];
            match self.sort {
                SortBy::Order => r.index as f64,
                SortBy::Reward => t.reward,
                SortBy::Length => t.tokens.len() as f64,
                SortBy::Entropy => r.mean_entropy,
                SortBy::Advantage => t.advantage,
            }
        };
        shown.sort_by(|a, b| {
            let group = if self.grouped(settings) {
                step.traces[a.index]
                    .prompt_index
                    .cmp(&step.traces[b.index].prompt_index)
            } else {
                std::cmp::Ordering::Equal
            };
            let by = value(a).total_cmp(&value(b));
            group.then(if self.sort_descending {
                by.reverse()
            } else {
                by
            })
        });
        shown
    }

    fn table_ui(&mut self, ui: &mut egui::Ui, settings: &mut TracesSettings) {
        ui.horizontal(|ui| {
            let label = ui.label("Filter");
            ui.add(
                egui::TextEdit::singleline(&mut self.filter)
                    .hint_text("text in prompt or completion")
                    .desired_width(180.0),
            )
            .labelled_by(label.id);
            ui.selectable_value(&mut self.verdict, Verdict::All, "All");
            ui.selectable_value(&mut self.verdict, Verdict::Correct, "Correct");
            ui.selectable_value(&mut self.verdict, Verdict::Wrong, "Wrong");
            ui.checkbox(&mut settings.group_by_prompt, "By prompt");
        });
        const WIDTHS: [f32; 8] = [58.0, 56.0, 50.0, 44.0, 50.0, 50.0, 56.0, 40.0];
        ui.horizontal(|ui| {
            let columns: [(&str, Option<SortBy>, &str); 8] = [
                ("#", Some(SortBy::Order), "prompt/sample"),
                (
                    "reward",
                    Some(SortBy::Reward),
                    "the weighted sum of the reward parts",
                ),
                ("right", None, "the verifier's verdict"),
                ("len", Some(SortBy::Length), "completion tokens"),
                ("end", None, "finish reason: eos, length or stop"),
                (
                    "H",
                    Some(SortBy::Entropy),
                    "mean entropy of the completion's tokens, nats",
                ),
                ("adv", Some(SortBy::Advantage), "advantage"),
                ("refl", None, "reflection phrases in the completion"),
            ];
            for ((title, sort, help), width) in columns.into_iter().zip(WIDTHS) {
                match sort {
                    Some(by) => {
                        let arrow = if self.sort == by {
                            if self.sort_descending { " v" } else { " ^" }
                        } else {
                            ""
                        };
                        let clicked = ui
                            .add_sized(
                                [width, 18.0],
                                egui::Button::new(format!("{title}{arrow}")).small(),
                            )
                            .on_hover_text(format!("Sort by {help}"))
                            .clicked();
                        if clicked {
                            if self.sort == by {
                                self.sort_descending = !self.sort_descending;
                            } else {
                                self.sort = by;
                                self.sort_descending = by != SortBy::Order;
                            }
                        }
                    }
                    None => {
                        ui.add_sized(
                            [width, 18.0],
                            egui::Label::new(RichText::new(title).small()),
                        )
                        .on_hover_text(help);
                    }
                }
            }
        });
        ui.separator();
        let Some(step) = self.loaded_step() else {
            return;
        };
        // Lines: a prompt's heading (when grouping), then its completions.
        let grouped = self.grouped(settings);
        let mut lines: Vec<(bool, usize)> = Vec::new();
        let mut last_prompt = None;
        for r in self.shown_rows(settings) {
            let p = step.traces[r.index].prompt_index;
            if grouped && last_prompt != Some(p) {
                lines.push((true, r.index));
                last_prompt = Some(p);
            }
            lines.push((false, r.index));
        }
        if lines.is_empty() {
            ui.label(RichText::new("No completion matches the filter.").weak());
            return;
        }
        let row_height = ui.spacing().interact_size.y;
        let mut clicked = None;
        let rows_by_index: HashMap<usize, &Row> = self.rows.iter().map(|r| (r.index, r)).collect();
        egui::ScrollArea::vertical()
            .id_salt("traces_table_scroll")
            .auto_shrink([false, false])
            .show_rows(ui, row_height, lines.len(), |ui, range| {
                for &(heading, index) in &lines[range] {
                    let t = &step.traces[index];
                    if heading {
                        let group: Vec<&Trace> = step
                            .traces
                            .iter()
                            .filter(|x| x.prompt_index == t.prompt_index)
                            .collect();
                        let right = group.iter().filter(|x| x.correct == Some(true)).count();
                        let mean_reward =
                            group.iter().map(|x| x.reward).sum::<f64>() / group.len() as f64;
                        ui.horizontal(|ui| {
                            ui.set_height(row_height);
                            ui.label(
                                RichText::new(format!(
                                    "prompt {} · {right}/{} right · mean reward {mean_reward:.2}",
                                    t.prompt_index,
                                    group.len()
                                ))
                                .strong(),
                            );
                            ui.add(
                                egui::Label::new(
                                    RichText::new(drawable(ui, &one_line(&t.prompt))).weak(),
                                )
                                .truncate(),
                            )
                            .on_hover_text(drawable(ui, &t.prompt));
                        });
                        continue;
                    }
                    let Some(r) = rows_by_index.get(&index) else {
                        continue;
                    };
                    let selected = self.selected == Some(index);
                    ui.horizontal(|ui| {
                        ui.set_height(row_height);
                        let cells = [
                            format!("{}/{}", t.prompt_index, t.sample_index),
                            format!("{:.2}", t.reward),
                            match t.correct {
                                Some(true) => "yes".into(),
                                Some(false) => "no".into(),
                                None => "-".into(),
                            },
                            t.tokens.len().to_string(),
                            t.finish_reason.clone(),
                            format!("{:.2}", r.mean_entropy),
                            format!("{:+.2}", t.advantage),
                            r.reflection.to_string(),
                        ];
                        for (i, (cell, width)) in cells.into_iter().zip(WIDTHS).enumerate() {
                            let mut text = RichText::new(cell).monospace();
                            if i == 2 {
                                text = text.color(match t.correct {
                                    Some(true) => Color32::from_rgb(60, 170, 80),
                                    Some(false) => Color32::from_rgb(220, 80, 60),
                                    None => ui.visuals().weak_text_color(),
                                });
                            }
                            let response = ui.add_sized(
                                [width, row_height],
                                egui::Button::selectable(selected, text),
                            );
                            if response.clicked() {
                                clicked = Some(index);
                            }
                            if i == 1 && !t.rewards.is_empty() {
                                response.on_hover_text(
                                    t.rewards
                                        .iter()
                                        .map(|(n, v)| format!("{n}: {v:.3}"))
                                        .collect::<Vec<_>>()
                                        .join("\n"),
                                );
                            }
                        }
                    });
                }
            });
        if clicked.is_some() {
            self.selected = clicked;
        }
    }

    fn detail_ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut TracesSettings,
        run: RunId,
        kind: TraceKind,
        steps: &[(u64, usize)],
        key: StepKey,
    ) {
        let Some(step) = self.loaded_step() else {
            return;
        };
        if step.traces.is_empty() {
            return;
        }
        let index = match self.selected {
            Some(i) if i < step.traces.len() => i,
            _ => {
                // Start on the first completion of the table's order.
                let first = self.shown_rows(settings).first().map_or(0, |r| r.index);
                self.selected = Some(first);
                first
            }
        };
        let view_key = (key, index, settings.reflection_words.clone());
        if self.shown.as_ref().is_none_or(|s| s.key != view_key) {
            let Some(step) = self.loaded_step() else {
                return;
            };
            let shown = Shown::new(step, index, view_key, &settings.reflection_words);
            self.shown = Some(shown);
        }
        let Some(shown) = &self.shown else {
            return;
        };
        let prompt = shown.prompt.clone();
        shown.header_ui(ui);
        if ui
            .button("Score in Compare")
            .on_hover_text(
                "Score this completion, after its prompt, under the checkpoints picked in \
                 Compare: per-token Δ log-prob and KL",
            )
            .clicked()
            && let Some(trace) = self.loaded_step().and_then(|s| s.traces.get(index))
        {
            ctx.commands.push(AppCommand::ScoreInCompare {
                prompt: trace.prompt.clone(),
                text: trace.completion.clone(),
            });
        }
        self.colouring_ui(ui, settings);
        let scale = settings
            .scale
            .unwrap_or_else(|| settings.colouring.default_scale());
        let max_height = (ui.available_height() * 0.45).max(160.0);
        if let Some(shown) = &mut self.shown {
            egui::Frame::group(ui.style()).show(ui, |ui| {
                shown.view.ui(ui, settings.colouring, scale, max_height);
            });
        }
        ui.add_space(6.0);
        self.plots_ui(ui, ctx, run, kind, steps, &prompt, key.2);
    }

    fn colouring_ui(&mut self, ui: &mut egui::Ui, settings: &mut TracesSettings) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Colour by");
            for c in Colouring::ALL {
                if ui
                    .selectable_value(&mut settings.colouring, c, c.label())
                    .clicked()
                {
                    settings.scale = None;
                }
            }
            let mut scale = settings
                .scale
                .unwrap_or_else(|| settings.colouring.default_scale());
            if settings.colouring != Colouring::Rank {
                let response = ui.add(
                    egui::Slider::new(&mut scale, 0.1..=12.0)
                        .logarithmic(true)
                        .text("scale"),
                );
                if response.changed() {
                    settings.scale = Some(scale);
                }
            }
        });
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("forking ρ");
            ui.add(
                egui::DragValue::new(&mut settings.rho)
                    .range(0.01..=1.0)
                    .speed(0.01),
            )
            .labelled_by(label.id)
            .on_hover_text("Forking tokens: the step's top ρ share of tokens by entropy");
            ui.separator();
            let scale = settings
                .scale
                .unwrap_or_else(|| settings.colouring.default_scale());
            match settings.colouring {
                Colouring::Entropy => {
                    gradient_legend_ui(ui, "entropy", "0", &format!("{scale:.1}+ nats"), heat_color)
                }
                Colouring::LogProb => gradient_legend_ui(
                    ui,
                    "log-prob",
                    "0",
                    &format!("-{scale:.1} or less"),
                    heat_color,
                ),
                Colouring::Advantage => gradient_legend_ui(
                    ui,
                    "advantage",
                    &format!("-{scale:.1}"),
                    &format!("+{scale:.1}"),
                    |t| advantage_color(2.0 * t - 1.0),
                ),
                Colouring::Rank => {
                    for (bucket, text) in [
                        (RankBucket::First, "top 1"),
                        (RankBucket::TopK, "top k stored"),
                        (RankBucket::Below, "below"),
                    ] {
                        let (rect, _) =
                            ui.allocate_exact_size(egui::vec2(14.0, 12.0), egui::Sense::hover());
                        ui.painter().rect_filled(rect, 2.0, bucket.color());
                        ui.label(text);
                    }
                }
            }
            ui.separator();
            marks_legend_ui(ui);
        });
    }

    fn plots_ui(
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

/// The stored step nearest `wanted` (the earlier one on a tie).
pub fn nearest_step(steps: &[(u64, usize)], wanted: u64) -> u64 {
    steps
        .iter()
        .map(|s| s.0)
        .min_by_key(|s| (s.abs_diff(wanted), *s))
        .unwrap_or(wanted)
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

/// Shares of `entropies` in bins of [`HISTOGRAM_BIN_NATS`], as bars at the bins' centres.
fn histogram(entropies: &[f32]) -> Vec<Bar> {
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

    fn trace(ids: &[u32], entropies: &[f32]) -> Trace {
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

    #[test]
    fn view_tokens_mark_reflection_words_and_segments_across_token_boundaries() {
        // "<think>wa" + "it, 2</think>" + "<answer>" + "4</answer>"
        let texts: HashMap<u32, String> = [
            (1, "<think>wa"),
            (2, "it, 2</think>"),
            (3, "<answer>"),
            (4, "4</answer>"),
            (5, " ok"),
        ]
        .into_iter()
        .map(|(id, t)| (id, t.to_string()))
        .collect();
        let t = trace(&[1, 2, 3, 4, 5], &[0.0; 5]);
        let tokens = view_tokens(
            &t.tokens,
            &texts,
            &[false, true, false, false, false],
            &["wait".into()],
        );
        let reflection: Vec<bool> = tokens.iter().map(|t| t.marks.reflection).collect();
        assert_eq!(reflection, [true, true, false, false, false]);
        let segments: Vec<Segment> = tokens.iter().map(|t| t.marks.segment).collect();
        assert_eq!(
            segments,
            [
                Segment::Think,
                Segment::Think,
                Segment::Tag,
                Segment::Answer,
                Segment::Other
            ]
        );
        assert!(tokens[1].marks.forking && !tokens[0].marks.forking);
        assert_eq!(tokens[0].rank, RankBucket::First);
    }

    #[test]
    fn a_wanted_step_snaps_to_the_nearest_stored_one() {
        let steps = [(0, 8), (10, 8), (20, 8)];
        assert_eq!(nearest_step(&steps, 12), 10);
        assert_eq!(nearest_step(&steps, 15), 10);
        assert_eq!(nearest_step(&steps, 16), 20);
        assert_eq!(nearest_step(&steps, 400), 20);
    }

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
