//! The Compare view's two threads, so its frame never waits on SQLite or a model:
//!
//! - `studio-compare-store` reads the workspace: the checkpoints and stored evaluations the
//!   pickers list, and two evaluations' flipped problems with their token texts.
//! - `studio-compare-models` owns the opened checkpoints (kept while they stay picked) and runs
//!   the long work one job at a time: seeded generation, teacher-forced scoring, evaluations.
//!   Jobs are cancelled by id; every event names its job, so a late one is dropped.
//!
//! Both are [`crate::jobs::Worker`]s (bounded channels, a panic turned into a message) reading
//! the window's shared workspace connection.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use engine::analysis::ForkingOverlap;
use engine::data::Example;
use engine::infer::{ComparedToken, GenerateRequest, SamplingConfig, generate};
use engine::store::{
    CheckpointRecord, EvaluationId, EvaluationRecord, RunId, TraceToken, Workspace,
};
use engine::text::tokenizer::TextTokenizer;
use engine::train::checkpoint::{ModelSpec, OpenedModel, open_model_spec};
use engine::train::evaluation::{
    ComparedEvaluations, EvalData, EvalOptions, EvalProgress, compare_evaluations, evaluate_with,
};

use crate::jobs::{Gone, Outbox, Worker};
use crate::widgets::token_heatmap::HeatmapToken;
use crate::workspace_service::SharedWorkspace;

/// Alternatives kept per generated token (the hover card lists them).
const TOP_ALTERNATIVES: usize = 5;

/// A checkpoint the pickers offer, with its run's name.
#[derive(Debug, Clone)]
pub struct CheckpointChoice {
    pub record: CheckpointRecord,
    pub run_name: String,
}

/// What the workspace holds for the pickers and the evaluation table.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Every run's checkpoints, newest run first, by step.
    pub checkpoints: Vec<CheckpointChoice>,
    /// Every stored evaluation, oldest first.
    pub evaluations: Vec<EvaluationRecord>,
}

/// Two evaluations' flipped problems, with the token texts of each side's tokenizer.
pub struct FlippedPair {
    pub compared: ComparedEvaluations,
    pub texts: [HashMap<u32, String>; 2],
}

pub(super) enum StoreRequest {
    Catalog,
    Flipped { a: EvaluationId, b: EvaluationId },
}

pub(super) enum StoreReply {
    Catalog(Result<Catalog, String>),
    Flipped {
        pair: (EvaluationId, EvaluationId),
        result: Result<Box<FlippedPair>, String>,
    },
}

/// Long work for the models thread.
#[derive(Debug, Clone)]
pub(super) enum Job {
    /// The same prompt, the same seed, under each model.
    Generate {
        specs: Vec<String>,
        prompt: String,
        /// Through the chat template for a model path (a checkpoint follows its run's setting).
        chat: bool,
        max_new_tokens: usize,
        sampling: SamplingConfig,
    },
    /// One text teacher-forced under every model (the first's tokenizer), after an optional
    /// prompt that is fed but not shown.
    Score {
        specs: Vec<String>,
        prompt: Option<String>,
        /// Through the chat template for a model (a checkpoint follows its run's setting).
        chat: bool,
        text: String,
        rho: f64,
    },
    /// Each model on the same problems, stored.
    Evaluate {
        specs: Vec<String>,
        data: EvalData,
        count: usize,
    },
}

/// A text scored under several models.
#[derive(Debug, Clone)]
pub struct Scored {
    pub names: Vec<String>,
    /// The scored tokens (the prompt's left out); each token's statistics from `compare`.
    pub tokens: Vec<ComparedToken>,
    /// Each token id's text (the first model's tokenizer).
    pub texts: HashMap<u32, String>,
    /// Forking tokens (top-ρ by entropy) under each model, positions into `tokens`.
    pub forking: ForkingOverlap,
}

