//! The Compare view: two to four checkpoints (of any runs, or models on disk) side by side.
//!
//! - **Generate**: one prompt, one seed, each checkpoint's completion coloured by entropy.
//! - **Score**: one text teacher-forced under each (typed, or a rollout sent from Traces): one
//!   token view coloured by Δlog-prob, KL or either's entropy, the tokens where they disagree
//!   most, and how many forking tokens they share.
//! - **Evaluate**: each checkpoint on a built-in task or a dataset file, in the background with
//!   progress, stored; the stored evaluations with accuracy per checkpoint; the problems that
//!   flipped between two evaluations, each opening both completions side by side.
//! - **Curves**: the metric curves of their runs overlaid, the checkpoints' steps marked.
//!
//! All work runs on the view's threads ([`worker`]); a frame only draws.

pub mod worker;

mod curves;
mod evaluate;
mod generate;
mod picker;
mod score;
mod slots;

use std::collections::HashMap;

use egui::RichText;
use engine::data::builtin::BuiltinTask;
use engine::infer::SamplingConfig;
use engine::store::{EvaluationId, EvaluationRecord, RunId};
use engine::train::checkpoint::ModelSpec;
use engine::train::evaluation::EvalProgress;
use serde::{Deserialize, Serialize};

pub use self::evaluate::EvalSourceKind;
use self::evaluate::FlipShown;
use self::generate::GenSlot;
pub use self::score::ScoreColouring;
use self::score::ScoredShown;
use self::slots::find_checkpoint;
pub use self::slots::slot_color;
use self::worker::{Catalog, Event, FlippedPair, Job, StoreReply, StoreRequest, Workers};
use crate::context::AppContext;
use crate::views::traces::empty_ui;

/// Checkpoints compared at most.
pub const MAX_CHECKPOINTS: usize = 4;

/// The tabs of the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CompareTab {
    #[default]
    Generate,
    Score,
    Evaluate,
    Curves,
}

impl CompareTab {
    pub const ALL: [Self; 4] = [Self::Generate, Self::Score, Self::Evaluate, Self::Curves];

    pub fn label(self) -> &'static str {
        match self {
            Self::Generate => "Generate",
            Self::Score => "Score a text",
            Self::Evaluate => "Evaluate",
            Self::Curves => "Curves",
        }
    }
}

/// The Compare view's remembered settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareSettings {
    /// The checkpoints compared: a checkpoint id, `RUN:STEP`, or a model (path or `builtin:`).
    pub specs: Vec<String>,
    pub tab: CompareTab,
    pub prompt: String,
    pub max_new_tokens: usize,
    /// Temperature, top-k/p and seed; the same seed for every checkpoint, so a run repeats.
    pub sampling: SamplingConfig,
    /// Prompts through the chat template, for models (a checkpoint follows its run's setting).
    pub chat: bool,
    /// Fed before the scored text, not scored itself (a rollout's prompt).
    pub score_prompt: String,
    pub score_text: String,
    /// The share of tokens by entropy that are forking tokens.
    pub rho: f64,
    pub score_colouring: ScoreColouring,
    /// The checkpoint (index) the colouring is of (Δ: against the first).
    pub score_slot: usize,
    pub score_scale: f32,
    pub eval_source: EvalSourceKind,
    pub eval_task: String,
    pub eval_file: String,
    pub eval_count: usize,
    /// Every stored evaluation, not only the picked checkpoints'.
    pub eval_all: bool,
    pub metric: String,
}

impl Default for CompareSettings {
    fn default() -> Self {
        Self {
            specs: Vec::new(),
            tab: CompareTab::default(),
            prompt: "What is 17 + 25?".into(),
            max_new_tokens: 96,
            sampling: SamplingConfig::default(),
            chat: true,
            score_prompt: String::new(),
            score_text: String::new(),
            rho: 0.2,
            score_colouring: ScoreColouring::default(),
            score_slot: 1,
            score_scale: ScoreColouring::default().default_scale(),
            eval_source: EvalSourceKind::default(),
            eval_task: BuiltinTask::ALL[0].name().to_string(),
            eval_file: String::new(),
            eval_count: 32,
            eval_all: false,
            metric: "reward".into(),
        }
    }
}

/// Which long job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Generate,
    Score,
    Evaluate,
}

/// One checkpoint's evaluation started here: how far it got, then its stored record or error.
type EvalSlot = (
    Option<EvalProgress>,
    Option<Result<EvaluationRecord, String>>,
);

