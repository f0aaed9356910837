//! The GRPO family's objective, as TRL's `GRPOTrainer` computes it, over a batch of completions
//! laid out `[sequences, max_completion_length]`:
//!
//! - group-relative advantages `A = (r − mean_group) / (std + 1e-4)` with the standard deviation
//!   of the group, of the batch, or none ([`advantages`]);
//! - importance weights against the rollout policy per token, or per sequence (GSPO: the mean
//!   log-ratio of the sequence, for every token of it);
//! - the clipped surrogate `−min(w·A, clip(w, 1−ε, 1+ε_high)·A)`, with `w` first capped at `δ`
//!   when a two-sided clip is set;
//! - `β` times the k3 estimate of the KL to a frozen reference, `e^(ref−logp) − (ref−logp) − 1`;
//! - an entropy bonus `−c·H` per token (not in TRL; 0 by default);
//! - the loss aggregated per `loss_type`: `grpo` (each sequence's token mean, then the mean over
//!   sequences), `bnpo` (over the micro-batch's tokens), `dapo` (over the whole step's tokens),
//!   `dr_grpo` (a constant: sequences × max completion length).
//!
//! Everything is differentiable in the current log-probs (and entropies); masks and the rollout
//! and reference log-probs are host data. Checked against the same formulas in torch
//! (`benches/peers/grpo_objective.py`, fixture `tests/fixtures/grpo_objective.json`).

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::train::TrainError;

/// How the per-token losses become one number (TRL's `loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Each sequence's mean over its tokens, then the mean over sequences (the GRPO paper's).
    Grpo,
    /// The mean over the micro-batch's completion tokens.
    Bnpo,
    /// The mean over every completion token of the step (DAPO's token-level loss). Default.
    #[default]
    Dapo,
    /// The sum over tokens divided by a constant, sequences × `max_completion_length` (Dr. GRPO).
    DrGrpo,
}

/// How advantages are scaled (TRL's `scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// By the standard deviation of the prompt's group. Default.
    #[default]
    Group,
    /// By the standard deviation of the whole batch.
    Batch,
    /// Not at all (Dr. GRPO).
    None,
}

/// Where importance weights are taken (TRL's `importance_sampling_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportanceLevel {
    /// One ratio per token. Default.
    #[default]
    Token,
    /// One ratio per sequence: the exponent of its mean log-ratio (GSPO).
    Sequence,
}

/// The objective's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ObjectiveConfig {
    pub loss_type: LossType,
    /// Lower clip: ratios below `1 − epsilon` stop pulling a negative advantage.
    pub epsilon: f64,
    /// Upper clip: ratios above `1 + epsilon_high` stop pushing a positive advantage.
    pub epsilon_high: f64,
    /// Two-sided clip: the unclipped ratio is capped at `delta`.
    pub delta: Option<f64>,
    pub importance_sampling_level: ImportanceLevel,
    /// Weight of the k3 KL to the reference; 0 = no reference.
    pub beta: f64,
    /// Weight of the entropy bonus; 0 = none.
    pub entropy_coef: f64,
    /// `max_completion_length`, the `dr_grpo` normaliser.
    pub max_completion_length: usize,
}

/// Advantages of `rewards`, laid out group after group of `group` samples.
pub fn advantages(rewards: &[f64], group: usize, scale: ScaleRewards) -> Vec<f64> {
    let group = group.max(1);
    let batch_std = unbiased_std(rewards);
    rewards
        .chunks(group)
        .flat_map(|g| {
            let mean = g.iter().sum::<f64>() / g.len() as f64;
            let std = match scale {
                ScaleRewards::Group => Some(unbiased_std(g)),
                ScaleRewards::Batch => Some(batch_std),
                ScaleRewards::None => None,
            };
            g.iter().map(move |r| match std {
                Some(s) => (r - mean) / (s + 1e-4),
                None => r - mean,
            })
        })
        .collect()
}

