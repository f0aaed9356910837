//! `studio bench grpo`: real GRPO steps, the loop `studio train` runs, in a scratch workspace,
//! each split into rollout, scoring and update, with the rollout's tokens/s against the same
//! model's batch-16 decode.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use engine::store::{RunId, TraceKind, Workspace};
use engine::train::run::{Hooks, TestHooks, execute};
use serde_json::json;

use super::measure;
use crate::cli::BenchGrpoArgs;

/// What one model's GRPO steps measured.
pub(super) struct GrpoFigures {
    pub model: String,
    /// Mean over the timed steps (every step after the first), in seconds.
    pub rollout_s: f64,
    pub scoring_s: f64,
    pub update_s: f64,
    pub step_s: f64,
    pub rollout_tokens_per_s: f64,
    /// Completion tokens per rollout, mean over the timed steps.
    pub completion_tokens: f64,
    /// Prompt tokens per rollout.
    pub prompt_tokens: f64,
    pub timed_steps: usize,
    /// The prompts of the first step, in order, so a peer can run the same work.
    pub prompts: Vec<String>,
}

/// The shape of the benchmarked steps.
pub(super) struct GrpoShape<'a> {
    pub data: &'a str,
    pub prompts: usize,
    pub generations: usize,
    pub max_completion_length: usize,
    pub lora_rank: usize,
    pub beta: f64,
    pub steps: u64,
}

/// The run TOML of the benchmark: the given shape, accuracy and format rewards, no evaluation
/// and one checkpoint at the end.
fn run_config(model: &str, shape: &GrpoShape<'_>) -> String {
    let quoted = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let data = if shape.data.starts_with("builtin:") {
        format!("builtin = {}", quoted(&shape.data["builtin:".len()..]))
    } else {
        format!("path = {}\nholdout = 1", quoted(shape.data))
    };
    let lora = if shape.lora_rank > 0 {
        format!(
            "[grpo.lora]\nrank = {}\nalpha = {}\n",
            shape.lora_rank,
            2 * shape.lora_rank
        )
    } else {
        String::new()
    };
    format!(
        r#"name = "bench-grpo"
algorithm = "grpo"
model = {model}
seed = 7
[data]
{data}
[grpo]
max_steps = {steps}
prompts_per_step = {prompts}
num_generations = {generations}
max_completion_length = {max_len}
temperature = 1.0
beta = {beta}
{lora}
[[rewards]]
name = "accuracy"
kind = "accuracy"
weight = 1.0
[[rewards]]
name = "format"
kind = "format"
pattern = '(?s)<think>.*</think>\s*<answer>.*</answer>'
weight = 0.5
[eval]
count = 0
[checkpoint]
every = 0
"#,
        model = quoted(model),
        steps = shape.steps,
        prompts = shape.prompts,
        generations = shape.generations,
        max_len = shape.max_completion_length,
        beta = shape.beta,
    )
}

/// Runs `shape.steps` GRPO steps of `model` in a scratch workspace and reads their split back
/// from the metrics the run logged.
pub(super) fn grpo_steps(model: &str, shape: &GrpoShape<'_>) -> Result<GrpoFigures> {
    if shape.steps < 2 {
        bail!("--steps must be at least 2: the first step warms up and is not counted");
    }
    let scratch = tempfile::tempdir().context("could not make a scratch workspace")?;
    let workspace = Workspace::open(scratch.path())?;
    let run = workspace.create_run("bench-grpo", &run_config(model, shape))?;
    execute(
        &workspace,
        run,
        Hooks {
            should_stop: &|| Ok(false),
            on_step: &mut |_, _, _| {},
            test: TestHooks::default(),
        },
    )
    .with_context(|| format!("the GRPO benchmark run of `{model}` failed"))?;
    read_figures(&workspace, run, model)
}

