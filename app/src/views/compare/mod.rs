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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot, VLine};
use engine::data::builtin::BuiltinTask;
use engine::infer::SamplingConfig;
use engine::store::{EvaluationId, EvaluationRecord, RunId};
use engine::train::checkpoint::{CheckpointRef, ModelSpec};
use engine::train::evaluation::{EvalData, EvalProgress, evaluated_model, problem_set};
use serde::{Deserialize, Serialize};

use self::worker::{Catalog, Event, FlippedPair, Job, Scored, StoreReply, StoreRequest, Workers};
use crate::context::AppContext;
use crate::series::downsample_min_max;
use crate::views::runs::run_color;
use crate::views::traces::{drawable, empty_ui, one_line, view_tokens};
use crate::widgets::token_heatmap::{HeatmapToken, gradient_legend_ui, heat_color};
use crate::widgets::token_view::{
    Colouring, Marks, RankBucket, TokenView, ViewToken, advantage_color,
};

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

/// What the scored text's backgrounds show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ScoreColouring {
    /// log p under the chosen checkpoint minus under the first (green: it finds the token
    /// likelier).
    #[default]
    DeltaLogProb,
    /// KL(first ‖ second) of the next-token distributions.
    Kl,
    /// The chosen checkpoint's entropy.
    Entropy,
    /// The chosen checkpoint's log-prob.
    LogProb,
}

impl ScoreColouring {
    pub const ALL: [Self; 4] = [Self::DeltaLogProb, Self::Kl, Self::Entropy, Self::LogProb];

    pub fn label(self) -> &'static str {
        match self {
            Self::DeltaLogProb => "Δ log-prob",
            Self::Kl => "KL([1] || [2])",
            Self::Entropy => "Entropy",
            Self::LogProb => "Log-prob",
        }
    }

    /// The default top of the scale.
    fn default_scale(self) -> f32 {
        match self {
            Self::DeltaLogProb => 2.0,
            Self::Kl => 1.0,
            Self::Entropy => 4.0,
            Self::LogProb => 6.0,
        }
    }
}

/// Where an evaluation's problems come from, as the form picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EvalSourceKind {
    #[default]
    Builtin,
    File,
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

/// One checkpoint's generation.
#[derive(Default)]
struct GenSlot {
    name: Option<String>,
    tokens: Vec<HeatmapToken>,
    view: Option<(usize, TokenView)>,
    error: Option<String>,
    opening: bool,
    done: bool,
}

/// A scored text as shown.
struct ScoredShown {
    scored: Scored,
    specs: Vec<String>,
    /// (colouring, slot, scale bits) the view was made for.
    key: (ScoreColouring, usize),
    view: TokenView,
    /// Token indices by KL, largest first.
    ranked: Vec<usize>,
}

/// Which long job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Generate,
    Score,
    Evaluate,
}

/// Two completions of a flipped problem, side by side.
struct FlipShown {
    /// (A's item, B's item).
    items: (usize, usize),
    views: [TokenView; 2],
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
    /// Puts a text (and the prompt it answered) in the Score tab, and scores it as soon as two
    /// checkpoints are picked.
    pub fn score_text(&mut self, settings: &mut CompareSettings, prompt: &str, text: &str) {
        settings.score_prompt = prompt.to_string();
        settings.score_text = text.to_string();
        settings.tab = CompareTab::Score;
        self.scored = None;
        self.score_error = None;
        self.score_soon = true;
    }

    /// Adds a checkpoint (or model) to compare, unless it is there or four are.
    pub fn add(&mut self, settings: &mut CompareSettings, spec: &str) {
        if !settings.specs.iter().any(|s| s == spec) && settings.specs.len() < MAX_CHECKPOINTS {
            settings.specs.push(spec.to_string());
        }
    }

    /// Whether a long job (generation, scoring, evaluation) runs.
    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// The catalog as last read (tests wait for it).
    pub fn catalog(&self) -> Option<&Catalog> {
        self.catalog.as_ref()
    }

    /// Each checkpoint's generated token ids, or its error.
    pub fn generated(&self) -> Vec<Result<Vec<u32>, String>> {
        self.generation
            .iter()
            .map(|g| match &g.error {
                Some(e) => Err(e.clone()),
                None => Ok(g.tokens.iter().map(|t| t.id).collect()),
            })
            .collect()
    }

    /// The scored text shown, or why scoring failed.
    pub fn scored(&self) -> Option<Result<&Scored, &str>> {
        match (&self.scored, &self.score_error) {
            (_, Some(e)) => Some(Err(e.as_str())),
            (Some(s), None) => Some(Ok(&s.scored)),
            (None, None) => None,
        }
    }

    /// Each evaluation started here: its stored record, or its error.
    pub fn evaluated(&self) -> Vec<Option<Result<&EvaluationRecord, &str>>> {
        self.evals
            .iter()
            .map(|(_, r)| r.as_ref().map(|r| r.as_ref().map_err(String::as_str)))
            .collect()
    }

