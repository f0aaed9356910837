//! Teacher-forced scoring: how likely a model finds each token of a given text.

use super::{InferError, host_values};
use crate::kernels::AttentionMask;
use crate::kernels::token_stats::rows_stats;
use crate::models::CausalLm;

/// One token of a scored text. Token 0 has no prediction: `logprob`/`entropy` are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    pub id: u32,
    /// log p(token | tokens before it), nats.
    pub logprob: Option<f32>,
    /// Entropy of the distribution that predicted this token, nats.
    pub entropy: Option<f32>,
    /// The `top_k` most likely tokens at this position, `(id, logprob)`.
    pub top: Vec<(u32, f32)>,
}

/// Scores `ids` in one forward pass.
pub fn score(model: &CausalLm, ids: &[u32], top_k: usize) -> Result<Vec<ScoredToken>, InferError> {
    if ids.is_empty() {
        return Err(InferError::Empty);
    }
    let context = model.config.max_position_embeddings;
    if ids.len() > context {
        return Err(InferError::PromptTooLong {
            prompt_tokens: ids.len(),
            context,
        });
    }
    let n = ids.len();
    let vocab = model.config.vocab_size;
    let logits = crate::kernels::in_pool(|| {
        let mut cache = model.no_cache();
        let positions: Vec<usize> = (0..n).collect();
        let hidden = model.forward_hidden(
            &[ids.to_vec()],
            &[positions],
            AttentionMask::Causal,
            &mut cache,
        );
        // Only positions 0..n-1 predict a token of the text.
        if n > 1 {
            host_values(model.logits(hidden.narrow(1, 0, n - 1)))
        } else {
            Ok(Vec::new())
        }
    })?;
    let stats = rows_stats(&logits, vocab, top_k);
    let mut out = Vec::with_capacity(n);
    out.push(ScoredToken {
        id: ids[0],
        logprob: None,
        entropy: None,
        top: Vec::new(),
    });
    for (i, s) in stats.into_iter().enumerate() {
        let id = ids[i + 1];
        let row = &logits[i * vocab..(i + 1) * vocab];
        out.push(ScoredToken {
            id,
            logprob: Some(row[id as usize] - s.log_sum_exp),
            entropy: Some(s.entropy),
            top: s.top,
        });
    }
    Ok(out)
}