/// The standard deviation with Bessel's correction (torch's default); 0 for one value.
fn unbiased_std(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    (ss / (values.len() - 1) as f64).sqrt()
}

/// The k3 estimate of KL(policy ‖ reference) at one token, from the two log-probs.
pub fn k3(logp: f64, ref_logp: f64) -> f64 {
    let d = ref_logp - logp;
    d.exp() - d - 1.0
}

/// The host side of one micro-batch: `[sequences, max_len]` row-major.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    pub sequences: usize,
    pub max_len: usize,
    /// 1 for a completion token that counts (truncation masking already applied), else 0.
    pub mask: Vec<f32>,
    /// 1 for a counted token that gets gradient (the top-entropy mask), else 0.
    pub grad_mask: Vec<f32>,
    /// Log-probs under the policy that sampled the rollouts; `None` when that policy is the
    /// current one (the first pass over a batch): the ratios are then exactly 1, and the
    /// output carries the log-probs for the passes after it.
    pub old_logp: Option<Vec<f32>>,
    /// Log-probs under the frozen reference (needed when `beta` ≠ 0).
    pub ref_logp: Option<Vec<f32>>,
    /// One per sequence.
    pub advantages: Vec<f32>,
}

/// What the whole step holds, for the normalisers that look beyond the micro-batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTotals {
    /// Completion sequences of the step.
    pub sequences: usize,
    /// Counted completion tokens of the step.
    pub tokens: usize,
}

/// The loss of one micro-batch with its host-side statistics.
#[derive(Debug)]
pub struct ObjectiveOutput {
    /// The micro-batch's share of the step's loss (the shares of a step add up to its loss).
    pub loss: Tensor<1>,
    /// Units (see `clip_units`) whose ratio was clipped low with a negative advantage.
    pub clipped_low: usize,
    pub clipped_high: usize,
    /// What the clip ratios are shares of, as TRL's `masked_batch_mean`: the counted tokens at
    /// token level, the sequences at sequence level (one ratio, one flag per sequence).
    pub clip_units: usize,
    /// Counted tokens of the micro-batch.
    pub tokens: usize,
    /// Σ of the k3 KL over counted tokens.
    pub kl_sum: f64,
    /// The current log-probs on the host when the batch had no `old_logp` (the old log-probs
    /// of the batch's later passes).
    pub policy_logp: Option<Vec<f32>>,
}

