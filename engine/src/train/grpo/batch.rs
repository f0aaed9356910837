//! The update batch of a GRPO step: where each completion's tokens sit in the
//! `[sequences, max_len]` layout the objective reads, the loss masks (truncation, top-entropy),
//! and the completions' log-probs under a model (one forward pass over prompt + completion).

use burn::tensor::{Int, Tensor, TensorData};

pub(super) use super::objective::read_back;
use super::objective::top_entropy_mask;
use super::rollout::{FinishReason, Rollout};
use crate::kernels::AttentionMask;
use crate::models::CausalLm;
use crate::train::TrainError;
use crate::train::config::GrpoConfig;

/// Where each rollout's completion tokens sit in the `[sequences, max_len]` layout, with the
/// loss masks.
pub(super) struct Layout {
    pub(super) max_len: usize,
    /// 1 for a counted completion token (truncated completions masked when asked).
    pub(super) mask: Vec<f32>,
    /// 1 for a counted token in the top-entropy share.
    pub(super) grad_mask: Vec<f32>,
}

impl Layout {
    pub(super) fn new(rollouts: &[Rollout], g: &GrpoConfig) -> Self {
        let max_len = rollouts
            .iter()
            .map(|r| r.tokens.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut mask = vec![0.0f32; rollouts.len() * max_len];
        let mut entropy = vec![0.0f32; rollouts.len() * max_len];
        for (i, r) in rollouts.iter().enumerate() {
            let truncated = r.finish == FinishReason::Length;
            if g.mask_truncated_completions && truncated {
                continue;
            }
            for (j, t) in r.tokens.iter().enumerate() {
                mask[i * max_len + j] = 1.0;
                entropy[i * max_len + j] = t.entropy;
            }
        }
        let grad_mask = if g.top_entropy_quantile < 1.0 {
            top_entropy_mask(&entropy, &mask, g.top_entropy_quantile)
        } else {
            mask.clone()
        };
        Self {
            max_len,
            mask,
            grad_mask,
        }
    }

    pub(super) fn counted_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }

    /// Every sequence index.
    pub(super) fn rows(&self) -> Vec<usize> {
        (0..self.mask.len() / self.max_len).collect()
    }

