//! The `studio-traces-loader` thread: reads a run's steps, a step's traces with their token
//! texts (the run's tokenizer), another step's entropies, a prompt's history and the analysis,
//! so the Traces view's frame never waits on SQLite or a tokenizer. A [`crate::jobs::Worker`] on
//! the window's shared workspace connection; a panic answers the request with its message.

use std::collections::HashMap;
use std::sync::Arc;

use engine::analysis::{AnalysisOptions, RunAnalysis};
use engine::store::{PromptPoint, RunId, Trace, TraceKind, Workspace};

use crate::jobs::Worker;
use crate::workspace_service::SharedWorkspace;

/// What the loader is asked.
#[derive(Clone)]
pub(super) enum Request {
    Steps {
        run: RunId,
        kind: TraceKind,
    },
    Step {
        run: RunId,
        kind: TraceKind,
        step: u64,
        rho: f64,
    },
    Entropies {
        run: RunId,
        kind: TraceKind,
        step: u64,
    },
    History {
        run: RunId,
        kind: TraceKind,
        prompt: String,
    },
    Analyse {
        run: RunId,
        kind: TraceKind,
        options: AnalysisOptions,
    },
}

/// A step's completions with what drawing them needs.
pub struct LoadedStep {
    pub traces: Vec<Trace>,
    /// Each token id's text (the run's tokenizer), alternatives included.
    pub texts: HashMap<u32, String>,
    /// Per completion, per token: among the step's top-ρ by entropy.
    pub forking: Vec<Vec<bool>>,
}

/// What the loader answers.
pub(super) enum Reply {
    Steps {
        run: RunId,
        kind: TraceKind,
        result: Result<Vec<(u64, usize)>, String>,
    },
    Step {
        key: StepKey,
        result: Result<LoadedStep, String>,
    },
    Entropies {
        key: (RunId, TraceKind, u64),
        result: Result<Vec<f32>, String>,
    },
    History {
        key: (RunId, TraceKind, String),
        result: Result<Vec<PromptPoint>, String>,
    },
    Analysis {
        key: AnalysisKey,
        result: Result<RunAnalysis, String>,
    },
}

/// (run, kind, step, ρ bits).
pub(super) type StepKey = (RunId, TraceKind, u64, u64);
/// (run, kind, steps listed, options).
pub(super) type AnalysisKey = (RunId, TraceKind, usize, AnalysisOptionsKey);
pub(super) type AnalysisOptionsKey = (u32, u64, Vec<String>);

pub(super) fn options_key(o: &AnalysisOptions) -> AnalysisOptionsKey {
    (
        o.threshold.to_bits(),
        o.rho.to_bits(),
        o.reflection_words.clone(),
    )
}

/// The loader thread.
pub(super) type Loader = Worker<Request, Reply>;

/// Starts the loader on the window's workspace.
pub(super) fn start(
    workspace: SharedWorkspace,
    egui_ctx: &egui::Context,
) -> std::io::Result<Loader> {
    Worker::spawn(
        "studio-traces-loader",
        egui_ctx,
        (32, 32),
        move || LoaderState {
            workspace,
            tokenizers: HashMap::new(),
        },
        |state, request, out| out.send(state.handle(request)),
        |request, message| vec![failed(request, message)],
    )
}

/// The answer to `request` when handling it panicked.
fn failed(request: &Request, message: String) -> Reply {
    match request {
        Request::Steps { run, kind } => Reply::Steps {
            run: *run,
            kind: *kind,
            result: Err(message),
        },
        Request::Step {
            run,
            kind,
            step,
            rho,
        } => Reply::Step {
            key: (*run, *kind, *step, rho.to_bits()),
            result: Err(message),
        },
        Request::Entropies { run, kind, step } => Reply::Entropies {
            key: (*run, *kind, *step),
            result: Err(message),
        },
        Request::History { run, kind, prompt } => Reply::History {
            key: (*run, *kind, prompt.clone()),
            result: Err(message),
        },
        Request::Analyse { run, kind, options } => Reply::Analysis {
            key: (*run, *kind, 0, options_key(options)),
            result: Err(message),
        },
    }
}

/// What the loader thread keeps: the shared workspace connection and each run's tokenizer.
struct LoaderState {
    workspace: SharedWorkspace,
    tokenizers: HashMap<RunId, Arc<engine::text::tokenizer::TextTokenizer>>,
}

impl LoaderState {
    fn workspace(&self) -> Result<Arc<Workspace>, String> {
        self.workspace.get()
    }