/// The objective over `logp [sequences, max_len]` (the current policy's log-probs of the sampled
/// tokens, differentiable) and, when `entropy_coef` ≠ 0, `entropy` of the same shape.
pub fn objective(
    logp: Tensor<2>,
    entropy: Option<Tensor<2>>,
    batch: &MicroBatch,
    totals: StepTotals,
    config: &ObjectiveConfig,
) -> Result<ObjectiveOutput, TrainError> {
    let device = logp.device();
    let (n, t) = (batch.sequences, batch.max_len);
    let host = |v: &[f32]| Tensor::<2>::from_data(TensorData::new(v.to_vec(), [n, t]), &device);
    let mask = host(&batch.mask);
    let lengths: Vec<f32> = batch
        .mask
        .chunks(t.max(1))
        .map(|row| row.iter().sum::<f32>().max(1.0))
        .collect();
    let old = match &batch.old_logp {
        Some(old) => host(old),
        None => logp.clone().detach(),
    };
    let log_ratio = logp.clone() - old;
    let log_w = match config.importance_sampling_level {
        ImportanceLevel::Token => log_ratio,
        ImportanceLevel::Sequence => {
            let len = Tensor::<2>::from_data(TensorData::new(lengths.clone(), [n, 1]), &device);
            (log_ratio * mask.clone())
                .sum_dim(1)
                .div(len)
                .expand([n, t])
        }
    };
    let coef_1 = log_w.exp();
    let coef_2 = coef_1
        .clone()
        .clamp(1.0 - config.epsilon, 1.0 + config.epsilon_high);
    let adv = Tensor::<2>::from_data(TensorData::new(batch.advantages.clone(), [n, 1]), &device)
        .expand([n, t]);
    let capped = match config.delta {
        Some(delta) => coef_1.clone().clamp_max(delta),
        None => coef_1.clone(),
    };
    let loss_1 = capped * adv.clone();
    let loss_2 = coef_2 * adv;
    let mut per_token = loss_1.min_pair(loss_2).neg();
    let mut kl_sum = 0.0;
    if config.beta != 0.0
        && let Some(ref_logp) = &batch.ref_logp
    {
        let d = host(ref_logp) - logp.clone();
        let kl = d.clone().exp() - d - 1.0;
        kl_sum = read_back(kl.clone() * mask.clone(), "the KL to the reference")?
            .iter()
            .map(|&x| f64::from(x))
            .sum();
        per_token = per_token + kl.mul_scalar(config.beta);
    }
    if config.entropy_coef != 0.0
        && let Some(h) = entropy
    {
        per_token = per_token - h.mul_scalar(config.entropy_coef);
    }
    let weights = token_weights(&lengths, batch, totals, config);
    let loss = (per_token * host(&weights)).sum();

    let (mut clipped_low, mut clipped_high, mut clip_units) = (0, 0, 0);
    let mut flag = |w: f32, a: f32| {
        clip_units += 1;
        let w = f64::from(w);
        clipped_low += usize::from(w < 1.0 - config.epsilon && a < 0.0);
        clipped_high += usize::from(w > 1.0 + config.epsilon_high && a > 0.0);
    };
    let ratios = read_back(coef_1, "the importance weights")?;
    for (i, row) in batch.mask.chunks(t.max(1)).enumerate() {
        let a = batch.advantages[i];
        match config.importance_sampling_level {
            ImportanceLevel::Token => {
                for (j, &m) in row.iter().enumerate() {
                    if m != 0.0 {
                        flag(ratios[i * t + j], a);
                    }
                }
            }
            // The sequence's ratio is expanded over its row: every column holds it.
            ImportanceLevel::Sequence => flag(ratios[i * t], a),
        }
    }
    let tokens = batch.mask.iter().filter(|&&m| m != 0.0).count();
    let policy_logp = match batch.old_logp {
        Some(_) => None,
        None => Some(read_back(logp, "the policy's log-probs")?),
    };
    Ok(ObjectiveOutput {
        loss,
        clipped_low,
        clipped_high,
        clip_units,
        tokens,
        kl_sum,
        policy_logp,
    })
}

/// Each token's weight in the loss: its counted-and-trained mask over the loss type's normaliser.
fn token_weights(
    lengths: &[f32],
    batch: &MicroBatch,
    totals: StepTotals,
    config: &ObjectiveConfig,
) -> Vec<f32> {
    let t = batch.max_len.max(1);
    let micro_tokens: f32 = batch.mask.iter().sum::<f32>().max(1.0);
    batch
        .mask
        .iter()
        .zip(&batch.grad_mask)
        .enumerate()
        .map(|(at, (&m, &g))| {
            let norm = match config.loss_type {
                LossType::Grpo => lengths[at / t] * totals.sequences.max(1) as f32,
                LossType::Bnpo => micro_tokens,
                LossType::Dapo => totals.tokens.max(1) as f32,
                LossType::DrGrpo => (totals.sequences.max(1) * config.max_completion_length) as f32,
            };
            m * g / norm
        })
        .collect()
}

/// A tensor's values on the host, detached from the graph.
pub(super) fn read_back<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>, TrainError> {
    t.detach()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::ReadBack {
            what: what.to_string(),
            message: format!("{e:?}"),
        })
}

