//! What a run keeps of its generations: how a completion ended, the alternatives kept per
//! token, and the traces of an evaluation's greedy answers (`TraceKind::Eval`).

use crate::infer::GeneratedToken;
use crate::store::{Trace, TraceKind, TraceToken};

/// Alternatives kept per generated token.
pub const TRACE_TOP_K: usize = 5;

/// How a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token.
    Eos,
    /// The token budget ran out without one.
    Length,
}

impl FinishReason {
    /// How `tokens` ended, given the model's end tokens.
    pub fn of(tokens: &[GeneratedToken], stop: &[u32]) -> Self {
        match tokens.last() {
            Some(t) if stop.contains(&t.id) => Self::Eos,
            _ => Self::Length,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Length => "length",
        }
    }
}

/// Generated tokens as stored, none counted by a loss (evaluation answers).
pub fn untrained_tokens(tokens: &[GeneratedToken]) -> Vec<TraceToken> {
    tokens
        .iter()
        .map(|t| TraceToken {
            id: t.id,
            logprob: t.logprob,
            entropy: t.entropy,
            top: t.top.clone(),
            counted: false,
            trained: false,
        })
        .collect()
}

/// One greedy evaluation answer, scored by the task's verifier or the answer column.
pub(crate) struct EvalAnswer<'a> {
    pub(crate) index: usize,
    pub(crate) prompt: &'a str,
    pub(crate) completion: String,
    pub(crate) tokens: &'a [GeneratedToken],
    pub(crate) finish: FinishReason,
    pub(crate) correct: bool,
}

/// The trace of an evaluation answer at `step`: sample 0 of prompt `index`, reward 1 when
/// correct, no advantage, and no token counted by a loss.
pub(crate) fn eval_trace(step: u64, answer: EvalAnswer<'_>) -> Trace {
    let reward = if answer.correct { 1.0 } else { 0.0 };
    Trace {
        step,
        kind: TraceKind::Eval,
        prompt_index: answer.index,
        sample_index: 0,
        prompt: answer.prompt.to_string(),
        completion: answer.completion,
        tokens: untrained_tokens(answer.tokens),
        reward,
        rewards: vec![("accuracy".to_string(), reward)],
        advantage: 0.0,
        correct: Some(answer.correct),
        finish_reason: answer.finish.as_str().to_string(),
    }
}
