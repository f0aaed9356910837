//! The model worker: one long-lived, named thread (a [`crate::jobs::Worker`]) that owns the
//! loaded model and runs the work the Playground asks for. Commands go in and events come out
//! through bounded channels; the UI drains events each frame; a panic becomes the command's
//! failure event. The model never leaves this thread, so it needs neither `Send` nor `Sync`.

use std::ops::ControlFlow;
use std::time::Instant;

use engine::backend::{Backend, BackendKind};
use engine::formats::loader::{LoadedModel, load_model};
use engine::infer::{GenerateRequest, GeneratedToken, SamplingConfig, generate};
use engine::text::chat_template::ChatMessage;

use crate::jobs::{self, Gone, Outbox, Waker};
use crate::widgets::token_heatmap::{Alternative, HeatmapToken};

/// Commands waiting for the worker; it runs one at a time.
const COMMAND_CAPACITY: usize = 8;
/// Events waiting for the UI; the worker blocks when the UI falls this far behind.
const EVENT_CAPACITY: usize = 256;
/// Alternatives reported per generated token.
const TOP_ALTERNATIVES: usize = 5;

/// Work for the model worker.
#[derive(Debug, Clone)]
pub enum Command {
    /// Open a model (a path or `builtin:tiny-reasoner`), replacing the current one on success.
    Load { spec: String, backend: BackendKind },
    /// Generate a continuation with the current model.
    Generate(GenerateJob),
}

/// One generation.
#[derive(Debug, Clone)]
pub struct GenerateJob {
    /// Identifies this job for cancellation; increases with every job.
    pub job_id: u64,
    pub prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    pub use_chat_template: bool,
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
}

/// What a loaded model is, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    pub spec: String,
    pub format: String,
    pub dtype: String,
    pub parameters: usize,
    pub layers: usize,
    pub vocab_size: usize,
    pub context_tokens: usize,
    pub has_chat_template: bool,
    /// Where the model runs.
    pub backend: BackendKind,
}

/// What the worker reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Loaded(ModelSummary),
    LoadFailed {
        spec: String,
        message: String,
    },
    /// The prompt was encoded; generation starts.
    Started {
        job_id: u64,
        prompt_tokens: usize,
    },
    /// One generated token, `elapsed_secs` after the job started.
    Token {
        job_id: u64,
        token: HeatmapToken,
        elapsed_secs: f64,
    },
    Finished {
        job_id: u64,
        /// The whole continuation decoded at once (multi-byte characters joined).
        text: String,
        elapsed_secs: f64,
        cancelled: bool,
    },
    GenerateFailed {
        job_id: u64,
        message: String,
    },
}

/// Why a command could not be handed to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Too many commands are waiting.
    Busy,
    /// The worker thread has ended.
    Stopped,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Busy => "the model worker has too many commands waiting; try again in a moment",
            Self::Stopped => "the model worker has stopped; reopen the model",
        })
    }
}

/// The UI's handle on the model worker thread. Dropping it ends the thread once its current
/// command is done (a running generation is cancelled).
pub struct ModelWorker(jobs::Worker<Command, Event>);

impl ModelWorker {
    /// Starts the worker thread; `repaint` is called after every event so the UI wakes up.
    pub fn spawn(repaint: impl Fn() + Send + Sync + 'static) -> std::io::Result<Self> {
        jobs::Worker::spawn(
            "studio-model-worker",
            Waker::new(repaint),
            (COMMAND_CAPACITY, EVENT_CAPACITY),
            || Worker { model: None },
            |worker, command, out| worker.handle(command, out),
            |command, message| vec![failure_event(command, message)],
        )
        .map(Self)
    }

    pub fn send(&self, command: Command) -> Result<(), SendError> {
        self.0.send(command).map_err(|e| match e {
            jobs::SendError::Busy => SendError::Busy,
            jobs::SendError::Stopped => SendError::Stopped,
        })
    }

    /// Cancels the job with this id (and any earlier one), even if it has not started yet.
    pub fn cancel(&self, job_id: u64) {
        self.0.cancel_through(job_id);
    }

    /// The next event, if one is waiting; `Err(Stopped)` once the worker is gone.
    pub fn try_event(&self) -> Result<Option<Event>, SendError> {
        self.0.try_event().map_err(|_| SendError::Stopped)
    }
}

/// The thread side: the loaded model.
struct Worker {
    model: Option<LoadedModel>,
}

impl Worker {
    fn handle(&mut self, command: &Command, out: &Outbox<Event>) -> Result<(), Gone> {
        match command {
            Command::Load { spec, backend } => self.load(spec.clone(), *backend, out),
            Command::Generate(job) => self.generate(job, out),
        }
    }

    fn load(
        &mut self,
        spec: String,
        backend: BackendKind,
        out: &Outbox<Event>,
    ) -> Result<(), Gone> {
        tracing::debug!("model worker: loading {spec} on {backend}");
        let loaded = Backend::new(backend)
            .map_err(|e| e.to_string())
            .and_then(|b| load_model(&spec, &b).map_err(|e| e.to_string()));
        match loaded {
            Ok(loaded) => {
                let config = &loaded.model.config;
                let summary = ModelSummary {
                    name: loaded.name.clone(),
                    spec: loaded.spec.clone(),
                    format: format!("{:?}", loaded.format).to_lowercase(),
                    dtype: loaded.dtype.clone(),
                    parameters: config.num_parameters(),
                    layers: config.num_hidden_layers,
                    vocab_size: config.vocab_size,
                    context_tokens: config.max_position_embeddings,
                    has_chat_template: loaded.tokenizer.chat_template.is_some(),
                    backend,
                };
                tracing::info!("loaded model {} from {spec}", summary.name);
                self.model = Some(loaded);
                out.send(Event::Loaded(summary))
            }
            Err(e) => {
                tracing::warn!("could not load model {spec}: {e}");
                out.send(Event::LoadFailed { spec, message: e })
            }
        }
    }