/// The top-`quantile` share of counted tokens by entropy (ρ of "beyond the 80/20 rule"): 1 for
/// the `ceil(ρ · n)` highest-entropy counted tokens of the batch, 0 for the others and for
/// uncounted positions. `quantile` 1 keeps every counted token.
pub fn top_entropy_mask(entropy: &[f32], mask: &[f32], quantile: f64) -> Vec<f32> {
    let counted: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] > 0.0).collect();
    let keep = ((quantile * counted.len() as f64).ceil() as usize).min(counted.len());
    let mut order = counted.clone();
    // Highest entropy first; ties keep the earlier position, so the mask is deterministic.
    order.sort_by(|&a, &b| entropy[b].total_cmp(&entropy[a]).then(a.cmp(&b)));
    let mut out = vec![0.0; mask.len()];
    for &i in &order[..keep] {
        out[i] = 1.0;
    }
    out
}

/// Indices of the groups (of `group` rewards each) whose rewards do not all agree: DAPO's dynamic
/// sampling keeps only those, since a group with one reward has zero advantage everywhere.
pub fn informative_groups(rewards: &[f64], group: usize) -> Vec<usize> {
    rewards
        .chunks(group.max(1))
        .enumerate()
        .filter(|(_, g)| g.iter().any(|r| (r - g[0]).abs() > 1e-12))
        .map(|(i, _)| i)
        .collect()
}