    /// The flipped problems of the chosen A and B, once read.
    pub fn flipped(&self) -> Option<Result<&FlippedPair, &str>> {
        self.flipped
            .as_ref()
            .map(|(_, r)| r.as_ref().map(|p| &**p).map_err(String::as_str))
    }

    /// The flipped problem opened side by side, as (A's item, B's item).
    pub fn flip_opened(&self) -> Option<(usize, usize)> {
        self.flip_shown.as_ref().map(|s| s.items)
    }

    fn workers(&mut self, ctx: &AppContext, egui_ctx: &egui::Context) -> Option<&Workers> {
        if self.workers.is_none() {
            match Workers::spawn(ctx.workspace_dir.clone(), egui_ctx.clone()) {
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

    /// A spec's label: the run and step of a checkpoint, else the model's file name.
    fn label(&self, spec: &str) -> String {
        label_of(self.catalog.as_ref(), spec)
    }

    fn picker_ui(
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

    fn generate_ui(&mut self, ui: &mut egui::Ui, ctx: &AppContext, settings: &mut CompareSettings) {
        ui.label("Prompt");
        ui.add(
            egui::TextEdit::multiline(&mut settings.prompt)
                .desired_rows(2)
                .desired_width(f32::INFINITY)
                .hint_text("The same prompt goes to every checkpoint"),
        );
        let busy = self.running.is_some_and(|r| r.1 == Running::Generate);
        ui.horizontal_wrapped(|ui| {
            ui.label("max tokens");
            ui.add(egui::DragValue::new(&mut settings.max_new_tokens).range(1..=4096));
            ui.label("temperature");
            ui.add(
                egui::DragValue::new(&mut settings.sampling.temperature)
                    .range(0.0..=2.0)
                    .speed(0.01),
            );
            ui.label("top-p");
            ui.add(
                egui::DragValue::new(&mut settings.sampling.top_p)
                    .range(0.0..=1.0)
                    .speed(0.01),
            );
            ui.label("seed");
            ui.add(egui::DragValue::new(&mut settings.sampling.seed));
            ui.checkbox(&mut settings.chat, "chat template")
                .on_hover_text(
                    "For models on disk; a checkpoint sees the prompt as its run's training did",
                );
            if busy {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
                ui.spinner();
            } else if ui
                .add_enabled(
                    !settings.prompt.trim().is_empty(),
                    egui::Button::new("Generate side by side"),
                )
                .on_hover_text("Every checkpoint, the same seed: run it again and it repeats")
                .clicked()
            {
                self.generation = settings.specs.iter().map(|_| GenSlot::default()).collect();
                let job = Job::Generate {
                    specs: settings.specs.clone(),
                    prompt: settings.prompt.clone(),
                    chat: settings.chat,
                    max_new_tokens: settings.max_new_tokens,
                    sampling: settings.sampling.clone(),
                };
                self.start(ctx, ui.ctx(), Running::Generate, job);
            }
        });
        if let Err(e) = settings.sampling.validate() {
            ui.colored_label(ui.visuals().error_fg_color, e.to_string());
        }
        ui.separator();
        if self.generation.is_empty() {
            empty_ui(
                ui,
                "Generate to see each checkpoint's completion, coloured by entropy.",
            );
            return;
        }
        gradient_legend_ui(ui, "entropy", "0", "4+ nats", heat_color);
        let n = self.generation.len();
        let height = ui.available_height() - 8.0;
        ui.columns(n, |cols| {
            for (i, (col, slot)) in cols.iter_mut().zip(&mut self.generation).enumerate() {
                col.push_id(("generation", i), |ui| {
                    let spec = settings.specs.get(i).cloned().unwrap_or_default();
                    ui.label(
                        RichText::new(format!(
                            "[{}] {}",
                            i + 1,
                            label_of(self.catalog.as_ref(), &spec)
                        ))
                        .strong()
                        .color(slot_color(i)),
                    );
                    let mean = if slot.tokens.is_empty() {
                        f32::NAN
                    } else {
                        slot.tokens.iter().map(|t| t.entropy_nats).sum::<f32>()
                            / slot.tokens.len() as f32
                    };
                    let status = if let Some(e) = &slot.error {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                        None
                    } else if slot.opening {
                        Some("opening the model…".to_string())
                    } else {
                        Some(format!(
                            "{} token{} · mean entropy {}{}",
                            slot.tokens.len(),
                            if slot.tokens.len() == 1 { "" } else { "s" },
                            if mean.is_finite() {
                                format!("{mean:.2} nats")
                            } else {
                                "–".into()
                            },
                            if slot.done { "" } else { " · generating" }
                        ))
                    };
                    if let Some(s) = status {
                        ui.label(RichText::new(s).weak());
                    }
                    let stale = slot
                        .view
                        .as_ref()
                        .is_none_or(|(len, _)| *len != slot.tokens.len());
                    if stale {
                        let tokens = slot
                            .tokens
                            .iter()
                            .map(|t| ViewToken {
                                rank: RankBucket::of(t.id, &t.alternatives),
                                token: t.clone(),
                                marks: Marks::default(),
                            })
                            .collect();
                        slot.view = Some((slot.tokens.len(), TokenView::new(tokens, 0.0)));
                    }
                    if let Some((_, view)) = &mut slot.view {
                        view.ui(ui, Colouring::Entropy, 4.0, height.max(120.0));
                    }
                });
            }
        });
    }

    fn score_ui(&mut self, ui: &mut egui::Ui, ctx: &AppContext, settings: &mut CompareSettings) {
        ui.horizontal(|ui| {
            ui.label("Prompt");
            ui.label(
                RichText::new(
                    "fed to each checkpoint as its run saw prompts, not scored; may be empty",
                )
                .weak(),
            );
        });
        ui.add(
            egui::TextEdit::multiline(&mut settings.score_prompt)
                .desired_rows(1)
                .desired_width(f32::INFINITY),
        );
        ui.label("Text to score");
        ui.add(
            egui::TextEdit::multiline(&mut settings.score_text)
                .desired_rows(3)
                .desired_width(f32::INFINITY)
                .hint_text("Type a text, or press \"Score in Compare\" on a rollout in Traces"),
        );
        let busy = self.running.is_some_and(|r| r.1 == Running::Score);
        let soon = std::mem::take(&mut self.score_soon);
        ui.horizontal(|ui| {
            ui.label("forking share ρ");
            ui.add(
                egui::DragValue::new(&mut settings.rho)
                    .range(0.01..=1.0)
                    .speed(0.01),
            )
            .on_hover_text("Each checkpoint's forking tokens are its top ρ of the text by entropy");
            if busy {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
                ui.spinner();
            } else if ui
                .add_enabled(!settings.score_text.is_empty(), egui::Button::new("Score"))
                .on_hover_text("Teacher-forced: one forward pass per checkpoint")
                .clicked()
                || (soon && !settings.score_text.is_empty())
            {
                let prompt = settings.score_prompt.trim();
                let job = Job::Score {
                    specs: settings.specs.clone(),
                    prompt: (!prompt.is_empty()).then(|| settings.score_prompt.clone()),
                    chat: settings.chat,
                    text: settings.score_text.clone(),
                    rho: settings.rho,
                };
                self.start(ctx, ui.ctx(), Running::Score, job);
            }
        });
        if let Some(e) = &self.score_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        ui.separator();
        let Some(shown) = &mut self.scored else {
            empty_ui(
                ui,
                "Score a text to see, token by token, how differently the checkpoints predict it.",
            );
            return;
        };
        let n = shown.specs.len();
        let before = (settings.score_colouring, settings.score_slot);
        ui.horizontal_wrapped(|ui| {
            ui.label("colour by");
            for c in ScoreColouring::ALL {
                if ui
                    .selectable_label(settings.score_colouring == c, c.label())
                    .clicked()
                    && settings.score_colouring != c
                {
                    settings.score_colouring = c;
                    settings.score_scale = c.default_scale();
                }
            }
            if settings.score_colouring != ScoreColouring::Kl {
                ui.label("of");
                let first = usize::from(settings.score_colouring == ScoreColouring::DeltaLogProb);
                for k in first..n {
                    ui.selectable_value(&mut settings.score_slot, k, format!("[{}]", k + 1));
                }
            }
            ui.label("scale");
            ui.add(
                egui::DragValue::new(&mut settings.score_scale)
                    .range(0.01..=50.0)
                    .speed(0.02),
            );
        });
        settings.score_slot = settings.score_slot.min(n - 1);
        if settings.score_colouring == ScoreColouring::DeltaLogProb && settings.score_slot == 0 {
            settings.score_slot = 1;
        }
        if before != (settings.score_colouring, settings.score_slot) || shown.key != before {
            shown.rebuild(settings);
        }
        let scale = format!("{:.2}", settings.score_scale);
        match settings.score_colouring {
            ScoreColouring::DeltaLogProb => gradient_legend_ui(
                ui,
                &format!("log p[{}] − log p[1]", settings.score_slot + 1),
                &format!("−{scale}"),
                &format!("+{scale}"),
                |t| advantage_color(2.0 * t - 1.0),
            ),
            ScoreColouring::Kl => gradient_legend_ui(
                ui,
                "KL([1] || [2])",
                "0",
                &format!("{scale}+ nats"),
                heat_color,
            ),
            ScoreColouring::Entropy => {
                gradient_legend_ui(ui, "entropy", "0", &format!("{scale}+ nats"), heat_color)
            }
            ScoreColouring::LogProb => {
                gradient_legend_ui(ui, "−log p", "0", &format!("{scale}+"), heat_color)
            }
        }
        let shares: Vec<String> = shown
            .scored
            .forking
            .shared_with_first
            .iter()
            .enumerate()
            .skip(1)
            .map(|(k, s)| {
                format!(
                    "[{}] {}",
                    k + 1,
                    s.map_or("–".into(), |s| format!("{:.0} %", s * 100.0))
                )
            })
            .collect();
        ui.label(format!(
            "Forking tokens (top {:.0} % by entropy; outlined: [{}]'s) of [1] that each shares: {}",
            settings.rho * 100.0,
            settings.score_slot + 1,
            shares.join(" · ")
        ));
        let height = ui.available_height();
        ui.horizontal_top(|ui| {
            // The disagreement table: token, position, KL and a log-prob per checkpoint.
            let table = 190.0 + 56.0 * n as f32;
            let width = (ui.available_width() - table).max(200.0);
            ui.allocate_ui_with_layout(
                egui::vec2(width, height),
                egui::Layout::top_down(egui::Align::Min),
                |ui| {
                    shown
                        .view
                        .ui(ui, Colouring::Entropy, settings.score_scale, height - 8.0);
                },
            );
            ui.separator();
            ui.vertical(|ui| {
                ui.label(RichText::new("Where [1] and [2] disagree most").strong());
                egui::ScrollArea::vertical()
                    .id_salt("compare_disagreements")
                    .max_height(height - 30.0)
                    .show(ui, |ui| {
                        egui::Grid::new("compare_disagreements_grid")
                            .striped(true)
                            .num_columns(3 + n)
                            .show(ui, |ui| {
                                ui.label(RichText::new("token").weak());
                                ui.label(RichText::new("pos").weak());
                                ui.label(RichText::new("KL").weak());
                                for k in 0..n {
                                    ui.label(RichText::new(format!("lp[{}]", k + 1)).weak());
                                }
                                ui.end_row();
                                for &i in shown.ranked.iter().take(25) {
                                    let t = &shown.scored.tokens[i];
                                    let text =
                                        shown.scored.texts.get(&t.id).cloned().unwrap_or_default();
                                    ui.label(
                                        RichText::new(drawable(ui, &format!("{text:?}")))
                                            .monospace(),
                                    );
                                    ui.label(i.to_string());
                                    ui.label(format!("{:.4}", t.kl.unwrap_or(0.0)));
                                    for lp in &t.logprob {
                                        ui.label(lp.map_or("–".into(), |v| format!("{v:.2}")));
                                    }
                                    ui.end_row();
                                }
                            });
                    });
            });
        });
    }

    fn evaluate_ui(&mut self, ui: &mut egui::Ui, ctx: &AppContext, settings: &mut CompareSettings) {
        let busy = self.running.is_some_and(|r| r.1 == Running::Evaluate);
        ui.horizontal_wrapped(|ui| {
            ui.label("problems");
            ui.selectable_value(
                &mut settings.eval_source,
                EvalSourceKind::Builtin,
                "built-in task",
            );
            ui.selectable_value(
                &mut settings.eval_source,
                EvalSourceKind::File,
                "dataset file",
            );
            match settings.eval_source {
                EvalSourceKind::Builtin => {
                    let name = ui.label("task");
                    egui::ComboBox::from_id_salt("compare_eval_task")
                        .selected_text(settings.eval_task.clone())
                        .show_ui(ui, |ui| {
                            for task in BuiltinTask::ALL {
                                ui.selectable_value(
                                    &mut settings.eval_task,
                                    task.name().to_string(),
                                    task.name(),
                                );
                            }
                        })
                        .response
                        .labelled_by(name.id);
                }
                EvalSourceKind::File => {
                    ui.add(
                        egui::TextEdit::singleline(&mut settings.eval_file)
                            .hint_text("a JSONL/JSON/CSV/Parquet file with an answer column")
                            .desired_width(320.0),
                    );
                }
            }
            ui.label("count");
            ui.add(egui::DragValue::new(&mut settings.eval_count).range(1..=100_000));
            if busy {
                if ui.button("Cancel").clicked() {
                    self.cancel();
                }
            } else {
                let ready = !settings.specs.is_empty()
                    && (settings.eval_source == EvalSourceKind::Builtin
                        || !settings.eval_file.trim().is_empty());
                if ui
                    .add_enabled(
                        ready,
                        egui::Button::new(format!("Evaluate the {} picked", settings.specs.len())),
                    )
                    .on_hover_text(
                        "Greedy answers, checked by the task's verifier or the answer column; a \
                         built-in task draws the held-out problems of the first checkpoint's run \
                         for all; \
                         stored in the workspace (studio eval --list)",
                    )
                    .clicked()
                {
                    let data = match settings.eval_source {
                        EvalSourceKind::Builtin => EvalData::Builtin(settings.eval_task.clone()),
                        EvalSourceKind::File => EvalData::File(settings.eval_file.trim().into()),
                    };
                    self.evals = settings.specs.iter().map(|_| (None, None)).collect();
                    let job = Job::Evaluate {
                        specs: settings.specs.clone(),
                        data,
                        count: settings.eval_count,
                    };
                    self.start(ctx, ui.ctx(), Running::Evaluate, job);
                }
            }
        });
        // Progress of the evaluation started here.
        for (i, (progress, result)) in self.evals.iter().enumerate() {
            let spec = settings.specs.get(i).cloned().unwrap_or_default();
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new(format!(
                        "[{}] {}",
                        i + 1,
                        label_of(self.catalog.as_ref(), &spec)
                    ))
                    .color(slot_color(i)),
                );
                match (result, progress) {
                    (Some(Ok(r)), _) => {
                        ui.label(format!(
                            "accuracy {:.1} % ({} problems) · evaluation {}",
                            r.summary.accuracy * 100.0,
                            r.summary.count,
                            r.id
                        ));
                    }
                    (Some(Err(e)), _) => {
                        ui.colored_label(ui.visuals().error_fg_color, e);
                    }
                    (None, Some(EvalProgress::Opening { total })) => {
                        ui.spinner();
                        ui.label(format!("opening the model for {total} problems…"));
                    }
                    (None, Some(EvalProgress::Answering { answered, total })) => {
                        ui.add(
                            egui::ProgressBar::new(*answered as f32 / (*total).max(1) as f32)
                                .desired_width(260.0)
                                .text(format!("{answered}/{total} answered")),
                        );
                    }
                    (None, None) => {
                        ui.label(RichText::new(if busy { "waiting" } else { "not run" }).weak());
                    }
                }
            });
        }
        ui.separator();
        let Some(catalog) = &self.catalog else {
            ui.spinner();
            return;
        };
        let picked: Vec<&EvaluationRecord> = catalog
            .evaluations
            .iter()
            .filter(|e| settings.eval_all || slot_of(settings, e).is_some())
            .collect();
        ui.horizontal(|ui| {
            ui.label(RichText::new("Accuracy per checkpoint").strong());
            ui.checkbox(&mut settings.eval_all, "every stored evaluation");
        });
        if picked.is_empty() {
            empty_ui(
                ui,
                "No stored evaluation of these checkpoints yet: evaluate them above (or with \
                 studio eval).",
            );
            return;
        }
        // The newest accuracy of each checkpoint per problem set.
        let mut by_set: BTreeMap<String, HashMap<usize, &EvaluationRecord>> = BTreeMap::new();
        for e in &picked {
            if let Some(slot) = slot_of(settings, e) {
                by_set
                    .entry(problem_set(&e.summary))
                    .or_default()
                    .insert(slot, e);
            }
        }
        if !by_set.is_empty() {
            egui::Grid::new("compare_accuracy")
                .striped(true)
                .num_columns(1 + settings.specs.len())
                .show(ui, |ui| {
                    ui.label(RichText::new("problems").weak());
                    for i in 0..settings.specs.len() {
                        ui.label(RichText::new(format!("[{}]", i + 1)).color(slot_color(i)));
                    }
                    ui.end_row();
                    for (set, slots) in &by_set {
                        ui.label(drawable(ui, set));
                        for i in 0..settings.specs.len() {
                            match slots.get(&i) {
                                Some(e) => ui.label(format!(
                                    "{:.1} % of {}",
                                    e.summary.accuracy * 100.0,
                                    e.summary.count
                                )),
                                None => ui.label(RichText::new("–").weak()),
                            };
                        }
                        ui.end_row();
                    }
                });
        }
        ui.add_space(6.0);
        ui.label(
            RichText::new(
                "Stored evaluations: pick A and B of the same problems to list what flipped",
            )
            .strong(),
        );
        let mut ask = None;
        egui::ScrollArea::vertical()
            .id_salt("compare_evaluations")
            .max_height(160.0)
            .show(ui, |ui| {
                egui::Grid::new("compare_evaluations_grid")
                    .striped(true)
                    .num_columns(7)
                    .show(ui, |ui| {
                        for h in ["", "", "id", "model", "problems", "accuracy", "when"] {
                            ui.label(RichText::new(h).weak());
                        }
                        ui.end_row();
                        for e in picked.iter().rev() {
                            let a = ui.selectable_label(self.flip_a == Some(e.id), "A");
                            if a.clicked() {
                                self.flip_a = Some(e.id);
                                ask = Some(());
                            }
                            let b = ui.selectable_label(self.flip_b == Some(e.id), "B");
                            if b.clicked() {
                                self.flip_b = Some(e.id);
                                ask = Some(());
                            }
                            ui.label(e.id.to_string());
                            let model = match slot_of(settings, e) {
                                Some(i) => RichText::new(format!(
                                    "[{}] {}",
                                    i + 1,
                                    evaluated_model(&e.summary)
                                ))
                                .color(slot_color(i)),
                                None => RichText::new(evaluated_model(&e.summary)),
                            };
                            ui.label(model);
                            ui.label(drawable(ui, &problem_set(&e.summary)));
                            ui.label(format!(
                                "{:.1} % of {}",
                                e.summary.accuracy * 100.0,
                                e.summary.count
                            ));
                            ui.label(RichText::new(&e.created_at).weak());
                            ui.end_row();
                        }
                    });
            });
        if ask.is_some() {
            self.flipped = None;
            self.flip_shown = None;
        }
        let (Some(a), Some(b)) = (self.flip_a, self.flip_b) else {
            return;
        };
        if a == b {
            ui.label(RichText::new("A and B are the same evaluation").weak());
            return;
        }
        let have = self
            .flipped
            .as_ref()
            .is_some_and(|(pair, _)| *pair == (a, b));
        if !have
            && self.flipped_pending != Some((a, b))
            && let Some(w) = &self.workers
            && w.ask(StoreRequest::Flipped { a, b })
        {
            self.flipped_pending = Some((a, b));
        }
        ui.separator();
        match &self.flipped {
            Some((pair, Ok(pair_data))) if *pair == (a, b) => {
                let chosen = flipped_ui(ui, pair_data, self.flip_shown.as_ref().map(|s| s.items));
                if let Some(items) = chosen {
                    self.flip_shown = Some(FlipShown::new(pair_data, items));
                }
                if let Some(shown) = &mut self.flip_shown {
                    shown.ui(ui, pair_data);
                }
            }
            Some((pair, Err(e))) if *pair == (a, b) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
            _ => {
                ui.spinner();
            }
        }
    }

    fn curves_ui(
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

impl ScoredShown {
    fn new(scored: Scored, settings: &CompareSettings) -> Self {
        let mut ranked: Vec<usize> = (0..scored.tokens.len())
            .filter(|&i| scored.tokens[i].kl.is_some())
            .collect();
        ranked.sort_by(|&a, &b| {
            let kl = |i: usize| scored.tokens[i].kl.unwrap_or(0.0);
            kl(b).total_cmp(&kl(a))
        });
        let specs = settings.specs.clone();
        let mut shown = Self {
            scored,
            specs,
            key: (settings.score_colouring, settings.score_slot),
            view: TokenView::new(Vec::new(), 0.0),
            ranked,
        };
        shown.rebuild(settings);
        shown
    }

    fn rebuild(&mut self, settings: &CompareSettings) {
        let n = self.specs.len();
        let slot = settings.score_slot.min(n.saturating_sub(1));
        let s = &self.scored;
        let forking: BTreeSet<usize> = s
            .forking
            .positions
            .get(slot)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default();
        let mut values = Vec::with_capacity(s.tokens.len());
        let mut notes = Vec::with_capacity(s.tokens.len());
        let tokens = s
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let lp = |k: usize| t.logprob.get(k).copied().flatten();
                let h = |k: usize| t.entropy.get(k).copied().flatten();
                values.push(match settings.score_colouring {
                    ScoreColouring::DeltaLogProb => lp(slot).zip(lp(0)).map_or(0.0, |(b, a)| b - a),
                    ScoreColouring::Kl => t.kl.unwrap_or(0.0) as f32,
                    ScoreColouring::Entropy => h(slot).unwrap_or(0.0),
                    ScoreColouring::LogProb => -lp(slot).unwrap_or(0.0),
                });
                let mut note = String::new();
                for k in 0..n {
                    note.push_str(&format!(
                        "[{}] log-prob {}  entropy {}\n",
                        k + 1,
                        lp(k).map_or("–".into(), |v| format!("{v:8.4}")),
                        h(k).map_or("–".into(), |v| format!("{v:.3}")),
                    ));
                }
                for k in 1..n {
                    if let (Some(b), Some(a)) = (lp(k), lp(0)) {
                        note.push_str(&format!("Δ[{}]−[1] {:+.4}\n", k + 1, b - a));
                    }
                }
                note.push_str(&format!(
                    "KL([1] || [2]) {}",
                    t.kl.map_or("–".into(), |v| format!("{v:.5} nats"))
                ));
                notes.push(note);
                ViewToken {
                    token: HeatmapToken {
                        id: t.id,
                        text: s.texts.get(&t.id).cloned().unwrap_or_default(),
                        logprob: lp(slot).unwrap_or(0.0),
                        entropy_nats: h(slot).unwrap_or(0.0),
                        alternatives: Vec::new(),
                    },
                    rank: RankBucket::Below,
                    marks: Marks {
                        forking: forking.contains(&i),
                        ..Marks::default()
                    },
                }
            })
            .collect();
        let diverging = settings.score_colouring == ScoreColouring::DeltaLogProb;
        self.view = TokenView::new(tokens, 0.0)
            .with_values(values, diverging)
            .with_notes(notes);
        self.key = (settings.score_colouring, settings.score_slot);
    }
}

impl FlipShown {
    fn new(pair: &FlippedPair, items: (usize, usize)) -> Self {
        let view = |side: usize, index: usize| {
            let list = if side == 0 {
                &pair.compared.a.1
            } else {
                &pair.compared.b.1
            };
            let tokens = list
                .get(index)
                .map(|item| view_tokens(&item.tokens, &pair.texts[side], &[], &[]))
                .unwrap_or_default()
                .into_iter()
                .map(|mut t| {
                    // An evaluation answer was never trained on: its loss masks mean nothing.
                    t.marks.counted = true;
                    t.marks.trained = true;
                    t
                })
                .collect();
            TokenView::new(tokens, 0.0)
        };
        Self {
            items,
            views: [view(0, items.0), view(1, items.1)],
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, pair: &FlippedPair) {
        let (a, b) = (&pair.compared.a, &pair.compared.b);
        let Some(item) = a.1.get(self.items.0) else {
            return;
        };
        ui.separator();
        ui.label(RichText::new(format!("Problem {} of {}", item.index + 1, a.1.len())).strong());
        ui.label(drawable(ui, &item.prompt));
        if let Some(answer) = &item.answer {
            ui.label(RichText::new(format!("expected: {}", drawable(ui, answer))).weak());
        }
        gradient_legend_ui(ui, "entropy", "0", "4+ nats", heat_color);
        let height = ui.available_height() - 8.0;
        ui.columns(2, |cols| {
            for (side, col) in cols.iter_mut().enumerate() {
                let (record, items, index) = if side == 0 {
                    (&a.0, &a.1, self.items.0)
                } else {
                    (&b.0, &b.1, self.items.1)
                };
                let Some(item) = items.get(index) else {
                    continue;
                };
                col.push_id(("flip", side), |ui| {
                    ui.label(
                        RichText::new(format!(
                            "{} · evaluation {} · {}",
                            if side == 0 { "A" } else { "B" },
                            record.id,
                            evaluated_model(&record.summary)
                        ))
                        .strong(),
                    );
                    let (text, color) = if item.correct {
                        ("right", Color32::from_rgb(60, 170, 90))
                    } else {
                        ("wrong", Color32::from_rgb(220, 80, 60))
                    };
                    ui.colored_label(
                        color,
                        format!(
                            "{text} · finish: {} · {} tokens",
                            item.finish_reason,
                            item.tokens.len()
                        ),
                    );
                    self.views[side].ui(ui, Colouring::Entropy, 4.0, height.max(120.0));
                });
            }
        });
    }
}

/// The flipped lists; returns the problem clicked, as (A's item, B's item).
fn flipped_ui(
    ui: &mut egui::Ui,
    pair: &FlippedPair,
    shown: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let f = &pair.compared.flipped;
    let a = &pair.compared.a.1;
    let mut chosen = None;
    ui.label(
        RichText::new(format!(
            "Flipped from A (evaluation {}) to B (evaluation {}): {} right to wrong, {} wrong to right",
            pair.compared.a.0.id,
            pair.compared.b.0.id,
            f.right_to_wrong.len(),
            f.wrong_to_right.len()
        ))
        .strong(),
    );
    if !f.only_in_a.is_empty() || !f.only_in_b.is_empty() {
        ui.label(
            RichText::new(format!(
                "{} problems only in A and {} only in B are left out",
                f.only_in_a.len(),
                f.only_in_b.len()
            ))
            .weak(),
        );
    }
    ui.columns(2, |cols| {
        for (col, (title, list)) in cols.iter_mut().zip([
            ("right to wrong", &f.right_to_wrong),
            ("wrong to right", &f.wrong_to_right),
        ]) {
            col.push_id(title, |ui| {
                ui.label(RichText::new(format!("{title} ({})", list.len())).strong());
                egui::ScrollArea::vertical()
                    .max_height(120.0)
                    .show(ui, |ui| {
                        if list.is_empty() {
                            ui.label(RichText::new("none").weak());
                        }
                        for &(ia, ib) in list.iter() {
                            let prompt = a.get(ia).map(|i| i.prompt.as_str()).unwrap_or("");
                            let text: String = one_line(prompt).chars().take(90).collect();
                            if ui
                                .selectable_label(
                                    shown == Some((ia, ib)),
                                    format!("problem {}: {}", ia + 1, drawable(ui, &text)),
                                )
                                .on_hover_text("Open both completions side by side")
                                .clicked()
                            {
                                chosen = Some((ia, ib));
                            }
                        }
                    });
            });
        }
    });
    chosen
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

/// The slot of the picked checkpoints an evaluation is of.
fn slot_of(settings: &CompareSettings, e: &EvaluationRecord) -> Option<usize> {
    settings
        .specs
        .iter()
        .position(|spec| match ModelSpec::parse(spec) {
            ModelSpec::Checkpoint(CheckpointRef::Id(id)) => e.summary.checkpoint_id == Some(id),
            ModelSpec::Checkpoint(CheckpointRef::RunStep { run, step }) => {
                e.summary.run_id == Some(run) && e.summary.step == Some(step)
            }
            ModelSpec::Model(m) => e.summary.checkpoint_id.is_none() && e.summary.model == m,
        })
}

/// The run and step of a checkpoint spec, from the catalog.
fn run_step(catalog: Option<&Catalog>, spec: &str) -> Option<(RunId, u64)> {
    match ModelSpec::parse(spec) {
        ModelSpec::Checkpoint(CheckpointRef::RunStep { run, step }) => Some((run, step)),
        ModelSpec::Checkpoint(at) => {
            find_checkpoint(catalog?, at).map(|c| (c.record.run_id, c.record.step))
        }
        ModelSpec::Model(_) => None,
    }
}

/// The checkpoint `at` names, among the catalog's.
fn find_checkpoint(catalog: &Catalog, at: CheckpointRef) -> Option<&worker::CheckpointChoice> {
    catalog.checkpoints.iter().find(|ch| match at {
        CheckpointRef::Id(id) => ch.record.id == id,
        CheckpointRef::RunStep { run, step } => ch.record.run_id == run && ch.record.step == step,
    })
}

fn label_of(catalog: Option<&Catalog>, spec: &str) -> String {
    if let ModelSpec::Checkpoint(r) = ModelSpec::parse(spec) {
        let found = catalog.and_then(|c| find_checkpoint(c, r));
        return match found {
            Some(ch) => format!(
                "#{} {} · step {}",
                ch.record.run_id, ch.run_name, ch.record.step
            ),
            None => format!("checkpoint {spec}"),
        };
    }
    std::path::Path::new(spec)
        .file_name()
        .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The colour of slot `i`'s label, the same in every tab.
pub fn slot_color(i: usize) -> Color32 {
    const COLORS: [Color32; MAX_CHECKPOINTS] = [
        Color32::from_rgb(90, 160, 240),
        Color32::from_rgb(240, 150, 60),
        Color32::from_rgb(120, 200, 110),
        Color32::from_rgb(210, 110, 200),
    ];
    COLORS[i % MAX_CHECKPOINTS]
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::store::{CheckpointRecord, EvaluationSummary};

    fn summary(
        checkpoint: Option<i64>,
        run: Option<i64>,
        step: Option<u64>,
        model: &str,
    ) -> EvaluationRecord {
        EvaluationRecord {
            id: 1,
            summary: EvaluationSummary {
                checkpoint_id: checkpoint,
                run_id: run,
                step,
                model: model.into(),
                source: "builtin:arithmetic".into(),
                difficulty: Some(1),
                seed: Some(0),
                count: 4,
                chat: false,
                max_new_tokens: 16,
                accuracy: 0.5,
            },
            created_at: String::new(),
        }
    }

    #[test]
    fn evaluations_belong_to_the_slot_that_names_their_checkpoint_or_model() {
        let settings = CompareSettings {
            specs: vec!["7".into(), "2:40".into(), "builtin:tiny-reasoner".into()],
            ..CompareSettings::default()
        };
        assert_eq!(
            slot_of(&settings, &summary(Some(7), Some(1), Some(10), "m")),
            Some(0)
        );
        assert_eq!(
            slot_of(&settings, &summary(Some(9), Some(2), Some(40), "m")),
            Some(1)
        );
        assert_eq!(
            slot_of(
                &settings,
                &summary(None, None, None, "builtin:tiny-reasoner")
            ),
            Some(2)
        );
        // A checkpoint of the same model is not the model itself.
        assert_eq!(
            slot_of(
                &settings,
                &summary(Some(3), Some(5), Some(1), "builtin:tiny-reasoner")
            ),
            None
        );
    }

    #[test]
    fn labels_name_the_run_and_step_of_a_checkpoint() {
        let catalog = Catalog {
            checkpoints: vec![worker::CheckpointChoice {
                record: CheckpointRecord {
                    id: 7,
                    run_id: 3,
                    step: 40,
                    path: "/x".into(),
                    kind: "lora".into(),
                    created_at: String::new(),
                },
                run_name: "grpo-arith".into(),
            }],
            evaluations: Vec::new(),
        };
        assert_eq!(label_of(Some(&catalog), "7"), "#3 grpo-arith · step 40");
        assert_eq!(label_of(Some(&catalog), "3:40"), "#3 grpo-arith · step 40");
        assert_eq!(label_of(Some(&catalog), "8"), "checkpoint 8");
        assert_eq!(label_of(None, "/models/a/m.gguf"), "m.gguf");
        assert_eq!(run_step(Some(&catalog), "7"), Some((3, 40)));
        assert_eq!(run_step(Some(&catalog), "builtin:tiny-reasoner"), None);
    }
}
