//! The loop of a GRPO run: each step draws `prompts_per_step` prompts, samples
//! `num_generations` completions of each with the current policy, scores them with the run's
//! rewards, turns the rewards into group-relative advantages and takes `num_iterations`
//! optimizer steps on the clipped objective ([`super::objective`]). Metrics carry TRL's names.
//!
//! Rollouts are seeded from (seed, step), the example stream from (seed, epoch), so a resumed
//! run repeats the uninterrupted one.

use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};

use super::objective::{
    MicroBatch, ObjectiveConfig, StepTotals, advantages, informative_groups, objective,
    top_entropy_mask,
};
use crate::data::Example;
use crate::data::builtin::Problem;
use crate::infer::{GenerateRequest, GeneratedToken, SamplingConfig, generate};
use crate::kernels::{AttentionMask, in_pool};
use crate::models::CausalLm;
use crate::store::{RunId, Trace, TraceKind, TraceToken, Workspace};
use crate::text::TextTokenizer;
use crate::train::TrainError;
use crate::train::checkpoint::TrainState;
use crate::train::config::GrpoConfig;
use crate::train::optim::{AdamW, AdamWConfig, GradBuffer};
use crate::train::rewards::{RewardInput, RewardSet, Scored};
use crate::train::run::{Hooks, Outcome, Prepared, evaluate, resume, save_checkpoint};
use crate::train::schedule::learning_rate;
use crate::train::sft;

/// Alternatives kept per rollout token.
pub const TRACE_TOP_K: usize = 5;

