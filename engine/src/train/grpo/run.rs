//! The loop of a GRPO run: each step draws `prompts_per_step` prompts, samples
//! `num_generations` completions of each with the current policy, scores them with the run's
//! rewards, turns the rewards into group-relative advantages and takes `num_iterations`
//! optimizer steps on the clipped objective ([`super::objective`]). Metrics carry TRL's names.
//!
//! Rollouts are seeded from (seed, step), the example stream from (seed, epoch), so a resumed
//! run repeats the uninterrupted one.

use std::time::Instant;

use super::batch::{Layout, completion_logp, read_back, read_back_1};
use super::objective::{
    MicroBatch, ObjectiveConfig, StepTotals, advantages, informative_groups, objective,
};
use super::rollout::{Prompt, Rollout, sample, step_metrics};
use super::trace_writer::{TraceWriter, traces_of};
use crate::kernels::in_pool;
use crate::models::CausalLm;
use crate::store::{RunId, Workspace};
use crate::text::TextTokenizer;
use crate::train::TrainError;
use crate::train::checkpoint::TrainState;
use crate::train::optim::{AdamW, GradBuffer};
use crate::train::rewards::RewardSet;
use crate::train::schedule::learning_rate;
use crate::train::session::{
    Hooks, Outcome, Prepared, evaluate, fresh_start, resume, save_checkpoint, update_curriculum,
};
use crate::train::sft;

/// Runs (or resumes) a GRPO run prepared by `train::run`.
pub(crate) fn execute(
    workspace: &Workspace,
    run_id: RunId,
    hooks: Hooks<'_>,
    prepared: Prepared,
) -> Result<Outcome, TrainError> {
    let Prepared {
        config,
        origin,
        mut model,
        tokenizer,
        mut stream,
        lora,
    } = prepared;
    let g = &config.grpo;
    let rewards = RewardSet::compile(&config.rewards, g.max_completion_length).map_err(|e| {
        TrainError::Setting {
            origin: origin.clone(),
            setting: "rewards".into(),
            problem: e.to_string(),
        }
    })?;
    let chat = g.chat_template;
    let (mut optimizer, mut state) = fresh_start(g.betas, g.eps, g.weight_decay, lora.is_some());
    // The frozen reference of the KL term: the base with the adapters off for LoRA, else the
    // weights the run started from (taken before a resume restores later ones).
    let reference = (g.beta != 0.0).then(|| reference_model(&model));
    let mut last_checkpoint = resume(workspace, run_id, &mut model, &mut optimizer, &mut state)?;
    let objective_config = ObjectiveConfig {
        loss_type: g.loss_type,
        epsilon: g.epsilon,
        epsilon_high: g.epsilon_high.unwrap_or(g.epsilon),
        delta: g.delta,
        importance_sampling_level: g.importance_sampling_level,
        beta: g.beta,
        entropy_coef: g.entropy_coef,
        max_completion_length: g.max_completion_length,
    };
    let eval_every = config.eval.every;
    let ckpt_every = config.checkpoint.every;
    let writer = TraceWriter::start(workspace, run_id, g.traces_keep_every, g.traces_keep_recent)?;
    let outcome = steps(
        workspace,
        run_id,
        hooks,
        &writer,
        Loop {
            config: &config,
            rewards: &rewards,
            objective: &objective_config,
            reference: reference.as_ref(),
            tokenizer: &tokenizer,
            chat,
            eval_every,
            ckpt_every,
        },
        (
            &mut model,
            &mut optimizer,
            &mut state,
            &mut stream,
            &mut last_checkpoint,
        ),
    );
    let written = writer.finish();
    let outcome = outcome?;
    let (rollouts, bytes, secs, batches) = written?;
    if rollouts > 0 {
        workspace.append_log(
            run_id,
            "info",
            &format!(
                "traces: {rollouts} stored (rollouts and evaluation answers), {:.0} bytes each, {:.1} ms per step to write \
                 (on the trace writer thread)",
                bytes as f64 / rollouts as f64,
                1e3 * secs / batches.max(1) as f64
            ),
        )?;
    }
    Ok(outcome)
}