    fn tokenizer(
        &mut self,
        run: RunId,
    ) -> Result<Arc<engine::text::tokenizer::TextTokenizer>, String> {
        if let Some(t) = self.tokenizers.get(&run) {
            return Ok(t.clone());
        }
        let record = self.workspace()?.run(run).map_err(|e| e.to_string())?;
        let config =
            engine::train::config::RunConfig::from_toml(&record.config_toml, &format!("run {run}"))
                .map_err(|e| e.to_string())?;
        let (tokenizer, _) = engine::formats::loader::open_tokenizer(&config.model)
            .map_err(|e| format!("could not open run {run}'s tokenizer to name its tokens: {e}"))?;
        let tokenizer = Arc::new(tokenizer);
        self.tokenizers.insert(run, tokenizer.clone());
        Ok(tokenizer)
    }

    fn handle(&mut self, request: &Request) -> Reply {
        match request.clone() {
            Request::Steps { run, kind } => Reply::Steps {
                run,
                kind,
                result: self
                    .workspace()
                    .and_then(|w| w.trace_steps(run, kind).map_err(|e| e.to_string())),
            },
            Request::Step {
                run,
                kind,
                step,
                rho,
            } => Reply::Step {
                key: (run, kind, step, rho.to_bits()),
                result: self.load_step(run, kind, step, rho),
            },
            Request::Entropies { run, kind, step } => Reply::Entropies {
                key: (run, kind, step),
                result: self.workspace().and_then(|w| {
                    w.traces(run, step, kind)
                        .map(|traces| {
                            traces
                                .iter()
                                .flat_map(|t| t.tokens.iter().map(|x| x.entropy))
                                .collect()
                        })
                        .map_err(|e| e.to_string())
                }),
            },
            Request::History { run, kind, prompt } => {
                let result = self.workspace().and_then(|w| {
                    w.prompt_history(run, kind, &prompt)
                        .map_err(|e| e.to_string())
                });
                Reply::History {
                    key: (run, kind, prompt),
                    result,
                }
            }
            Request::Analyse { run, kind, options } => {
                let result = self.analyse(run, kind, &options);
                let steps = result.as_ref().map_or(0, |(n, _)| *n);
                Reply::Analysis {
                    key: (run, kind, steps, options_key(&options)),
                    result: result.map(|(_, a)| a),
                }
            }
        }
    }

    fn load_step(
        &mut self,
        run: RunId,
        kind: TraceKind,
        step: u64,
        rho: f64,
    ) -> Result<LoadedStep, String> {
        let traces = self
            .workspace()?
            .traces(run, step, kind)
            .map_err(|e| e.to_string())?;
        let tokenizer = self.tokenizer(run)?;
        let mut texts = HashMap::new();
        for t in &traces {
            for x in &t.tokens {
                for id in std::iter::once(x.id).chain(x.top.iter().map(|a| a.0)) {
                    texts.entry(id).or_insert_with(|| {
                        tokenizer
                            .token_piece(id)
                            .unwrap_or_else(|_| format!("<id {id}>"))
                    });
                }
            }
        }
        let forking = forking_flags(&traces, rho);
        Ok(LoadedStep {
            traces,
            texts,
            forking,
        })
    }

    /// The analysis, and how many steps it read.
    fn analyse(
        &mut self,
        run: RunId,
        kind: TraceKind,
        options: &AnalysisOptions,
    ) -> Result<(usize, RunAnalysis), String> {
        let tokenizer = self.tokenizer(run)?;
        let mut cache: HashMap<u32, String> = HashMap::new();
        let mut text = |id: u32| {
            cache
                .entry(id)
                .or_insert_with(|| {
                    tokenizer
                        .token_text(id)
                        .unwrap_or_else(|_| format!("<id {id}>"))
                })
                .clone()
        };
        let workspace = self.workspace()?;
        engine::analysis::analyse_stored(&workspace, run, kind, options, &mut text)
            .map_err(|e| e.to_string())
    }
}

/// Per completion, per token: whether it is among the step's top-ρ tokens by entropy (the
/// analysis's forking tokens: exactly ⌈ρ·n⌉ of the step's n tokens).
pub fn forking_flags(traces: &[Trace], rho: f64) -> Vec<Vec<bool>> {
    let entropies: Vec<f32> = traces
        .iter()
        .flat_map(|t| t.tokens.iter().map(|x| x.entropy))
        .collect();
    let mut flat = vec![false; entropies.len()];
    for i in engine::analysis::top_share(&entropies, rho) {
        flat[i] = true;
    }
    let mut out = Vec::with_capacity(traces.len());
    let mut at = 0;
    for t in traces {
        out.push(flat[at..at + t.tokens.len()].to_vec());
        at += t.tokens.len();
    }
    out
}