    /// Sequence indices in micro-batches of at most `size`.
    pub(super) fn chunks(&self, size: usize) -> Vec<Vec<usize>> {
        self.rows()
            .chunks(size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The rows `chunk` of a `[sequences, max_len]` host array.
    pub(super) fn slice(&self, values: &[f32], chunk: &[usize]) -> Vec<f32> {
        chunk
            .iter()
            .flat_map(|&i| {
                values[i * self.max_len..(i + 1) * self.max_len]
                    .iter()
                    .copied()
            })
            .collect()
    }
}

/// The log-probs `[rows, max_len]` of the completion tokens of rollouts `rows` under `model` (0 at
/// padding), differentiable when `model` is on an autodiff device; with `entropy`, also the
/// entropies of the same distributions (differentiable, for the entropy bonus).
pub(super) fn completion_logp(
    model: &CausalLm,
    rollouts: &[Rollout],
    layout: &Layout,
    rows: &[usize],
    entropy: Option<&mut Option<Tensor<2>>>,
) -> Result<Tensor<2>, TrainError> {
    let max_len = layout.max_len;
    let device = &model.device;
    // Right-padded prompt + completion; causal attention never lets a real token see padding.
    let width = rows
        .iter()
        .map(|&i| rollouts[i].prompt_ids.len() + rollouts[i].tokens.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let mut ids = Vec::with_capacity(rows.len());
    let mut positions = Vec::with_capacity(rows.len());
    // For every [row, j] slot: the flat position whose logits predict it, and its target.
    let mut at = Vec::with_capacity(rows.len() * max_len);
    let mut targets = Vec::with_capacity(rows.len() * max_len);
    for (b, &i) in rows.iter().enumerate() {
        let r = &rollouts[i];
        let mut row: Vec<u32> = r.prompt_ids.clone();
        row.extend(r.tokens.iter().map(|t| t.id));
        row.resize(width, 0);
        ids.push(row);
        positions.push((0..width).collect::<Vec<_>>());
        for j in 0..max_len {
            match r.tokens.get(j) {
                Some(t) => {
                    at.push((b * width + r.prompt_ids.len() + j - 1) as i64);
                    targets.push(t.id);
                }
                None => {
                    at.push((b * width) as i64);
                    targets.push(0);
                }
            }
        }
    }
    let mut cache = model.no_cache();
    let hidden = model.forward_hidden(&ids, &positions, AttentionMask::Causal, &mut cache);
    let [_, _, hidden_width] = hidden.dims();
    let slots = at.len();
    let hidden = hidden.reshape([rows.len() * width, hidden_width]).select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(at, [slots]), device),
    );
    let vocab = model.config.vocab_size;
    let logits = model
        .logits(hidden.reshape([1, slots, hidden_width]))
        .reshape([slots, vocab]);
    if let Some(out) = entropy {
        let logp_all = burn::tensor::activation::log_softmax(logits.clone(), 1);
        let h = (logp_all.clone().exp() * logp_all).sum_dim(1).neg();
        *out = Some(h.reshape([rows.len(), max_len]));
    }
    let nll = crate::kernels::token_nll(logits, targets);
    Ok(nll.neg().reshape([rows.len(), max_len]))
}

/// A scalar's value on the host, detached from the graph.
pub(super) fn read_back_1(t: Tensor<1>, what: &str) -> Result<f32, TrainError> {
    read_back(t, what)?
        .first()
        .copied()
        .ok_or_else(|| TrainError::ReadBack {
            what: what.to_string(),
            message: "empty".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::GeneratedToken;
    use crate::models::tiny;
    use crate::train::grpo::objective::{ImportanceLevel, LossType};
    use crate::train::grpo::objective::{
        MicroBatch, ObjectiveConfig, StepTotals, advantages, objective,
    };
    use crate::train::optim::{AdamW, AdamWConfig, GradBuffer};
    use crate::train::rewards::Scored;

    fn rollout(prompt_ids: &[u32], completion: &[u32], reward: f64) -> Rollout {
        Rollout {
            prompt_index: 0,
            sample_index: 0,
            prompt: String::new(),
            prompt_ids: prompt_ids.to_vec(),
            completion: String::new(),
            tokens: completion
                .iter()
                .map(|&id| GeneratedToken {
                    id,
                    logprob: 0.0,
                    entropy: 1.0,
                    top: Vec::new(),
                })
                .collect(),
            finish: FinishReason::Eos,
            scored: Scored {
                total: reward,
                parts: Vec::new(),
                correct: None,
            },
            advantage: 0.0,
        }
    }

    /// The whole update chain (completion log-probs at the right positions, the objective, the
    /// optimizer) moves the policy the way the advantages say: the rewarded completion of a
    /// group becomes more likely, the unrewarded one less.
    #[test]
    fn updates_make_rewarded_completions_more_likely() {
        let config = tiny::config();
        let device = burn::tensor::Device::flex().autodiff();
        let mut model =
            CausalLm::from_weights(config.clone(), &tiny::RandomInit::new(&config, 1), &device)
                .expect("tiny model");
        let prompt = [40u32, 49, 43, 50];
        let rollouts = vec![
            rollout(&prompt, &[51, 61, 52, 2], 1.0),
            rollout(&prompt, &[53, 54], 0.0),
        ];
        let g = GrpoConfig {
            num_generations: 2,
            ..GrpoConfig::default()
        };
        let layout = Layout::new(&rollouts, &g);
        let adv = advantages(&[1.0, 0.0], 2, g.scale_rewards);
        let objective_config = ObjectiveConfig {
            loss_type: LossType::Grpo,
            epsilon: 0.2,
            epsilon_high: 0.2,
            delta: None,
            importance_sampling_level: ImportanceLevel::Token,
            beta: 0.0,
            entropy_coef: 0.0,
            max_completion_length: 4,
        };
        let sequence_logp = |model: &CausalLm| -> Vec<f64> {
            let logp = completion_logp(
                &model.for_inference(),
                &rollouts,
                &layout,
                &layout.rows(),
                None,
            )
            .expect("logp");
            let v = read_back(logp, "logp").expect("read");
            v.chunks(layout.max_len)
                .zip(layout.mask.chunks(layout.max_len))
                .map(|(l, m)| l.iter().zip(m).map(|(l, m)| f64::from(l * m)).sum())
                .collect()
        };
        let before = sequence_logp(&model);
        let mut optimizer = AdamW::new(AdamWConfig {
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
        });
        for _ in 0..5 {
            let logp =
                completion_logp(&model, &rollouts, &layout, &layout.rows(), None).expect("logp");
            let batch = MicroBatch {
                sequences: 2,
                max_len: layout.max_len,
                mask: layout.mask.clone(),
                grad_mask: layout.grad_mask.clone(),
                old_logp: None,
                ref_logp: None,
                advantages: adv.iter().map(|&a| a as f32).collect(),
            };
            let totals = StepTotals {
                sequences: 2,
                tokens: layout.counted_tokens(),
            };
            let out = objective(logp, None, &batch, totals, &objective_config).expect("objective");
            let mut grads = GradBuffer::default();
            let mut g = out.loss.backward();
            grads.accumulate(&model.transformer, &mut g).expect("grads");
            let (updated, _) = optimizer
                .step(model.transformer.clone(), &grads, 1e-3, Some(1.0))
                .expect("step");
            model.transformer = updated;
        }
        let after = sequence_logp(&model);
        assert!(
            after[0] > before[0] + 0.1,
            "rewarded: {} → {}",
            before[0],
            after[0]
        );
        assert!(
            after[1] < before[1] - 0.1,
            "unrewarded: {} → {}",
            before[1],
            after[1]
        );
    }
}