/// How a completion ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token.
    Eos,
    /// `max_completion_length` tokens without one.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::Length => "length",
        }
    }
}

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
struct Prompt {
    example: Example,
    problem: Option<Problem>,
    ids: Vec<u32>,
}

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
    let mut optimizer = AdamW::new(AdamWConfig {
        beta1: g.betas[0],
        beta2: g.betas[1],
        eps: g.eps,
        weight_decay: g.weight_decay,
    });
    let mut state = TrainState {
        step: 0,
        next_example: 0,
        pending_example: None,
        num_tokens: 0,
        kind: if lora.is_some() { "lora" } else { "full" }.into(),
    };
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
    let writer = TraceWriter::start(workspace, run_id)?;
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
                "traces: {rollouts} rollouts stored, {:.0} bytes each, {:.1} ms per step to write \
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
        &mut crate::train::run::Stream,
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
        let accuracy = evaluate(model, tokenizer, stream, config, chat)?;
        workspace.log_metrics(run_id, 0, &[("eval/accuracy", accuracy)])?;
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
        for round in 0..=g.max_resample_rounds {
            let wanted = g.prompts_per_step - rollouts.len() / g.num_generations;
            let mut prompts = Vec::with_capacity(wanted);
            for _ in 0..wanted {
                let (example, problem) = stream.example_with_problem(state.next_example)?;
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

        // ---- the update batch: completions as `[sequences, max_len]`
        let t_scoring = Instant::now();
        let layout = Layout::new(&rollouts, g);
        let ref_logp = match reference {
            Some(reference) => Some(in_pool(|| {
                completion_logp(reference, &rollouts, &layout, None)
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
        let (mut clipped_low, mut clipped_high, mut counted, mut kl_sum) = (0, 0, 0, 0.0);
        for _ in 0..g.num_iterations {
            let mut grads = GradBuffer::default();
            let mut iteration_old = Vec::with_capacity(layout.mask.len());
            let mut loss_value = 0.0;
            for chunk in layout.chunks(g.micro_batch) {
                let (loss, stats, current) = in_pool(|| -> Result<_, TrainError> {
                    let entropy_needed = g.entropy_coef != 0.0;
                    let mut entropy = None;
                    let logp = completion_logp(
                        model,
                        &rollouts,
                        &layout.part(&chunk),
                        entropy_needed.then_some(&mut entropy),
                    )?;
                    let current = read_back(logp.clone(), "the policy's log-probs")?;
                    let old = match &old_logp {
                        Some(old) => layout.slice(old, &chunk),
                        // The first pass is the rollout policy itself: ratios are exactly 1.
                        None => current.clone(),
                    };
                    let batch = MicroBatch {
                        sequences: chunk.len(),
                        max_len: layout.max_len,
                        mask: layout.slice(&layout.mask, &chunk),
                        grad_mask: layout.slice(&layout.grad_mask, &chunk),
                        old_logp: old,
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
                    Ok((value, out, current))
                })?;
                loss_value += loss;
                iteration_old.extend(current);
                // Over every iteration, as TRL logs each of its optimizer steps: at the first
                // the policy is the one that sampled, so nothing can be clipped yet.
                clipped_low += stats.clipped_low;
                clipped_high += stats.clipped_high;
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
                old_logp = Some(iteration_old);
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
        metrics.extend([
            ("loss".to_string(), loss_sum / g.num_iterations as f64),
            ("grad_norm".to_string(), grad_norm),
            ("learning_rate".to_string(), lr),
            ("num_tokens".to_string(), state.num_tokens as f64),
            (
                "clip_ratio/low_mean".to_string(),
                clipped_low as f64 / tokens,
            ),
            (
                "clip_ratio/high_mean".to_string(),
                clipped_high as f64 / tokens,
            ),
            (
                "clip_ratio/region_mean".to_string(),
                (clipped_low + clipped_high) as f64 / tokens,
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
        writer.send(traces_of(step, &rollouts, &layout))?;
        let at_end = step == g.max_steps;
        if (eval_every > 0 && step.is_multiple_of(eval_every)) || at_end {
            let accuracy = evaluate(model, tokenizer, stream, config, chat)?;
            metrics.push(("eval/accuracy".to_string(), accuracy));
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

/// The traces of a step's rollouts, with the loss masks of `layout`.
fn traces_of(step: u64, rollouts: &[Rollout], layout: &Layout) -> Vec<Trace> {
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
struct TraceWriter {
    sender: Option<std::sync::mpsc::SyncSender<Vec<Trace>>>,
    thread: Option<std::thread::JoinHandle<Result<Written, crate::store::StoreError>>>,
}

/// What the trace writer wrote: (rollouts, bytes stored, seconds writing, batches).
type Written = (usize, u64, f64, usize);

impl TraceWriter {
    fn start(workspace: &Workspace, run_id: RunId) -> Result<Self, TrainError> {
        let own = Workspace::open(workspace.dir())?;
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Trace>>(4);
        let thread = std::thread::Builder::new()
            .name("studio-trace-writer".into())
            .spawn(move || {
                let (mut rollouts, mut secs, mut batches) = (0usize, 0.0f64, 0usize);
                for batch in receiver {
                    let t = Instant::now();
                    own.add_traces(run_id, &batch)?;
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
    fn send(&self, traces: Vec<Trace>) -> Result<(), TrainError> {
        match &self.sender {
            Some(sender) if sender.send(traces).is_ok() => Ok(()),
            _ => Err(TrainError::Internal {
                panic: "the trace writer stopped; its error is in the run log".into(),
            }),
        }
    }

    /// Waits for every queued trace to be written: (rollouts, bytes, write seconds, batches).
    fn finish(mut self) -> Result<Written, TrainError> {
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

/// Samples `num_generations` completions of every prompt and scores them.
fn sample(
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
        prompts: prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.ids.clone(), g.num_generations))
            .collect(),
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
    let rows = generate(&inference, &request, |_, _| {
        std::ops::ControlFlow::Continue(())
    })?;
    let mut out = Vec::with_capacity(rows.len());
    for (row, tokens) in rows.into_iter().enumerate() {
        let prompt = &prompts[row / g.num_generations];
        let finish = match tokens.last() {
            Some(t) if stop.contains(&t.id) => FinishReason::Eos,
            _ => FinishReason::Length,
        };
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

/// Where each rollout's completion tokens sit in the `[sequences, max_len]` layout, with the
/// loss masks.
struct Layout {
    max_len: usize,
    /// 1 for a counted completion token (truncated completions masked when asked).
    mask: Vec<f32>,
    /// 1 for a counted token in the top-entropy share.
    grad_mask: Vec<f32>,
}

impl Layout {
    fn new(rollouts: &[Rollout], g: &GrpoConfig) -> Self {
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

    fn counted_tokens(&self) -> usize {
        self.mask.iter().filter(|&&m| m > 0.0).count()
    }

    /// Sequence indices in micro-batches of at most `size`.
    fn chunks(&self, size: usize) -> Vec<Vec<usize>> {
        let n = self.mask.len() / self.max_len;
        (0..n)
            .collect::<Vec<_>>()
            .chunks(size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// The rows `chunk` of a `[sequences, max_len]` host array.
    fn slice(&self, values: &[f32], chunk: &[usize]) -> Vec<f32> {
        chunk
            .iter()
            .flat_map(|&i| {
                values[i * self.max_len..(i + 1) * self.max_len]
                    .iter()
                    .copied()
            })
            .collect()
    }

    fn part(&self, chunk: &[usize]) -> Part {
        Part {
            rows: chunk.to_vec(),
            max_len: self.max_len,
        }
    }
}

/// Some sequences of a layout.
struct Part {
    rows: Vec<usize>,
    max_len: usize,
}

/// The log-probs `[rows, max_len]` of the rollouts' completion tokens under `model` (0 at
/// padding), differentiable when `model` is on an autodiff device; with `entropy`, also the
/// entropies of the same distributions (differentiable, for the entropy bonus).
fn completion_logp(
    model: &CausalLm,
    rollouts: &[Rollout],
    part: &impl PartLike,
    entropy: Option<&mut Option<Tensor<2>>>,
) -> Result<Tensor<2>, TrainError> {
    let rows = part.rows();
    let max_len = part.max_len();
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

/// What [`completion_logp`] reads of a layout.
trait PartLike {
    fn rows(&self) -> Vec<usize>;
    fn max_len(&self) -> usize;
}

impl PartLike for Part {
    fn rows(&self) -> Vec<usize> {
        self.rows.clone()
    }
    fn max_len(&self) -> usize {
        self.max_len
    }
}

impl PartLike for Layout {
    fn rows(&self) -> Vec<usize> {
        (0..self.mask.len() / self.max_len).collect()
    }
    fn max_len(&self) -> usize {
        self.max_len
    }
}

fn read_back(t: Tensor<2>, what: &str) -> Result<Vec<f32>, TrainError> {
    t.detach()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::ReadBack {
            what: what.to_string(),
            message: format!("{e:?}"),
        })
}

fn read_back_1(t: Tensor<1>, what: &str) -> Result<f32, TrainError> {
    t.detach()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::ReadBack {
            what: what.to_string(),
            message: format!("{e:?}"),
        })?
        .first()
        .copied()
        .ok_or_else(|| TrainError::ReadBack {
            what: what.to_string(),
            message: "empty".into(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::tiny;
    use crate::train::grpo::objective::{ImportanceLevel, LossType};

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
            let logp =
                completion_logp(&model.for_inference(), &rollouts, &layout, None).expect("logp");
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
            let logp = completion_logp(&model, &rollouts, &layout, None).expect("logp");
            let current = read_back(logp.clone(), "logp").expect("read");
            let batch = MicroBatch {
                sequences: 2,
                max_len: layout.max_len,
                mask: layout.mask.clone(),
                grad_mask: layout.grad_mask.clone(),
                old_logp: current,
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
