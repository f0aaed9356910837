//! Rollouts: sampling a step's completions with the current policy and scoring them with the
//! run's rewards, and the step's reward and completion metrics with TRL's names (the traces
//! they become are `trace_writer`'s).

use crate::data::Example;
use crate::data::builtin::Problem;
use crate::infer::{GenerateRequest, GeneratedToken, SamplingConfig, generate_groups};
use crate::models::CausalLm;
use crate::text::TextTokenizer;
use crate::train::TrainError;
use crate::train::config::GrpoConfig;
use crate::train::rewards::{RewardInput, RewardSet, Scored};

pub use crate::train::traces::{FinishReason, TRACE_TOP_K};

/// One sampled completion with what the step computed about it.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub prompt_index: usize,
    pub sample_index: usize,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub completion: String,
    /// The generated tokens with the log-prob, entropy and top alternatives of the policy's
    /// distribution (before temperature and filtering).
    pub tokens: Vec<GeneratedToken>,
    pub finish: FinishReason,
    pub scored: Scored,
    pub advantage: f64,
}

/// One prompt of a step with what its rewards need.
pub(super) struct Prompt {
    pub(super) example: Example,
    pub(super) problem: Option<Problem>,
    pub(super) ids: Vec<u32>,
}

/// Samples `num_generations` completions of every prompt and scores them.
pub(super) fn sample(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    rewards: &RewardSet,
    prompts: &[Prompt],
    g: &GrpoConfig,
    seed: u64,
) -> Result<Vec<Rollout>, TrainError> {
    let inference = model.for_inference();
    let stop = inference.config.eos_token_ids.clone();
    let request = GenerateRequest {
        prompts: prompts.iter().map(|p| p.ids.clone()).collect(),
        max_new_tokens: g.max_completion_length,
        sampling: SamplingConfig {
            temperature: g.temperature as f32,
            top_k: g.top_k,
            top_p: g.top_p as f32,
            min_p: g.min_p as f32,
            repetition_penalty: g.repetition_penalty as f32,
            seed,
        },
        stop_token_ids: stop.clone(),
        top_k_alternatives: TRACE_TOP_K,
    };
    // Each prompt is processed once; its keys and values serve the group's samples.
    let rows = generate_groups(&inference, &request, g.num_generations, |_, _| {
        std::ops::ControlFlow::Continue(())
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, tokens) in rows.into_iter().enumerate() {
        let prompt = &prompts[row / g.num_generations];
        let finish = FinishReason::of(&tokens, &stop);
        let text_ids: Vec<u32> = tokens
            .iter()
            .map(|t| t.id)
            .filter(|id| !stop.contains(id))
            .collect();
        let completion = tokenizer.decode(&text_ids)?;
        let scored = rewards.score(&RewardInput {
            completion: &completion,
            tokens: tokens.len(),
            answer: prompt.example.answer.as_deref(),
            problem: prompt.problem.as_ref(),
        });
        out.push(Rollout {
            prompt_index: row / g.num_generations,
            sample_index: row % g.num_generations,
            prompt: prompt.example.prompt.clone(),
            prompt_ids: prompt.ids.clone(),
            completion,
            tokens,
            finish,
            scored,
            advantage: 0.0,
        });
    }
    Ok(out)
}

/// The reward and completion metrics of a step, with TRL's names.
pub fn step_metrics(
    rollouts: &[Rollout],
    reward_names: &[String],
    group: usize,
) -> Vec<(String, f64)> {
    let n = rollouts.len().max(1) as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let std = |v: &[f64]| {
        if v.len() < 2 {
            return 0.0;
        }
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    };
    let totals: Vec<f64> = rollouts.iter().map(|r| r.scored.total).collect();
    let groups = totals.chunks(group.max(1)).count().max(1);
    let zero_std = totals
        .chunks(group.max(1))
        .filter(|g| g.iter().all(|r| (r - g[0]).abs() < 1e-12))
        .count();
    let mut out = vec![
        ("reward".to_string(), mean(&totals)),
        ("reward_std".to_string(), std(&totals)),
        (
            "frac_reward_zero_std".to_string(),
            zero_std as f64 / groups as f64,
        ),
    ];
    for (k, name) in reward_names.iter().enumerate() {
        let parts: Vec<f64> = rollouts.iter().map(|r| r.scored.parts[k].1).collect();
        out.push((format!("rewards/{name}/mean"), mean(&parts)));
        out.push((format!("rewards/{name}/std"), std(&parts)));
    }
    let lengths: Vec<f64> = rollouts.iter().map(|r| r.tokens.len() as f64).collect();
    let entropies: Vec<f64> = rollouts
        .iter()
        .flat_map(|r| r.tokens.iter().map(|t| f64::from(t.entropy)))
        .collect();
    out.push(("entropy".to_string(), mean(&entropies)));
    out.push(("completions/mean_length".to_string(), mean(&lengths)));
    for (label, want) in [("correct", true), ("incorrect", false)] {
        let l: Vec<f64> = rollouts
            .iter()
            .filter(|r| r.scored.correct == Some(want))
            .map(|r| r.tokens.len() as f64)
            .collect();
        if !l.is_empty() {
            out.push((format!("completions/mean_length_{label}"), mean(&l)));
        }
    }
    let clipped = rollouts
        .iter()
        .filter(|r| r.finish == FinishReason::Length)
        .count();
    out.push(("completions/clipped_ratio".to_string(), clipped as f64 / n));
    out
}
