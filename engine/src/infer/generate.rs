//! Batched autoregressive generation with a KV cache. Prompts of different lengths are
//! left-padded and masked; every generated token comes with its log-probability, the entropy of
//! the distribution it was drawn from, and the top-k alternatives (all from the model's own
//! distribution, before temperature and filtering).

use std::ops::ControlFlow;

use super::sampling::{Sampler, SamplingConfig};
use super::{InferError, host_values};
use crate::kernels::AttentionMask;
use crate::kernels::in_pool;
use crate::kernels::token_stats::row_stats;
use crate::models::CausalLm;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// One token sequence per batch row.
    pub prompts: Vec<Vec<u32>>,
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    /// Tokens that end a row (usually the model's EOS ids); empty to never stop early.
    pub stop_token_ids: Vec<u32>,
    /// Alternatives reported per token.
    pub top_k_alternatives: usize,
}

/// One generated token with its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedToken {
    pub id: u32,
    pub logprob: f32,
    pub entropy: f32,
    pub top: Vec<(u32, f32)>,
}

/// Generates for every prompt. `on_token(row, token)` is called as each token is produced;
/// returning `ControlFlow::Break` stops the whole generation (tokens so far are returned).
pub fn generate(
    model: &CausalLm,
    request: &GenerateRequest,
    mut on_token: impl FnMut(usize, &GeneratedToken) -> ControlFlow<()>,
) -> Result<Vec<Vec<GeneratedToken>>, InferError> {
    request.sampling.validate()?;
    let batch = request.prompts.len();
    let longest = request.prompts.iter().map(Vec::len).max().unwrap_or(0);
    if batch == 0 || request.prompts.iter().any(Vec::is_empty) {
        return Err(InferError::Empty);
    }
    let context = model.config.max_position_embeddings;
    if longest > context {
        return Err(InferError::PromptTooLong {
            prompt_tokens: longest,
            context,
        });
    }
    let max_new = request.max_new_tokens.min(context - longest);
    let pads: Vec<usize> = request.prompts.iter().map(|p| longest - p.len()).collect();
    let pad_id = request.stop_token_ids.first().copied().unwrap_or(0);
    let ids: Vec<Vec<u32>> = request
        .prompts
        .iter()
        .zip(&pads)
        .map(|(p, &pad)| {
            std::iter::repeat_n(pad_id, pad)
                .chain(p.iter().copied())
                .collect()
        })
        .collect();
    let positions: Vec<Vec<usize>> = pads
        .iter()
        .map(|&pad| (0..longest).map(|s| s.saturating_sub(pad)).collect())
        .collect();
    let mut samplers: Vec<Sampler> = (0..batch)
        .map(|row| {
            Sampler::new(SamplingConfig {
                seed: request.sampling.seed.wrapping_add(row as u64),
                ..request.sampling.clone()
            })
        })
        .collect();
    let mut histories: Vec<Vec<u32>> = request.prompts.clone();
    let mut outputs: Vec<Vec<GeneratedToken>> = vec![Vec::new(); batch];
    let mut finished = vec![false; batch];
    let mut cache = model.new_cache(longest + max_new);
    let mask = AttentionMask::LeftPadded(pads.clone());
    let vocab = model.config.vocab_size;

    let mut logits = in_pool(|| {
        let hidden = model.forward_hidden(&ids, &positions, mask, &mut cache);
        host_values(model.logits(hidden.narrow(1, longest - 1, 1)))
    })?;
    for step in 0..max_new {
        let mut next = Vec::with_capacity(batch);
        let mut stop_all = false;
        for row in 0..batch {
            let row_logits = &logits[row * vocab..(row + 1) * vocab];
            if finished[row] {
                next.push(pad_id);
                continue;
            }
            let stats = row_stats(row_logits, request.top_k_alternatives);
            let mut scratch = row_logits.to_vec();
            let id = samplers[row].sample(&mut scratch, &histories[row]);
            let token = GeneratedToken {
                id,
                logprob: row_logits[id as usize] - stats.log_sum_exp,
                entropy: stats.entropy,
                top: stats.top,
            };
            if on_token(row, &token).is_break() {
                stop_all = true;
            }
            histories[row].push(id);
            outputs[row].push(token);
            if request.stop_token_ids.contains(&id) {
                finished[row] = true;
            }
            next.push(id);
        }
        if stop_all || finished.iter().all(|&f| f) || step + 1 == max_new {
            break;
        }
        let slot = longest + step;
        let step_ids: Vec<Vec<u32>> = next.iter().map(|&id| vec![id]).collect();
        let step_pos: Vec<Vec<usize>> = pads.iter().map(|&pad| vec![slot - pad]).collect();
        let mask = AttentionMask::LeftPadded(pads.clone());
        logits = in_pool(|| {
            host_values(model.logits(model.forward_hidden(&step_ids, &step_pos, mask, &mut cache)))
        })?;
    }
    Ok(outputs)
}