    fn generate(&mut self, job: &GenerateJob, out: &Outbox<Event>) -> Result<(), Gone> {
        let job_id = job.job_id;
        let fail = |message: String| Event::GenerateFailed { job_id, message };
        let Some(loaded) = self.model.as_ref() else {
            return out.send(fail("no model is loaded; load one first".into()));
        };
        let tokenizer = &loaded.tokenizer;
        let encoded = if job.use_chat_template {
            tokenizer.encode_chat(&[ChatMessage::user(job.prompt.clone())])
        } else {
            tokenizer.encode(&job.prompt, true)
        };
        let prompt_ids = match encoded {
            Ok(ids) => ids,
            Err(e) => return out.send(fail(format!("could not encode the prompt: {e}"))),
        };
        out.send(Event::Started {
            job_id,
            prompt_tokens: prompt_ids.len(),
        })?;
        let request = GenerateRequest {
            prompts: vec![prompt_ids],
            max_new_tokens: job.max_new_tokens,
            sampling: job.sampling.clone(),
            stop_token_ids: loaded.model.config.eos_token_ids.clone(),
            top_k_alternatives: TOP_ALTERNATIVES,
        };
        let start = Instant::now();
        let mut ids = Vec::new();
        let mut cancelled = false;
        let mut ui_gone = false;
        let mut decode_failure = None;
        let result = generate(&loaded.model, &request, |_row, token: &GeneratedToken| {
            if out.cancelled(job_id) {
                cancelled = true;
                return ControlFlow::Break(());
            }
            ids.push(token.id);
            let token = match heatmap_token(tokenizer, token) {
                Ok(token) => token,
                Err(e) => {
                    decode_failure = Some(e);
                    return ControlFlow::Break(());
                }
            };
            let event = Event::Token {
                job_id,
                token,
                elapsed_secs: start.elapsed().as_secs_f64(),
            };
            if out.send(event).is_err() {
                ui_gone = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if ui_gone {
            return Err(Gone);
        }
        let text = match (result, decode_failure) {
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), Some(e)) => Err(e.to_string()),
            (Ok(_), None) => tokenizer.decode(&ids).map_err(|e| e.to_string()),
        };
        let event = match text {
            Ok(text) => Event::Finished {
                job_id,
                text,
                elapsed_secs: start.elapsed().as_secs_f64(),
                cancelled,
            },
            Err(e) => fail(format!("generation failed: {e}")),
        };
        out.send(event)
    }
}

/// A generated token with its text and its alternatives' texts, as the token views show it.
pub(crate) fn heatmap_token(
    tokenizer: &engine::text::TextTokenizer,
    token: &GeneratedToken,
) -> Result<HeatmapToken, engine::text::TextError> {
    let alternatives = token
        .top
        .iter()
        .map(|&(id, logprob)| {
            Ok(Alternative {
                id,
                text: tokenizer.token_piece(id)?,
                logprob,
            })
        })
        .collect::<Result<Vec<_>, engine::text::TextError>>()?;
    Ok(HeatmapToken {
        id: token.id,
        text: tokenizer.token_piece(token.id)?,
        logprob: token.logprob,
        entropy_nats: token.entropy,
        alternatives,
    })
}

fn failure_event(command: &Command, message: String) -> Event {
    match command {
        Command::Load { spec, .. } => Event::LoadFailed {
            spec: spec.clone(),
            message,
        },
        Command::Generate(job) => Event::GenerateFailed {
            job_id: job.job_id,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn next_event(worker: &ModelWorker) -> Event {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match worker.try_event() {
                Ok(Some(event)) => return event,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                other => panic!("no event from the worker: {other:?}"),
            }
        }
    }

    #[test]
    fn generate_without_a_model_is_a_readable_error() {
        let worker = ModelWorker::spawn(|| {}).expect("spawn");
        worker
            .send(Command::Generate(GenerateJob {
                job_id: 1,
                prompt: "hi".into(),
                use_chat_template: false,
                max_new_tokens: 4,
                sampling: SamplingConfig::greedy(),
            }))
            .expect("send");
        match next_event(&worker) {
            Event::GenerateFailed { job_id: 1, message } => {
                assert!(message.contains("no model is loaded"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_cancelled_job_produces_no_tokens() {
        let worker = ModelWorker::spawn(|| {}).expect("spawn");
        worker
            .send(Command::Load {
                spec: engine::models::tiny::TINY_REASONER.into(),
                backend: BackendKind::Cpu,
            })
            .expect("send");
        assert!(matches!(next_event(&worker), Event::Loaded(_)));
        worker.cancel(7);
        worker
            .send(Command::Generate(GenerateJob {
                job_id: 7,
                prompt: "2+2=".into(),
                use_chat_template: false,
                max_new_tokens: 50,
                sampling: SamplingConfig::greedy(),
            }))
            .expect("send");
        assert!(matches!(
            next_event(&worker),
            Event::Started { job_id: 7, .. }
        ));
        match next_event(&worker) {
            Event::Finished {
                cancelled, text, ..
            } => {
                assert!(cancelled);
                assert!(text.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
