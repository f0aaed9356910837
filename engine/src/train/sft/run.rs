//! The SFT loop: packed micro-batches of tokenized examples, the masked token loss (completion
//! tokens only), gradient accumulation, AdamW with the schedule, evaluation and checkpoints on
//! cadence, stop requests honoured between steps. A non-finite loss stops the run and keeps
//! everything up to the last good step.

use std::time::Instant;

use super::TokenizedExample;
use crate::store::{RunId, Workspace};
use crate::train::TrainError;
use crate::train::checkpoint::TrainState;
use crate::train::optim::{AdamW, GradBuffer};
use crate::train::schedule::learning_rate;
use crate::train::session::{
    Hooks, Outcome, Prepared, Stream, evaluate, fresh_start, resume, save_checkpoint,
};
use crate::train::sft;

/// Runs (or resumes) SFT run `run_id` from what [`crate::train::session::prepare`] loaded.
pub(crate) fn execute(
    workspace: &Workspace,
    run_id: RunId,
    hooks: Hooks<'_>,
    prepared: Prepared,
) -> Result<Outcome, TrainError> {
    let Prepared {
        config,
        mut model,
        tokenizer,
        mut stream,
        lora,
        ..
    } = prepared;
    let s = &config.sft;
    let eos = model.config.eos_token_ids.first().copied();
    let pad = eos.unwrap_or(0);
    let chat = s.chat_template;
    let (mut optimizer, mut state) = fresh_start(s.betas, s.eps, s.weight_decay, lora.is_some());
    let mut last_checkpoint = resume(workspace, run_id, &mut model, &mut optimizer, &mut state)?;

    // `step`: the step that draws the example (its curriculum level depends on it).
    let tokenize =
        |stream: &mut Stream, index: u64, step: u64| -> Result<TokenizedExample, TrainError> {
            let ex = stream.example(index, step)?;
            sft::tokenize_example(&tokenizer, &ex, chat, eos)
        };
    // A pending example was drawn by the step the checkpoint ends.
    let mut pending = match state.pending_example {
        Some(i) => Some(tokenize(&mut stream, i, state.step)?),
        None => None,
    };
    let curriculum = config.data.curriculum != crate::train::config::Curriculum::None;

    let eval_every = config.eval.every;
    let ckpt_every = config.checkpoint.every;
    let save_checkpoint =
        |model: &crate::models::CausalLm, optimizer: &AdamW, state: &TrainState| {
            save_checkpoint(workspace, run_id, model, optimizer, state)
        };

    if state.step == 0 && eval_every > 0 {
        // The starting point of the eval curve.
        let eval = evaluate(&model, &tokenizer, &stream, &config, chat, 0)?;
        workspace.add_traces(run_id, &eval.traces)?;
        workspace.log_metrics(run_id, 0, &[("eval/accuracy", eval.accuracy)])?;
    }
    while state.step < s.max_steps {
        if (hooks.should_stop)()? {
            if state.step > last_checkpoint {
                save_checkpoint(&model, &optimizer, &state)?;
            }
            return Ok(Outcome::Stopped { step: state.step });
        }
        let started = Instant::now();
        let step = state.step + 1;
        // Dropout randomness is a function of (seed, step), so a resumed step repeats exactly.
        model
            .device
            .seed(config.seed.wrapping_mul(1_000_003).wrapping_add(step));
        let mut grads = GradBuffer::default();
        let (mut loss_sum, mut micro, mut correct, mut counted, mut tokens) =
            (0.0, 0usize, 0usize, 0usize, 0usize);
        let mut levels: Vec<u8> = Vec::new();
        for _ in 0..s.grad_accum {
            let mut failure = None;
            let batch = sft::build_batch(
                s.batch_size,
                s.max_seq_len,
                s.packing,
                pad,
                || {
                    let index = state.next_example;
                    state.next_example += 1;
                    if curriculum {
                        levels.push(stream.level(step, index, &[]).unwrap_or(0));
                    }
                    match tokenize(&mut stream, index, step) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            failure = Some(e);
                            None
                        }
                    }
                },
                &mut pending,
            );
            if let Some(e) = failure {
                return Err(e);
            }
            let Some(batch) = batch else {
                return Err(TrainError::NoExamples {
                    source_name: "the example stream ended".into(),
                });
            };
            let mut stats = sft::forward_backward(&model, &batch, &mut grads)?;
            if hooks.test.nan_loss_at_step == Some(step) {
                stats.loss = f64::NAN;
            }
            if !stats.loss.is_finite() {
                workspace.append_log(
                    run_id,
                    "error",
                    &format!("loss {} at step {step}", stats.loss),
                )?;
                return Err(TrainError::NonFinite {
                    value: stats.loss,
                    step,
                    last_good_step: state.step,
                    last_checkpoint,
                });
            }
            loss_sum += stats.loss;
            micro += 1;
            correct += stats.correct;
            counted += stats.counted;
            tokens += batch.tokens();
        }
        state.pending_example = pending.as_ref().map(|_| state.next_example - 1);
        let lr = learning_rate(s.lr, state.step, s.warmup_steps, s.max_steps, s.schedule);
        let clip = (s.clip_grad_norm > 0.0).then_some(s.clip_grad_norm);
        let (updated, grad_norm) = sft::apply_update(model, &mut optimizer, &grads, lr, clip)?;
        model = updated;
        state.step = step;
        state.num_tokens += tokens as u64;
        let step_time = started.elapsed().as_secs_f64();
        let mut metrics: Vec<(&str, f64)> = vec![
            ("loss", loss_sum / micro.max(1) as f64),
            ("grad_norm", grad_norm),
            ("learning_rate", lr),
            ("num_tokens", state.num_tokens as f64),
            (
                "mean_token_accuracy",
                correct as f64 / counted.max(1) as f64,
            ),
            ("step_time", step_time),
            ("tokens_per_s", tokens as f64 / step_time.max(1e-9)),
            ("epoch", state.next_example as f64 / stream.len() as f64),
        ];
        if !levels.is_empty() {
            let mean = levels.iter().map(|&l| f64::from(l)).sum::<f64>() / levels.len() as f64;
            metrics.push(("curriculum/difficulty", mean));
        }
        let at_end = step == s.max_steps;
        if (eval_every > 0 && step.is_multiple_of(eval_every)) || at_end {
            let eval = evaluate(&model, &tokenizer, &stream, &config, chat, step)?;
            workspace.add_traces(run_id, &eval.traces)?;
            metrics.push(("eval/accuracy", eval.accuracy));
        }
        workspace.log_metrics(run_id, step, &metrics)?;
        (hooks.on_step)(step, s.max_steps, &metrics);
        if (ckpt_every > 0 && step.is_multiple_of(ckpt_every)) || at_end {
            save_checkpoint(&model, &optimizer, &state)?;
            last_checkpoint = step;
        }
    }
    Ok(Outcome::Completed { step: state.step })
}