#[derive(Debug, Clone)]
pub(super) enum Event {
    /// Slot `slot`'s model is being opened.
    Opening { job: u64, slot: usize },
    /// A generated token of slot `slot`.
    Token {
        job: u64,
        slot: usize,
        token: HeatmapToken,
    },
    /// Slot `slot`'s generation ended (with its model's name), or failed.
    Generated {
        job: u64,
        slot: usize,
        result: Result<String, String>,
    },
    Scored {
        job: u64,
        result: Result<Box<Scored>, String>,
    },
    EvalProgress {
        job: u64,
        slot: usize,
        progress: EvalProgress,
    },
    Evaluated {
        job: u64,
        slot: usize,
        result: Result<EvaluationRecord, String>,
    },
    /// The job failed as a whole (an internal error).
    Failed { job: u64, message: String },
    /// The job is over (done, failed or cancelled).
    Done { job: u64 },
}

/// The UI's handles on both threads.
pub(super) struct Workers {
    store: Worker<StoreRequest, StoreReply>,
    models: Worker<(u64, Job), Event>,
}

impl Workers {
    pub fn spawn(workspace: SharedWorkspace, repaint: &egui::Context) -> std::io::Result<Self> {
        let shared = workspace.clone();
        let store = Worker::spawn(
            "studio-compare-store",
            repaint,
            (16, 16),
            move || StoreThread {
                workspace: shared,
                tokenizers: HashMap::new(),
            },
            |state, request, out| out.send(state.handle(request)),
            |request, message| {
                vec![match request {
                    StoreRequest::Catalog => StoreReply::Catalog(Err(message)),
                    StoreRequest::Flipped { a, b } => StoreReply::Flipped {
                        pair: (*a, *b),
                        result: Err(message),
                    },
                }]
            },
        )?;
        let models = Worker::spawn(
            "studio-compare-models",
            repaint,
            (8, 256),
            move || ModelsThread {
                workspace,
                opened: HashMap::new(),
            },
            |models, (id, job), out| {
                models.handle(*id, job, out)?;
                out.send(Event::Done { job: *id })
            },
            |(id, _), message| {
                vec![
                    Event::Failed { job: *id, message },
                    Event::Done { job: *id },
                ]
            },
        )?;
        Ok(Self { store, models })
    }

    pub fn ask(&self, request: StoreRequest) -> bool {
        self.store.send(request).is_ok()
    }

    pub fn start(&self, id: u64, job: Job) -> bool {
        self.models.send((id, job)).is_ok()
    }

    /// Cancels every job up to `id`.
    pub fn cancel(&self, id: u64) {
        self.models.cancel_through(id);
    }

    pub fn replies(&self) -> Vec<StoreReply> {
        self.store
            .drain(Duration::from_millis(4))
            .unwrap_or_default()
    }

    /// Events so far; `Err` when the models thread has ended.
    pub fn events(&self) -> Result<Vec<Event>, String> {
        self.models
            .drain(Duration::from_millis(4))
            .map_err(|_| "the comparison thread has stopped; reopen the view".to_string())
    }
}

/// The store thread's state: the shared connection and the tokenizers opened so far.
struct StoreThread {
    workspace: SharedWorkspace,
    tokenizers: HashMap<String, Arc<TextTokenizer>>,
}

impl StoreThread {
    fn handle(&mut self, request: &StoreRequest) -> StoreReply {
        let ws = self.workspace.get();
        match *request {
            StoreRequest::Catalog => StoreReply::Catalog(ws.and_then(|ws| catalog(&ws))),
            StoreRequest::Flipped { a, b } => StoreReply::Flipped {
                pair: (a, b),
                result: ws
                    .and_then(|ws| flipped_pair(&ws, &mut self.tokenizers, a, b))
                    .map(Box::new),
            },
        }
    }
}

fn catalog(ws: &Workspace) -> Result<Catalog, String> {
    let runs = ws.runs().map_err(|e| e.to_string())?;
    let mut checkpoints = Vec::new();
    for run in &runs {
        for record in ws.checkpoints(run.id).map_err(|e| e.to_string())? {
            checkpoints.push(CheckpointChoice {
                record,
                run_name: run.name.clone(),
            });
        }
    }
    checkpoints.sort_by(|a, b| {
        b.record
            .run_id
            .cmp(&a.record.run_id)
            .then(a.record.step.cmp(&b.record.step))
    });
    let evaluations = ws.evaluations(None).map_err(|e| e.to_string())?;
    Ok(Catalog {
        checkpoints,
        evaluations,
    })
}