/// A host tensor on `device`, for tests and callers that build log-probs by hand.
pub fn tensor_2d(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3_is_zero_at_equal_log_probs_and_positive_elsewhere() {
        assert_eq!(k3(-1.0, -1.0), 0.0);
        // ref − logp = −1: e^−1 + 1 − 1.
        assert!((k3(-1.0, -2.0) - (-1f64).exp()).abs() < 1e-12);
        // ref − logp = 1: e − 2.
        assert!((k3(-2.0, -1.0) - (std::f64::consts::E - 2.0)).abs() < 1e-12);
        assert!(k3(-0.1, -3.0) > 0.0 && k3(-3.0, -0.1) > 0.0);
    }

    #[test]
    fn top_entropy_mask_keeps_exactly_the_top_share_of_counted_tokens() {
        let entropy = [0.5, 2.0, 1.0, 9.0, 3.0, 0.1, 4.0, 0.2];
        let mask = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]; // position 3 not counted
        // 7 counted tokens; 0.2 → ceil(1.4) = 2: entropies 4.0 (6) and 3.0 (4).
        assert_eq!(
            top_entropy_mask(&entropy, &mask, 0.2),
            [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]
        );
        assert_eq!(top_entropy_mask(&entropy, &mask, 1.0), mask);
        let half = top_entropy_mask(&entropy, &mask, 0.5); // ceil(3.5) = 4
        assert_eq!(half, [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn dynamic_sampling_drops_only_groups_whose_rewards_all_agree() {
        let rewards = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.25];
        assert_eq!(informative_groups(&rewards, 3), [1, 3]);
        assert!(informative_groups(&[2.0, 2.0], 2).is_empty());
    }

    #[test]
    fn advantages_are_group_relative_and_zero_for_agreeing_groups() {
        let a = advantages(&[1.0, 0.0, 0.5, 2.0, 2.0, 2.0], 3, ScaleRewards::Group);
        // group 0: mean 0.5, unbiased std 0.5.
        for (got, want) in a
            .iter()
            .zip([0.5 / 0.5001, -0.5 / 0.5001, 0.0, 0.0, 0.0, 0.0])
        {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        let none = advantages(&[1.0, 0.0, 0.5, 2.0, 2.0, 2.0], 3, ScaleRewards::None);
        assert_eq!(none, [0.5, -0.5, 0.0, 0.0, 0.0, 0.0]);
    }

    /// Every `loss_type` × `scale_rewards` × clip × importance level × β case of
    /// `tests/fixtures/grpo_objective.json` (TRL's formulas in torch, float64): the loss, its
    /// gradient with respect to every log-prob, and the clip and KL statistics.
    #[test]
    fn objective_matches_trl_formulas_in_torch() {
        use burn::tensor::Device;
        use serde_json::Value;

        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/grpo_objective.json");
        let text = std::fs::read_to_string(&path).expect("grpo_objective.json");
        let r: Value = serde_json::from_str(&text).expect("JSON");
        let rows = |v: &Value| -> Vec<f32> {
            v.as_array()
                .expect("rows")
                .iter()
                .flat_map(|row| row.as_array().expect("row").iter())
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        };
        let g = r["G"].as_u64().expect("G") as usize;
        let t = r["T"].as_u64().expect("T") as usize;
        let lengths: Vec<usize> = r["lengths"]
            .as_array()
            .expect("lengths")
            .iter()
            .map(|l| l.as_u64().expect("length") as usize)
            .collect();
        let n = lengths.len();
        let rewards: Vec<f64> = r["rewards"]
            .as_array()
            .expect("rewards")
            .iter()
            .map(|x| x.as_f64().expect("reward"))
            .collect();
        let mask: Vec<f32> = lengths
            .iter()
            .flat_map(|&len| (0..t).map(move |j| if j < len { 1.0 } else { 0.0 }))
            .collect();
        let (logp, old, reference) = (rows(&r["logp"]), rows(&r["old_logp"]), rows(&r["ref_logp"]));
        let device = Device::flex().autodiff();
        let cases = r["cases"].as_array().expect("cases");
        assert_eq!(cases.len(), 144);
        let mut worst = 0.0f64;
        for case in cases {
            let name = |k: &str| case[k].as_str().expect("name").to_string();
            let quoted = |v: String| Value::String(v);
            let loss_type: LossType =
                serde_json::from_value(quoted(name("loss_type"))).expect("loss type");
            let scale: ScaleRewards =
                serde_json::from_value(quoted(name("scale_rewards"))).expect("scale");
            let level: ImportanceLevel =
                serde_json::from_value(quoted(name("importance_sampling_level"))).expect("level");
            let config = ObjectiveConfig {
                loss_type,
                epsilon: case["epsilon"].as_f64().expect("epsilon"),
                epsilon_high: case["epsilon_high"].as_f64().expect("epsilon_high"),
                delta: case["delta"].as_f64(),
                importance_sampling_level: level,
                beta: case["beta"].as_f64().expect("beta"),
                entropy_coef: 0.0,
                max_completion_length: t,
            };
            let adv = advantages(&rewards, g, scale);
            for (got, want) in adv
                .iter()
                .zip(case["advantages"].as_array().expect("advantages"))
            {
                assert!((got - want.as_f64().expect("advantage")).abs() < 1e-9);
            }
            let batch = MicroBatch {
                sequences: n,
                max_len: t,
                mask: mask.clone(),
                grad_mask: vec![1.0; n * t],
                old_logp: Some(old.clone()),
                ref_logp: Some(reference.clone()),
                advantages: adv.iter().map(|&a| a as f32).collect(),
            };
            let totals = StepTotals {
                sequences: n,
                tokens: lengths.iter().sum(),
            };
            let x = tensor_2d(logp.clone(), [n, t], &device).require_grad();
            let out = objective(x.clone(), None, &batch, totals, &config).expect("objective");
            let loss = f64::from(out.loss.clone().into_scalar::<f32>());
            let grads = out.loss.backward();
            let grad: Vec<f32> = x
                .grad(&grads)
                .expect("gradient")
                .into_data()
                .try_into_vec::<f32>()
                .expect("f32");
            let label = format!(
                "{:?}/{:?}/{}/{:?}/beta {}",
                config.loss_type,
                scale,
                name("clip"),
                level,
                config.beta
            );
            let want_loss = case["loss"].as_f64().expect("loss");
            assert!(
                (loss - want_loss).abs() < 1e-5,
                "{label}: loss {loss} vs {want_loss}"
            );
            worst = worst.max((loss - want_loss).abs());
            for (k, (got, want)) in grad.iter().zip(rows(&case["grad_logp"])).enumerate() {
                let d = f64::from(*got) - f64::from(want);
                worst = worst.max(d.abs());
                assert!(
                    d.abs() < 1e-5,
                    "{label}: d loss / d logp[{k}] {got} vs {want}"
                );
            }
            let units = out.clip_units as f64;
            assert_eq!(
                out.clip_units,
                match level {
                    ImportanceLevel::Token => out.tokens,
                    ImportanceLevel::Sequence => n,
                },
                "{label}: clip ratios are shares of tokens, or of sequences for GSPO"
            );
            let low = out.clipped_low as f64 / units;
            let high = out.clipped_high as f64 / units;
            let region = (out.clipped_low + out.clipped_high) as f64 / units;
            let tokens = out.tokens as f64;
            for (got, key) in [
                (low, "clip_ratio_low"),
                (high, "clip_ratio_high"),
                (region, "clip_ratio_region"),
            ] {
                let want = case[key].as_f64().expect("ratio");
                assert!((got - want).abs() < 1e-9, "{label}: {key} {got} vs {want}");
            }
            if config.beta != 0.0 {
                let kl = out.kl_sum / tokens;
                let want = case["kl"].as_f64().expect("kl");
                assert!((kl - want).abs() < 1e-5, "{label}: kl {kl} vs {want}");
            }
        }
        eprintln!("largest |difference| from the torch reference: {worst:.2e}");
        for pair in r["kl_k3"].as_array().expect("kl_k3") {
            let (lp, rf) = (
                pair["logp"].as_f64().expect("logp"),
                pair["ref"].as_f64().expect("ref"),
            );
            assert!((k3(lp, rf) - pair["kl"].as_f64().expect("kl")).abs() < 1e-12);
        }
    }

    /// The entropy bonus is inside the graph: with a coefficient, the entropy gets gradient
    /// −c × its token weight, and the log-probs' gradient is unchanged.
    #[test]
    fn the_entropy_bonus_reaches_the_gradients() {
        use burn::tensor::Device;
        let device = Device::flex().autodiff();
        let (n, t) = (2, 3);
        let batch = MicroBatch {
            sequences: n,
            max_len: t,
            mask: vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
            grad_mask: vec![1.0; n * t],
            old_logp: Some(vec![-1.0, -2.0, -1.0, -0.5, -0.7, -3.0]),
            ref_logp: None,
            advantages: vec![0.5, -0.5],
        };
        let totals = StepTotals {
            sequences: n,
            tokens: 5,
        };
        let run = |coef: f64| {
            let config = ObjectiveConfig {
                loss_type: LossType::Dapo,
                epsilon: 0.2,
                epsilon_high: 0.2,
                delta: None,
                importance_sampling_level: ImportanceLevel::Token,
                beta: 0.0,
                entropy_coef: coef,
                max_completion_length: t,
            };
            let logp = tensor_2d(
                batch.old_logp.clone().expect("old log-probs"),
                [n, t],
                &device,
            )
            .require_grad();
            let h = tensor_2d(vec![1.0, 2.0, 3.0, 0.5, 0.25, 4.0], [n, t], &device).require_grad();
            let out = objective(logp.clone(), Some(h.clone()), &batch, totals, &config)
                .expect("objective");
            let grads = out.loss.backward();
            let host = |x: Tensor<2>| x.into_data().try_into_vec::<f32>().expect("f32");
            (
                host(logp.grad(&grads).expect("logp grad")),
                h.grad(&grads).map(host),
            )
        };
        let (plain_logp, plain_h) = run(0.0);
        let (bonus_logp, bonus_h) = run(0.1);
        assert_eq!(plain_logp, bonus_logp);
        assert!(plain_h.is_none_or(|g| g.iter().all(|&x| x == 0.0)));
        let bonus_h = bonus_h.expect("the entropy gets a gradient");
        for (g, m) in bonus_h.iter().zip(&batch.mask) {
            assert!((g - (-0.1 * m / 5.0)).abs() < 1e-7, "{g}");
        }
    }
}