/// A curve downsampled for the plot, with the (points, width) it was made for.
type Curve = ((usize, usize), Vec<[f64; 2]>);

/// Two evaluations' flipped problems as read, or why not.
type FlippedResult = Result<Box<FlippedPair>, String>;

/// The Compare view's runtime state.
#[derive(Default)]
pub struct CompareView {
    workers: Option<Workers>,
    catalog: Option<Catalog>,
    /// The runs' state the catalog was read at (a new checkpoint reads it again).
    catalog_key: Option<(usize, u64)>,
    catalog_pending: bool,
    next_job: u64,
    running: Option<(u64, Running)>,
    generation: Vec<GenSlot>,
    scored: Option<ScoredShown>,
    score_error: Option<String>,
    evals: Vec<EvalSlot>,
    /// Evaluations chosen as A and B of the flipped problems.
    pub flip_a: Option<EvaluationId>,
    pub flip_b: Option<EvaluationId>,
    flipped: Option<((EvaluationId, EvaluationId), FlippedResult)>,
    flipped_pending: Option<(EvaluationId, EvaluationId)>,
    flip_shown: Option<FlipShown>,
    /// A model path being typed for the next slot.
    typed_model: String,
    /// Each run's curve of a metric as drawn.
    curves: HashMap<(RunId, String), Curve>,
    /// Score the text when the Score tab is next drawn with two checkpoints (sent from Traces).
    score_soon: bool,
    error: Option<String>,
}

impl CompareView {
    /// Whether a long job (generation, scoring, evaluation) runs.
    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// The catalog as last read (tests wait for it).
    pub fn catalog(&self) -> Option<&Catalog> {
        self.catalog.as_ref()
    }

