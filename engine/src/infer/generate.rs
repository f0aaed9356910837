//! Batched autoregressive generation with a KV cache. Prompts of different lengths are
//! left-padded and masked; every generated token comes with its log-probability, the entropy of
//! the distribution it was drawn from, and the top-k alternatives (all from the model's own
//! distribution, before temperature and filtering).

use std::ops::ControlFlow;

use rayon::prelude::*;

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
    on_token: impl FnMut(usize, &GeneratedToken) -> ControlFlow<()>,
) -> Result<Vec<Vec<GeneratedToken>>, InferError> {
    generate_groups(model, request, 1, on_token)
}

/// Generates `group` samples of every prompt (rows prompt after prompt, `group` each, row `r`
/// seeded with `seed + r` as [`generate`] seeds it). The prompts are processed once and their
/// keys and values copied to the group's rows, instead of once per sample.
pub fn generate_groups(
    model: &CausalLm,
    request: &GenerateRequest,
    group: usize,
    mut on_token: impl FnMut(usize, &GeneratedToken) -> ControlFlow<()>,
) -> Result<Vec<Vec<GeneratedToken>>, InferError> {
    request.sampling.validate()?;
    let group = group.max(1);
    let unique = request.prompts.len();
    let batch = unique * group;
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
    let prompt_pads: Vec<usize> = request.prompts.iter().map(|p| longest - p.len()).collect();
    let pads: Vec<usize> = prompt_pads
        .iter()
        .flat_map(|&p| std::iter::repeat_n(p, group))
        .collect();
    let pad_id = request.stop_token_ids.first().copied().unwrap_or(0);
    let ids: Vec<Vec<u32>> = request
        .prompts
        .iter()
        .zip(&prompt_pads)
        .map(|(p, &pad)| {
            std::iter::repeat_n(pad_id, pad)
                .chain(p.iter().copied())
                .collect()
        })
        .collect();
    let positions: Vec<Vec<usize>> = prompt_pads
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
    let mut histories: Vec<Vec<u32>> = request
        .prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), group))
        .collect();
    let mut outputs: Vec<Vec<GeneratedToken>> = vec![Vec::new(); batch];
    let mut finished = vec![false; batch];
    let mut cache = model.new_cache(longest + max_new);
    let mask = AttentionMask::LeftPadded(prompt_pads.clone());
    let vocab = model.config.vocab_size;

    let prompt_logits = in_pool(|| {
        let hidden = model.forward_hidden(&ids, &positions, mask, &mut cache);
        host_values(model.logits(hidden.narrow(1, longest - 1, 1)))
    })?;
    // Each prompt's keys, values and last logits, copied to its group's rows.
    let mut logits = if group == 1 {
        prompt_logits
    } else {
        cache.repeat_rows(group);
        prompt_logits
            .chunks(vocab)
            .flat_map(|row| std::iter::repeat_n(row, group).flatten().copied())
            .collect()
    };
    // The cache's rows: which output row each holds. Finished rows are dropped from the batch
    // once they are an eighth of it, so a group whose samples stop early stops costing.
    let mut present: Vec<usize> = (0..batch).collect();
    for step in 0..max_new {
        // Each live row's token, sampled in parallel (statistics over the vocabulary are the
        // per-row cost); callbacks then run in row order.
        let live_rows: Vec<usize> = (0..batch).filter(|&r| !finished[r]).collect();
        let slot_of: Vec<usize> = live_rows
            .iter()
            .map(|row| present.binary_search(row).expect("a live row is present"))
            .collect();
        let live: Vec<(usize, &mut Sampler)> = samplers
            .iter_mut()
            .enumerate()
            .filter(|(row, _)| !finished[*row])
            .collect();
        let sampled: Vec<GeneratedToken> = in_pool(|| {
            live.into_par_iter()
                .zip(slot_of.par_iter())
                .map(|((row, sampler), &slot)| {
                    let row_logits = &logits[slot * vocab..(slot + 1) * vocab];
                    let stats = row_stats(row_logits, request.top_k_alternatives);
                    let mut scratch = row_logits.to_vec();
                    let id = sampler.sample(&mut scratch, &histories[row]);
                    GeneratedToken {
                        id,
                        logprob: row_logits[id as usize] - stats.log_sum_exp,
                        entropy: stats.entropy,
                        top: stats.top,
                    }
                })
                .collect()
        });
        let mut next = vec![pad_id; present.len()];
        let mut stop_all = false;
        for ((row, token), &slot) in live_rows.into_iter().zip(sampled).zip(&slot_of) {
            if on_token(row, &token).is_break() {
                stop_all = true;
            }
            histories[row].push(token.id);
            if request.stop_token_ids.contains(&token.id) {
                finished[row] = true;
            }
            next[slot] = token.id;
            outputs[row].push(token);
        }
        if stop_all || finished.iter().all(|&f| f) || step + 1 == max_new {
            break;
        }
        let stale = present.iter().filter(|&&r| finished[r]).count();
        if stale > 0 && stale * 8 >= present.len() {
            let keep: Vec<usize> = (0..present.len())
                .filter(|&slot| !finished[present[slot]])
                .collect();
            cache.select_rows(&keep);
            next = keep.iter().map(|&slot| next[slot]).collect();
            present = keep.iter().map(|&slot| present[slot]).collect();
        }
        let slot = longest + step;
        let step_ids: Vec<Vec<u32>> = next.iter().map(|&id| vec![id]).collect();
        let step_pads: Vec<usize> = present.iter().map(|&row| pads[row]).collect();
        let step_pos: Vec<Vec<usize>> = step_pads.iter().map(|&pad| vec![slot - pad]).collect();
        let mask = AttentionMask::LeftPadded(step_pads);
        logits = in_pool(|| {
            host_values(model.logits(model.forward_hidden(&step_ids, &step_pos, mask, &mut cache)))
        })?;
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::tiny;

    /// Sampling a group from one processed prompt gives what sampling the prompt repeated does:
    /// the same tokens and statistics, greedy and at temperature 1.
    #[test]
    fn groups_share_the_prompt_and_sample_as_repeated_prompts() {
        let config = tiny::config();
        let device = burn::tensor::Device::flex();
        let model =
            CausalLm::from_weights(config.clone(), &tiny::RandomInit::new(&config, 4), &device)
                .expect("tiny model");
        let prompts = vec![vec![40u32, 49, 43, 50, 41], vec![42u32, 51, 61]];
        for temperature in [0.0, 1.0] {
            let request = GenerateRequest {
                prompts: prompts.clone(),
                max_new_tokens: 12,
                sampling: SamplingConfig {
                    temperature,
                    seed: 11,
                    ..SamplingConfig::default()
                },
                stop_token_ids: Vec::new(),
                top_k_alternatives: 3,
            };
            let grouped = generate_groups(&model, &request, 3, |_, _| ControlFlow::Continue(()))
                .expect("grouped");
            let repeated = generate(
                &model,
                &GenerateRequest {
                    prompts: prompts
                        .iter()
                        .flat_map(|p| std::iter::repeat_n(p.clone(), 3))
                        .collect(),
                    ..request.clone()
                },
                |_, _| ControlFlow::Continue(()),
            )
            .expect("repeated");
            assert_eq!(grouped.len(), 6);
            for (g, r) in grouped.iter().zip(&repeated) {
                let ids = |row: &Vec<GeneratedToken>| row.iter().map(|t| t.id).collect::<Vec<_>>();
                assert_eq!(ids(g), ids(r), "temperature {temperature}");
                for (a, b) in g.iter().zip(r) {
                    assert!(
                        (a.logprob - b.logprob).abs() < 1e-4
                            && (a.entropy - b.entropy).abs() < 1e-4
                    );
                }
            }
            if temperature > 0.0 {
                assert_ne!(grouped[0], grouped[1], "samples of a group differ");
            }
        }
    }

    /// Rows that stop early leave the batch (the cache keeps only live rows) without changing
    /// what the others generate: each row of a batch whose rows end at different steps equals
    /// that prompt generated alone, greedy, token for token.
    #[test]
    fn rows_that_stop_leave_the_batch_and_the_others_go_on_unchanged() {
        let config = tiny::config();
        let device = burn::tensor::Device::flex();
        let model =
            CausalLm::from_weights(config.clone(), &tiny::RandomInit::new(&config, 4), &device)
                .expect("tiny model");
        let prompts: Vec<Vec<u32>> = (0..8u32)
            .map(|p| (0..3 + p % 4).map(|t| 40 + (p * 7 + t * 3) % 30).collect())
            .collect();
        let request = |prompts: Vec<Vec<u32>>, stop: Vec<u32>| GenerateRequest {
            prompts,
            max_new_tokens: 16,
            sampling: SamplingConfig::greedy(),
            stop_token_ids: stop,
            top_k_alternatives: 3,
        };
        let go = |r: &GenerateRequest| {
            generate(&model, r, |_, _| ControlFlow::Continue(())).expect("generates")
        };
        // Stop tokens: what some prompts produce early when nothing stops them.
        let free = go(&request(prompts.clone(), Vec::new()));
        let stop: Vec<u32> = free.iter().step_by(3).map(|row| row[2].id).collect();
        let batched = go(&request(prompts.clone(), stop.clone()));
        let lengths: Vec<usize> = batched.iter().map(Vec::len).collect();
        assert!(
            lengths.iter().any(|&l| l < 16) && lengths.iter().any(|&l| l > lengths[0].min(3)),
            "rows should end at different steps: {lengths:?}"
        );
        for (prompt, row) in prompts.iter().zip(&batched) {
            let alone = go(&request(vec![prompt.clone()], stop.clone())).remove(0);
            let ids = |r: &[GeneratedToken]| r.iter().map(|t| t.id).collect::<Vec<_>>();
            assert_eq!(ids(row), ids(&alone), "prompt {prompt:?}");
            for (a, b) in row.iter().zip(&alone) {
                assert!((a.logprob - b.logprob).abs() < 1e-4, "{a:?} vs {b:?}");
            }
        }
    }
}