/// The model an evaluation's tokens come from: its run's model for a checkpoint, else the
/// model it names.
fn evaluation_model(ws: &Workspace, record: &EvaluationRecord) -> Result<String, String> {
    match record.summary.run_id {
        Some(run) => run_model(ws, run),
        None => Ok(record.summary.model.clone()),
    }
}

fn run_model(ws: &Workspace, run: RunId) -> Result<String, String> {
    let record = ws.run(run).map_err(|e| e.to_string())?;
    engine::train::config::RunConfig::from_toml(&record.config_toml, &format!("run {run} config"))
        .map(|c| c.model)
        .map_err(|e| e.to_string())
}

fn flipped_pair(
    ws: &Workspace,
    tokenizers: &mut HashMap<String, Arc<TextTokenizer>>,
    a: EvaluationId,
    b: EvaluationId,
) -> Result<FlippedPair, String> {
    let compared = compare_evaluations(ws, a, b).map_err(|e| e.to_string())?;
    let mut texts: [HashMap<u32, String>; 2] = Default::default();
    for (side, (record, items)) in [&compared.a, &compared.b].into_iter().enumerate() {
        let model = evaluation_model(ws, record)?;
        let tokenizer = match tokenizers.get(&model) {
            Some(t) => t.clone(),
            None => {
                let (t, _) = engine::formats::loader::open_tokenizer(&model).map_err(|e| {
                    format!(
                        "could not open the tokenizer of {model} to show evaluation {}: {e}",
                        record.id
                    )
                })?;
                let t = Arc::new(t);
                tokenizers.insert(model.clone(), t.clone());
                t
            }
        };
        texts[side] = token_texts(&tokenizer, items.iter().flat_map(|i| i.tokens.iter()))?;
    }
    Ok(FlippedPair { compared, texts })
}

/// The text of every token id among `tokens` and their alternatives.
pub(super) fn token_texts<'a>(
    tokenizer: &TextTokenizer,
    tokens: impl Iterator<Item = &'a TraceToken>,
) -> Result<HashMap<u32, String>, String> {
    let mut texts = HashMap::new();
    for t in tokens {
        for id in std::iter::once(t.id).chain(t.top.iter().map(|a| a.0)) {
            if let std::collections::hash_map::Entry::Vacant(slot) = texts.entry(id) {
                slot.insert(tokenizer.token_piece(id).map_err(|e| e.to_string())?);
            }
        }
    }
    Ok(texts)
}

/// `prompt` as `opened` sees it: through the chat template as its run's training did for a
/// checkpoint, as `chat` says for a model.
fn prompt_ids(opened: &OpenedModel, prompt: &str, chat: bool) -> Result<Vec<u32>, String> {
    let chat = opened
        .checkpoint
        .as_ref()
        .map_or(chat, |(_, config)| config.chat_template());
    let example = Example {
        prompt: prompt.to_string(),
        reasoning: None,
        answer: None,
        messages: Vec::new(),
        image: None,
    };
    engine::train::sft::prompt_ids(&opened.loaded.tokenizer, &example, chat)
        .map_err(|e| format!("could not encode the prompt: {e}"))
}

/// The models thread.
struct ModelsThread {
    workspace: SharedWorkspace,
    /// Opened models by spec, kept while a job names them.
    opened: HashMap<String, OpenedModel>,
}

impl ModelsThread {
    fn workspace(&self) -> Result<Arc<Workspace>, String> {
        self.workspace.get()
    }