/// What the step loop reads and never changes.
struct Loop<'a> {
    config: &'a crate::train::config::RunConfig,
    rewards: &'a RewardSet,
    objective: &'a ObjectiveConfig,
    reference: Option<&'a CausalLm>,
    tokenizer: &'a TextTokenizer,
    chat: bool,
    eval_every: u64,
    ckpt_every: u64,
}

/// The steps of the run, from `state.step` to the end or a stop.
fn steps(
    workspace: &Workspace,
    run_id: RunId,
    hooks: Hooks<'_>,
    writer: &TraceWriter,
    l: Loop<'_>,
    (model, optimizer, state, stream, last_checkpoint): (
        &mut CausalLm,
        &mut AdamW,
        &mut TrainState,
        &mut crate::train::session::Stream,
        &mut u64,
    ),
) -> Result<Outcome, TrainError> {
    let Loop {
        config,
        rewards,
        objective: objective_config,
        reference,
        tokenizer,
        chat,
        eval_every,
        ckpt_every,
    } = l;
    let g = &config.grpo;
    if state.step == 0 && eval_every > 0 {
        let eval = evaluate(model, tokenizer, stream, config, chat, 0)?;
        writer.send(eval.traces)?;
        workspace.log_metrics(run_id, 0, &[("eval/accuracy", eval.accuracy)])?;
    }
    let mut zero_signal_steps = 0u64;
    while state.step < g.max_steps {
        if (hooks.should_stop)()? {
            if state.step > *last_checkpoint {
                save_checkpoint(workspace, run_id, model, optimizer, state)?;
            }
            return Ok(Outcome::Stopped { step: state.step });
        }
        let started = Instant::now();
        let step = state.step + 1;
        let step_seed = config.seed.wrapping_mul(1_000_003).wrapping_add(step);
        model.device.seed(step_seed);

        // ---- rollouts, with dynamic sampling's extra rounds when asked for
        let t_rollout = Instant::now();
        let mut rollouts: Vec<Rollout> = Vec::new();
        let mut groups_drawn = 0usize;
        let mut levels: Vec<u8> = Vec::new();
        for round in 0..=g.max_resample_rounds {
            let wanted = g.prompts_per_step - rollouts.len() / g.num_generations;
            let mut prompts = Vec::with_capacity(wanted);
            for _ in 0..wanted {
                let level = stream.level(step, state.next_example, &state.curriculum_values);
                levels.extend(level);
                let (example, problem) = stream.example_with_problem(state.next_example, level)?;
                state.next_example += 1;
                let ids = sft::prompt_ids(tokenizer, &example, chat)?;
                prompts.push(Prompt {
                    example,
                    problem,
                    ids,
                });
            }
            let seed = step_seed ^ (round as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut batch = sample(model, tokenizer, rewards, &prompts, g, seed)?;
            for r in &mut batch {
                r.prompt_index += groups_drawn;
            }
            groups_drawn += prompts.len();
            let totals: Vec<f64> = batch.iter().map(|r| r.scored.total).collect();
            let keep: Vec<usize> = if g.dynamic_sampling {
                informative_groups(&totals, g.num_generations)
            } else {
                (0..prompts.len()).collect()
            };
            for group in keep {
                let start = group * g.num_generations;
                rollouts.extend(batch[start..start + g.num_generations].iter().cloned());
            }
            if !g.dynamic_sampling || rollouts.len() / g.num_generations >= g.prompts_per_step {
                break;
            }
        }
        let rollout_s = t_rollout.elapsed().as_secs_f64();
        let totals: Vec<f64> = rollouts.iter().map(|r| r.scored.total).collect();
        let adv = advantages(&totals, g.num_generations, g.scale_rewards);
        for (r, a) in rollouts.iter_mut().zip(&adv) {
            r.advantage = *a;
        }
        // The adaptive curriculum draws one level per step and learns from its advantages.
        if let Some(&level) = levels.first() {
            update_curriculum(
                &mut state.curriculum_values,
                stream.adaptive_levels(),
                level,
                &adv,
            );
        }

        // ---- the update batch: completions as `[sequences, max_len]`
        let t_scoring = Instant::now();
        let layout = Layout::new(&rollouts, g);
        let ref_logp = match reference {
            Some(reference) => Some(in_pool(|| {
                completion_logp(reference, &rollouts, &layout, &layout.rows(), None)
                    .and_then(|t| read_back(t, "the reference's log-probs"))
            })?),
            None => None,
        };
        let scoring_s = t_scoring.elapsed().as_secs_f64();

        let t_update = Instant::now();
        let lr = learning_rate(g.lr, state.step, g.warmup_steps, g.max_steps, g.schedule);
        let clip = (g.clip_grad_norm > 0.0).then_some(g.clip_grad_norm);
        let mut old_logp: Option<Vec<f32>> = None;
        let (mut loss_sum, mut grad_norm) = (0.0, 0.0);
        let (mut clipped_low, mut clipped_high, mut clip_units) = (0, 0, 0);
        let (mut counted, mut kl_sum) = (0, 0.0);
        for _ in 0..g.num_iterations {
            let mut grads = GradBuffer::default();
            // The first pass's log-probs are the old ones of the passes after it.
            let mut first_pass_logp = Vec::new();
            let mut loss_value = 0.0;
            for chunk in layout.chunks(g.micro_batch) {
                let (loss, stats) = in_pool(|| -> Result<_, TrainError> {
                    let entropy_needed = g.entropy_coef != 0.0;
                    let mut entropy = None;
                    let logp = completion_logp(
                        model,
                        &rollouts,
                        &layout,
                        &chunk,
                        entropy_needed.then_some(&mut entropy),
                    )?;
                    let batch = MicroBatch {
                        sequences: chunk.len(),
                        max_len: layout.max_len,
                        mask: layout.slice(&layout.mask, &chunk),
                        grad_mask: layout.slice(&layout.grad_mask, &chunk),
                        // The first pass is the rollout policy itself: ratios are exactly 1.
                        old_logp: old_logp.as_ref().map(|old| layout.slice(old, &chunk)),
                        ref_logp: ref_logp.as_ref().map(|r| layout.slice(r, &chunk)),
                        advantages: chunk.iter().map(|&i| adv[i] as f32).collect(),
                    };
                    let totals = StepTotals {
                        sequences: rollouts.len(),
                        tokens: layout.counted_tokens(),
                    };
                    let out = objective(logp, entropy, &batch, totals, objective_config)?;
                    let value = f64::from(read_back_1(out.loss.clone(), "the loss")?);
                    let mut g = out.loss.backward();
                    grads.accumulate(&model.transformer, &mut g)?;
                    Ok((value, out))
                })?;
                loss_value += loss;
                if let Some(current) = &stats.policy_logp {
                    first_pass_logp.extend_from_slice(current);
                }
                // Over every iteration, as TRL logs each of its optimizer steps: at the first
                // the policy is the one that sampled, so nothing can be clipped yet.
                clipped_low += stats.clipped_low;
                clipped_high += stats.clipped_high;
                clip_units += stats.clip_units;
                counted += stats.tokens;
                kl_sum += stats.kl_sum;
            }
            if hooks.test.nan_loss_at_step == Some(step) {
                loss_value = f64::NAN;
            }
            if !loss_value.is_finite() {
                workspace.append_log(
                    run_id,
                    "error",
                    &format!("loss {loss_value} at step {step}"),
                )?;
                return Err(TrainError::NonFinite {
                    value: loss_value,
                    step,
                    last_good_step: state.step,
                    last_checkpoint: *last_checkpoint,
                });
            }
            if old_logp.is_none() {
                old_logp = Some(first_pass_logp);
            }
            // Each micro-batch's loss is its share of the step's: the shares add, not average.
            grads.micro_batches = 1;
            // A module clone shares its tensors; the optimizer returns the updated ones.
            let (updated, norm) = optimizer.step(model.transformer.clone(), &grads, lr, clip)?;
            model.transformer = updated;
            loss_sum += loss_value;
            grad_norm = norm;
        }
        let update_s = t_update.elapsed().as_secs_f64();

        state.step = step;
        let completion_tokens: usize = rollouts.iter().map(|r| r.tokens.len()).sum();
        let prompt_tokens: usize = rollouts.iter().map(|r| r.prompt_ids.len()).sum();
        state.num_tokens += (completion_tokens + prompt_tokens) as u64;
        let step_time = started.elapsed().as_secs_f64();
        let names: Vec<String> = rewards.rewards.iter().map(|r| r.name.clone()).collect();
        let mut metrics = step_metrics(&rollouts, &names, g.num_generations);
        let zero_std = metrics
            .iter()
            .find(|(n, _)| n == "frac_reward_zero_std")
            .map_or(0.0, |m| m.1);
        let tokens = counted.max(1) as f64;
        let units = clip_units.max(1) as f64;
        metrics.extend([
            ("loss".to_string(), loss_sum / g.num_iterations as f64),
            ("grad_norm".to_string(), grad_norm),
            ("learning_rate".to_string(), lr),
            ("num_tokens".to_string(), state.num_tokens as f64),
            (
                "clip_ratio/low_mean".to_string(),
                clipped_low as f64 / units,
            ),
            (
                "clip_ratio/high_mean".to_string(),
                clipped_high as f64 / units,
            ),
            (
                "clip_ratio/region_mean".to_string(),
                (clipped_low + clipped_high) as f64 / units,
            ),
            ("step_time".to_string(), step_time),
            ("time/rollout_s".to_string(), rollout_s),
            ("time/scoring_s".to_string(), scoring_s),
            ("time/update_s".to_string(), update_s),
            (
                "rollout_tokens_per_s".to_string(),
                completion_tokens as f64 / rollout_s.max(1e-9),
            ),
            (
                "epoch".to_string(),
                state.next_example as f64 / stream.len() as f64,
            ),
        ]);
        if g.beta != 0.0 {
            metrics.push(("kl".to_string(), kl_sum / tokens));
        }
        if config.data.curriculum != crate::train::config::Curriculum::None && !levels.is_empty() {
            let mean = levels.iter().map(|&l| f64::from(l)).sum::<f64>() / levels.len() as f64;
            metrics.push(("curriculum/difficulty".to_string(), mean));
        }
        writer.send(traces_of(step, &rollouts, &layout))?;
        let at_end = step == g.max_steps;
        if (eval_every > 0 && step.is_multiple_of(eval_every)) || at_end {
            let eval = evaluate(model, tokenizer, stream, config, chat, step)?;
            writer.send(eval.traces)?;
            metrics.push(("eval/accuracy".to_string(), eval.accuracy));
        }
        let borrowed: Vec<(&str, f64)> = metrics.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        workspace.log_metrics(run_id, step, &borrowed)?;
        (hooks.on_step)(step, g.max_steps, &borrowed);
        zero_signal_steps = if zero_std > 0.95 {
            zero_signal_steps + 1
        } else {
            0
        };
        if zero_signal_steps == 5 {
            workspace.append_log(
                run_id,
                "warn",
                &format!(
                    "step {step}: for 5 steps almost every group's rewards agreed \
                     (frac_reward_zero_std ≈ 1), so advantages, loss and gradients are 0 and \
                     nothing is learned; make the task easier or the rewards finer, raise \
                     num_generations or temperature, or set dynamic_sampling = true"
                ),
            )?;
        }
        if (ckpt_every > 0 && step.is_multiple_of(ckpt_every)) || at_end {
            save_checkpoint(workspace, run_id, model, optimizer, state)?;
            *last_checkpoint = step;
        }
    }
    Ok(Outcome::Completed { step: state.step })
}

/// The reference policy for the KL term: the inference copy of `model` with every LoRA adapter
/// removed (the frozen base), or of the full model as the run starts.
fn reference_model(model: &CausalLm) -> CausalLm {
    let mut reference = model.for_inference();
    for layer in &mut reference.transformer.layers {
        let a = &mut layer.self_attn;
        for p in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj] {
            p.lora = None;
        }
        let m = &mut layer.mlp;
        for p in [&mut m.gate_proj, &mut m.up_proj, &mut m.down_proj] {
            p.lora = None;
        }
    }
    reference
}