fn read_figures(workspace: &Workspace, run: RunId, model: &str) -> Result<GrpoFigures> {
    // Every step after the first (page faults, thread pool, allocator warm-up).
    let timed = |name: &str| -> Result<Vec<f64>> {
        let points = workspace.metric(run, name)?;
        Ok(points.iter().skip(1).map(|p| p.1).collect())
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let rollout = timed("time/rollout_s")?;
    let lengths = timed("completions/mean_length")?;
    let num_tokens = workspace.metric(run, "num_tokens")?;
    let traces = workspace.traces(run, 1, TraceKind::Rollout)?;
    let rollouts_per_step = traces.len().max(1) as f64;
    // num_tokens counts prompt and completion tokens of every rollout, cumulatively.
    let first_step_tokens = num_tokens.first().map_or(0.0, |p| p.1);
    let first_completion_tokens: usize = traces.iter().map(|t| t.tokens.len()).sum();
    let prompt_tokens = (first_step_tokens - first_completion_tokens as f64) / rollouts_per_step;
    let mut prompts: Vec<(usize, String)> = traces
        .iter()
        .filter(|t| t.sample_index == 0)
        .map(|t| (t.prompt_index, t.prompt.clone()))
        .collect();
    prompts.sort();
    let rollout_tokens = lengths.iter().sum::<f64>() * rollouts_per_step;
    let tokens_per_s = rollout_tokens / rollout.iter().sum::<f64>().max(1e-9);
    Ok(GrpoFigures {
        model: model.to_string(),
        rollout_s: mean(&rollout),
        scoring_s: mean(&timed("time/scoring_s")?),
        update_s: mean(&timed("time/update_s")?),
        step_s: mean(&timed("step_time")?),
        rollout_tokens_per_s: tokens_per_s,
        completion_tokens: mean(&lengths),
        prompt_tokens,
        timed_steps: rollout.len(),
        prompts: prompts.into_iter().map(|p| p.1).collect(),
    })
}

/// Decode tokens/s of `model` at batch 16 after a prompt of `prompt_len` tokens, for
/// `new_tokens` tokens.
fn decode_b16(model: &str, prompt_len: usize, new_tokens: usize) -> Result<f64> {
    let loaded = engine::formats::loader::load_model(model, &engine::backend::Backend::cpu())
        .with_context(|| format!("could not load model `{model}`"))?;
    let vocab = loaded
        .tokenizer
        .vocab_size()
        .min(loaded.model.config.vocab_size) as u32;
    let prompt: Vec<u32> = super::synthetic_ids(1, prompt_len.max(1), vocab).remove(0);
    measure(&loaded.model, &prompt[..2.min(prompt.len())], 1, 2)?; // warm-up
    Ok(measure(&loaded.model, &prompt, 16, new_tokens)?.1)
}

pub fn bench_grpo(args: &BenchGrpoArgs) -> Result<()> {
    let models: Vec<String> = if args.model.is_empty() {
        vec!["builtin:tiny-reasoner".to_string()]
    } else {
        args.model.clone()
    };
    let shape = if args.quick {
        GrpoShape {
            data: &args.data,
            prompts: 2,
            generations: 2,
            max_completion_length: 16,
            lora_rank: args.lora_rank,
            beta: args.beta,
            steps: 2,
        }
    } else {
        GrpoShape {
            data: &args.data,
            prompts: args.prompts,
            generations: args.num_generations,
            max_completion_length: args.max_completion_length,
            lora_rank: args.lora_rank,
            beta: args.beta,
            steps: args.steps,
        }
    };
    let training = if shape.lora_rank > 0 {
        format!("LoRA r{}", shape.lora_rank)
    } else {
        "full".to_string()
    };
    let mut reports = Vec::new();
    for model in &models {
        if !args.json {
            eprintln!("… {model}: {} GRPO steps", shape.steps);
        }
        let started = Instant::now();
        let f = grpo_steps(model, &shape)?;
        let decode = decode_b16(
            model,
            f.prompt_tokens.round() as usize,
            shape.max_completion_length,
        )?;
        let share = f.rollout_tokens_per_s / decode;
        if args.json {
            reports.push(json!({
                "model": f.model,
                "training": training.to_lowercase(),
                "prompts_per_step": shape.prompts,
                "num_generations": shape.generations,
                "max_completion_length": shape.max_completion_length,
                "beta": shape.beta,
                "timed_steps": f.timed_steps,
                "rollout_s": f.rollout_s,
                "scoring_s": f.scoring_s,
                "update_s": f.update_s,
                "step_s": f.step_s,
                "rollout_tokens_per_s": f.rollout_tokens_per_s,
                "decode_batch16_tokens_per_s": decode,
                "rollout_share_of_decode_batch16": share,
                "completion_tokens_mean": f.completion_tokens,
                "prompt_tokens_mean": f.prompt_tokens,
                "prompts": f.prompts,
            }));
            continue;
        }
        let parts = f.rollout_s + f.scoring_s + f.update_s;
        let pct = |x: f64| 100.0 * x / parts.max(1e-9);
        println!(
            "{} ({}, {} prompts × {} completions, ≤ {} tokens, beta {}; mean of {} step(s) after \
             a warm-up, {:.0} s in all)",
            f.model,
            training,
            shape.prompts,
            shape.generations,
            shape.max_completion_length,
            shape.beta,
            f.timed_steps,
            started.elapsed().as_secs_f64()
        );
        println!(
            "  step {:.2} s: rollout {:.2} s ({:.0}%), scoring {:.2} s ({:.0}%), update {:.2} s \
             ({:.0}%)",
            f.step_s,
            f.rollout_s,
            pct(f.rollout_s),
            f.scoring_s,
            pct(f.scoring_s),
            f.update_s,
            pct(f.update_s)
        );
        println!(
            "  rollout {:.1} tokens/s ({:.0} completion tokens per rollout, {:.0} prompt tokens); \
             decode batch 16: {:.1} tokens/s; rollout/decode {:.2}",
            f.rollout_tokens_per_s, f.completion_tokens, f.prompt_tokens, decode, share
        );
    }
    if args.json {
        println!("{}", json!({ "grpo": reports }));
    }
    Ok(())
}