    /// Opens every spec not open yet (dropping models no longer named).
    fn open(
        &mut self,
        job: u64,
        specs: &[String],
        out: &Outbox<Event>,
    ) -> Result<(), (usize, String)> {
        self.opened.retain(|spec, _| specs.contains(spec));
        for (slot, spec) in specs.iter().enumerate() {
            if self.opened.contains_key(spec) {
                continue;
            }
            let _ = out.send(Event::Opening { job, slot });
            let opened = if ModelSpec::parse(spec).is_checkpoint() {
                let ws = self.workspace().map_err(|e| (slot, e))?;
                open_model_spec(Some(&ws), spec, &engine::backend::Backend::cpu())
            } else {
                open_model_spec(None, spec, &engine::backend::Backend::cpu())
            }
            .map_err(|e| (slot, e.to_string()))?;
            self.opened.insert(spec.clone(), opened);
        }
        Ok(())
    }

    fn handle(&mut self, job: u64, work: &Job, out: &Outbox<Event>) -> Result<(), Gone> {
        if out.cancelled(job) {
            return Ok(());
        }
        match work {
            Job::Generate {
                specs,
                prompt,
                chat,
                max_new_tokens,
                sampling,
            } => {
                if let Err((slot, message)) = self.open(job, specs, out) {
                    return out.send(Event::Generated {
                        job,
                        slot,
                        result: Err(message),
                    });
                }
                for (slot, spec) in specs.iter().enumerate() {
                    if out.cancelled(job) {
                        break;
                    }
                    let result = self.generate(
                        out,
                        job,
                        slot,
                        spec,
                        prompt,
                        *chat,
                        *max_new_tokens,
                        sampling,
                    )?;
                    out.send(Event::Generated { job, slot, result })?;
                }
                Ok(())
            }
            Job::Score {
                specs,
                prompt,
                chat,
                text,
                rho,
            } => {
                let result = match self.open(job, specs, out) {
                    Err((slot, message)) => {
                        Err(format!("[{}] {}: {message}", slot + 1, specs[slot]))
                    }
                    Ok(()) => self.score(specs, prompt.as_deref(), *chat, text, *rho),
                };
                out.send(Event::Scored {
                    job,
                    result: result.map(Box::new),
                })
            }
            Job::Evaluate { specs, data, count } => {
                // The same problems for all: a built-in task's held-out problems of the first
                // checkpoint's run (its seed and difficulty), which a model takes too.
                let mut options = EvalOptions {
                    count: Some(*count),
                    ..EvalOptions::default()
                };
                if matches!(data, EvalData::Builtin(_))
                    && let Some(config) = self.first_run_config(specs)
                {
                    options.seed = Some(config.seed);
                    options.difficulty = Some(config.data.difficulty);
                }
                // An evaluation opens its model itself; the kept ones are not needed.
                for (slot, spec) in specs.iter().enumerate() {
                    if out.cancelled(job) {
                        break;
                    }
                    let result = self.evaluate(out, job, slot, spec, data, &options);
                    out.send(Event::Evaluated { job, slot, result })?;
                }
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn generate(
        &mut self,
        out: &Outbox<Event>,
        job: u64,
        slot: usize,
        spec: &str,
        prompt: &str,
        chat: bool,
        max_new_tokens: usize,
        sampling: &SamplingConfig,
    ) -> Result<Result<String, String>, Gone> {
        let Some(opened) = self.opened.get(spec) else {
            return Ok(Err(format!("{spec} is not open")));
        };
        let loaded = &opened.loaded;
        let ids = match prompt_ids(opened, prompt, chat) {
            Ok(ids) => ids,
            Err(e) => return Ok(Err(e)),
        };
        let request = GenerateRequest {
            prompts: vec![ids],
            max_new_tokens,
            sampling: sampling.clone(),
            stop_token_ids: loaded.model.config.eos_token_ids.clone(),
            top_k_alternatives: TOP_ALTERNATIVES,
        };
        let inference = loaded.model.for_inference();
        let mut failure = None;
        let mut gone = false;
        let result = generate(&inference, &request, |_, token| {
            if out.cancelled(job) {
                return ControlFlow::Break(());
            }
            let shown = crate::worker::heatmap_token(&loaded.tokenizer, token);
            match shown {
                Ok(token) => {
                    if out.send(Event::Token { job, slot, token }).is_err() {
                        gone = true;
                        return ControlFlow::Break(());
                    }
                    ControlFlow::Continue(())
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    ControlFlow::Break(())
                }
            }
        });
        if gone {
            return Err(Gone);
        }
        Ok(match (result, failure) {
            (Err(e), _) => Err(format!("generation failed: {e}")),
            (Ok(_), Some(e)) => Err(format!("could not name a token: {e}")),
            (Ok(_), None) => Ok(loaded.name.clone()),
        })
    }

    fn score(
        &self,
        specs: &[String],
        prompt: Option<&str>,
        chat: bool,
        text: &str,
        rho: f64,
    ) -> Result<Scored, String> {
        let models: Vec<&OpenedModel> = specs
            .iter()
            .map(|s| self.opened.get(s).ok_or_else(|| format!("{s} is not open")))
            .collect::<Result<_, _>>()?;
        let first = &models[0].loaded;
        let tokenizer = &first.tokenizer;
        let (mut ids, prompt_len) = match prompt {
            Some(prompt) => {
                let ids = prompt_ids(models[0], prompt, chat)?;
                let n = ids.len();
                (ids, n)
            }
            None => (Vec::new(), 0),
        };
        let text_ids = tokenizer
            .encode(text, prompt.is_none())
            .map_err(|e| format!("could not encode the text: {e}"))?;
        if text_ids.is_empty() {
            return Err("the text has no tokens; type or pick one".into());
        }
        ids.extend(text_ids);
        let refs: Vec<&engine::models::CausalLm> = models.iter().map(|m| &m.loaded.model).collect();
        let tokens = engine::infer::compare(&refs, &ids).map_err(|e| e.to_string())?;
        let tokens: Vec<ComparedToken> = tokens.into_iter().skip(prompt_len).collect();
        // Forking tokens among those with a prediction (all but a text's first token).
        let offset = usize::from(prompt_len == 0);
        let entropies: Vec<Vec<f32>> = (0..models.len())
            .map(|m| {
                tokens
                    .iter()
                    .skip(offset)
                    .map(|t| t.entropy[m].unwrap_or(0.0))
                    .collect()
            })
            .collect();
        let mut forking = engine::analysis::forking_overlap(&entropies, rho);
        for p in &mut forking.positions {
            for i in p.iter_mut() {
                *i += offset;
            }
        }
        let mut texts = HashMap::new();
        for t in &tokens {
            if let std::collections::hash_map::Entry::Vacant(slot) = texts.entry(t.id) {
                slot.insert(tokenizer.token_piece(t.id).map_err(|e| e.to_string())?);
            }
        }
        Ok(Scored {
            names: models.iter().map(|m| m.loaded.name.clone()).collect(),
            tokens,
            texts,
            forking,
        })
    }

    /// The run config of the first spec that names a checkpoint.
    fn first_run_config(&mut self, specs: &[String]) -> Option<engine::train::RunConfig> {
        let ws = self.workspace().ok()?;
        specs.iter().find_map(|spec| match ModelSpec::parse(spec) {
            ModelSpec::Checkpoint(at) => {
                let record = at.find(&ws).ok()?;
                engine::train::checkpoint::checkpoint_config(&ws, &record).ok()
            }
            ModelSpec::Model(_) => None,
        })
    }

    fn evaluate(
        &mut self,
        out: &Outbox<Event>,
        job: u64,
        slot: usize,
        spec: &str,
        data: &EvalData,
        options: &EvalOptions,
    ) -> Result<EvaluationRecord, String> {
        let ws = self.workspace()?;
        evaluate_with(&ws, spec, data, options, &mut |progress| {
            if out.cancelled(job) {
                return ControlFlow::Break(());
            }
            if out
                .send(Event::EvalProgress {
                    job,
                    slot,
                    progress,
                })
                .is_err()
            {
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .map(|(record, _)| record)
        .map_err(|e| e.to_string())
    }
}
