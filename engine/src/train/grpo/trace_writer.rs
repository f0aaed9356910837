//! A step's rollouts as traces, with the update's loss masks (which tokens counted, which got
//! gradient), and the thread that writes them to the workspace off the step's path.

use std::time::Instant;

use super::batch::Layout;
use super::rollout::Rollout;
use crate::store::{RunId, Trace, TraceKind, TraceToken, Workspace};
use crate::train::TrainError;

/// The traces of a step's rollouts, with the loss masks of `layout`.
pub(super) fn traces_of(step: u64, rollouts: &[Rollout], layout: &Layout) -> Vec<Trace> {
    rollouts
        .iter()
        .enumerate()
        .map(|(i, r)| Trace {
            step,
            kind: TraceKind::Rollout,
            prompt_index: r.prompt_index,
            sample_index: r.sample_index,
            prompt: r.prompt.clone(),
            completion: r.completion.clone(),
            tokens: r
                .tokens
                .iter()
                .enumerate()
                .map(|(j, t)| TraceToken {
                    id: t.id,
                    logprob: t.logprob,
                    entropy: t.entropy,
                    top: t.top.clone(),
                    counted: layout.mask[i * layout.max_len + j] > 0.0,
                    trained: layout.grad_mask[i * layout.max_len + j] > 0.0,
                })
                .collect(),
            reward: r.scored.total,
            rewards: r.scored.parts.clone(),
            advantage: r.advantage,
            correct: r.scored.correct,
            finish_reason: r.finish.as_str().to_string(),
        })
        .collect()
}

/// Writes traces on a thread of its own with its own connection, so a step never waits on
/// SQLite; batches queue in a bounded channel (a slow disk slows the run rather than filling
/// memory).
pub(super) struct TraceWriter {
    sender: Option<std::sync::mpsc::SyncSender<Vec<Trace>>>,
    thread: Option<std::thread::JoinHandle<Result<Written, crate::store::StoreError>>>,
}

/// What the trace writer wrote: (rollouts, bytes stored, seconds writing, batches).
pub(super) type Written = (usize, u64, f64, usize);

impl TraceWriter {
    /// Starts the writer. With `keep_every` > 1, the rollouts of steps more than `keep_recent`
    /// behind the newest are thinned to every `keep_every`-th step as the run goes.
    pub(super) fn start(
        workspace: &Workspace,
        run_id: RunId,
        keep_every: u64,
        keep_recent: u64,
    ) -> Result<Self, TrainError> {
        let own = Workspace::open(workspace.dir())?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Trace>>(4);
        let thread = std::thread::Builder::new()
            .name("studio-trace-writer".into())
            .spawn(move || {
                let (mut rollouts, mut secs, mut batches) = (0usize, 0.0f64, 0usize);
                for batch in receiver {
                    let t = Instant::now();
                    own.add_traces(run_id, &batch)?;
                    let newest = batch.iter().map(|t| t.step).max().unwrap_or(0);
                    if keep_every > 1 && newest > keep_recent {
                        own.thin_traces(run_id, newest - keep_recent, keep_every)?;
                    }
                    secs += t.elapsed().as_secs_f64();
                    rollouts += batch.len();
                    batches += 1;
                }
                Ok((rollouts, own.trace_bytes(run_id)?, secs, batches))
            })
            .map_err(|e| TrainError::Checkpoint {
                path: workspace.dir().to_path_buf(),
                message: format!("could not start the trace writer thread: {e}"),
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Queues a step's traces; an error means the writer stopped (its error comes at `finish`).
    pub(super) fn send(&self, traces: Vec<Trace>) -> Result<(), TrainError> {
        match &self.sender {
            Some(sender) if sender.send(traces).is_ok() => Ok(()),
            _ => Err(TrainError::Internal {
                panic: "the trace writer stopped; its error is in the run log".into(),
            }),
        }
    }

    /// Waits for every queued trace to be written: (rollouts, bytes, write seconds, batches).
    pub(super) fn finish(mut self) -> Result<Written, TrainError> {
        self.sender.take();
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => Ok(result?),
            Some(Err(_)) => Err(TrainError::Internal {
                panic: "the trace writer thread panicked".into(),
            }),
            None => Ok((0, 0, 0.0, 0)),
        }
    }
}