    fn workers(&mut self, ctx: &AppContext, egui_ctx: &egui::Context) -> Option<&Workers> {
        if self.workers.is_none() {
            match Workers::spawn(ctx.workspace.shared(), egui_ctx) {
                Ok(w) => self.workers = Some(w),
                Err(e) => self.error = Some(format!("could not start the comparison threads: {e}")),
            }
        }
        self.workers.as_ref()
    }

    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        ctx: &mut AppContext,
        settings: &mut CompareSettings,
        recent: &[String],
    ) {
        self.poll(ctx, ui.ctx(), settings);
        ui.horizontal(|ui| {
            ui.heading("Compare");
            ui.label(
                RichText::new("2–4 checkpoints of any runs, or models on disk, side by side")
                    .weak(),
            );
        });
        if let Some(error) = self.error.clone() {
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(ui.visuals().error_fg_color, error);
                if ui.small_button("Dismiss").clicked() {
                    self.error = None;
                }
            });
        }
        self.picker_ui(ui, ctx, settings, recent);
        ui.separator();
        ui.horizontal(|ui| {
            for tab in CompareTab::ALL {
                ui.selectable_value(&mut settings.tab, tab, tab.label());
            }
        });
        ui.separator();
        if settings.specs.len() < 2 && settings.tab != CompareTab::Evaluate {
            empty_ui(
                ui,
                if self
                    .catalog
                    .as_ref()
                    .is_some_and(|c| c.checkpoints.is_empty())
                {
                    "Pick at least two checkpoints or models above. No run has saved a checkpoint \
                     yet: start one in Launch (or Try it on Home), or pick a model on disk."
                } else {
                    "Pick at least two checkpoints or models above to compare them."
                },
            );
            return;
        }
        match settings.tab {
            CompareTab::Generate => self.generate_ui(ui, ctx, settings),
            CompareTab::Score => self.score_ui(ui, ctx, settings),
            CompareTab::Evaluate => self.evaluate_ui(ui, ctx, settings),
            CompareTab::Curves => self.curves_ui(ui, ctx, settings),
        }
    }

    /// Drains both threads and keeps the catalog fresh.
    fn poll(&mut self, ctx: &AppContext, egui_ctx: &egui::Context, settings: &mut CompareSettings) {
        let key = (
            ctx.runs.len(),
            ctx.runs
                .iter()
                .map(|r| r.record.last_step.unwrap_or(0))
                .sum::<u64>(),
        );
        if self.catalog_key != Some(key)
            && !self.catalog_pending
            && let Some(w) = self.workers(ctx, egui_ctx)
            && w.ask(StoreRequest::Catalog)
        {
            self.catalog_pending = true;
            self.catalog_key = Some(key);
        }
        let Some(workers) = &self.workers else {
            return;
        };
        for reply in workers.replies() {
            match reply {
                StoreReply::Catalog(result) => {
                    self.catalog_pending = false;
                    match result {
                        Ok(c) => {
                            // Picks are remembered across workspaces; a checkpoint this one
                            // lacks is dropped, and said so.
                            let missing: Vec<String> = settings
                                .specs
                                .iter()
                                .filter(|spec| match ModelSpec::parse(spec) {
                                    ModelSpec::Checkpoint(at) => find_checkpoint(&c, at).is_none(),
                                    ModelSpec::Model(_) => false,
                                })
                                .cloned()
                                .collect();
                            if !missing.is_empty() {
                                settings.specs.retain(|s| !missing.contains(s));
                                self.error = Some(format!(
                                    "this workspace has no checkpoint {}; removed from the \
                                     comparison",
                                    missing.join(", ")
                                ));
                            }
                            self.catalog = Some(c);
                        }
                        Err(e) => self.error = Some(e),
                    }
                }
                StoreReply::Flipped { pair, result } => {
                    if self.flipped_pending == Some(pair) {
                        self.flipped_pending = None;
                    }
                    self.flip_shown = None;
                    self.flipped = Some((pair, result));
                }
            }
        }
        let events = match workers.events() {
            Ok(events) => events,
            Err(e) => {
                self.error = Some(e);
                self.workers = None;
                self.running = None;
                return;
            }
        };
        let current = self.running.map(|r| r.0);
        let mut refresh = false;
        for event in events {
            match event {
                Event::Done { job } if Some(job) == current => {
                    if self.running.is_some_and(|r| r.1 == Running::Evaluate) {
                        refresh = true;
                    }
                    let generating = self.running.is_some_and(|r| r.1 == Running::Generate);
                    self.running = None;
                    for slot in &mut self.generation {
                        slot.opening = false;
                        // Cancelled (or stopped by a failure before it): what came is all.
                        if generating && !slot.done {
                            slot.done = true;
                            if slot.tokens.is_empty() && slot.error.is_none() {
                                slot.error = Some(
                                    "not generated: cancelled, or one before it failed".into(),
                                );
                            }
                        }
                    }
                }
                Event::Failed { job, message } if Some(job) == current => {
                    self.error = Some(message);
                }
                Event::Opening { job, slot } if Some(job) == current => {
                    if let Some(s) = self.generation.get_mut(slot) {
                        s.opening = true;
                    }
                }
                Event::Token { job, slot, token } if Some(job) == current => {
                    if let Some(s) = self.generation.get_mut(slot) {
                        s.opening = false;
                        s.tokens.push(token);
                    }
                }
                Event::Generated { job, slot, result } if Some(job) == current => {
                    if let Some(s) = self.generation.get_mut(slot) {
                        s.done = true;
                        s.opening = false;
                        match result {
                            Ok(name) => s.name = Some(name),
                            Err(e) => s.error = Some(e),
                        }
                    }
                }
                Event::Scored { job, result } if Some(job) == current => match result {
                    Ok(scored) => {
                        self.score_error = None;
                        self.scored = Some(ScoredShown::new(*scored, settings));
                    }
                    Err(e) => self.score_error = Some(e),
                },
                Event::EvalProgress {
                    job,
                    slot,
                    progress,
                } if Some(job) == current => {
                    if let Some(e) = self.evals.get_mut(slot) {
                        e.0 = Some(progress);
                    }
                }
                Event::Evaluated { job, slot, result } if Some(job) == current => {
                    if let Some(e) = self.evals.get_mut(slot) {
                        e.1 = Some(result);
                    }
                    refresh = true;
                }
                _ => {}
            }
        }
        if refresh && !self.catalog_pending && workers.ask(StoreRequest::Catalog) {
            self.catalog_pending = true;
        }
    }

    fn start(&mut self, ctx: &AppContext, egui_ctx: &egui::Context, kind: Running, job: Job) {
        self.next_job += 1;
        let id = self.next_job;
        let running = self.running;
        let Some(w) = self.workers(ctx, egui_ctx) else {
            return;
        };
        if let Some((old, _)) = running {
            w.cancel(old);
        }
        if w.start(id, job) {
            self.running = Some((id, kind));
        } else {
            self.error = Some("the comparison thread has stopped; reopen the view".into());
        }
    }

    fn cancel(&mut self) {
        if let (Some((id, _)), Some(w)) = (self.running, &self.workers) {
            w.cancel(id);
        }
    }
}
