//! `studio bench`: throughput of the engine on this machine. Figures, never pass/fail.

mod device;
mod grpo;
mod probe;

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{Result, bail};
use engine::infer::{GenerateRequest, SamplingConfig, generate};
use serde_json::json;

use engine::backend::{Backend, BackendKind};

use crate::cli::{BenchArgs, BenchGenerateArgs, BenchTrainArgs, BenchWhat};

pub fn run(args: &BenchArgs, backend: BackendKind) -> Result<()> {
    match (&args.what, backend) {
        (Some(BenchWhat::Generate(g)), _) => bench_generate(g, backend),
        (Some(BenchWhat::Train(t)), _) => bench_train(t, backend),
        (Some(BenchWhat::Grpo(_)), BackendKind::Wgpu | BackendKind::Cuda) => {
            bail!(
                "`studio bench grpo` runs on the CPU backend only (runs choose theirs in their config)"
            )
        }
        (Some(BenchWhat::Grpo(g)), BackendKind::Cpu) => grpo::bench_grpo(g),
        (None, BackendKind::Cpu) => bench_all(args),
        (None, _) => device::bench_backend(args, &super::backend_of(backend)?),
    }
}

/// The shape of one SFT benchmark step.
struct SftShape<'a> {
    model: &'a str,
    batch: usize,
    seq_len: usize,
    steps: usize,
}

/// Deterministic ordinary token ids, `rows × len`, below `vocab`.
fn synthetic_ids(rows: usize, len: usize, vocab: u32) -> Vec<Vec<u32>> {
    (0..rows)
        .map(|r| {
            (0..len)
                .map(|t| ((r * 7919 + t * 104_729) as u32) % vocab)
                .collect()
        })
        .collect()
}

/// A causal-LM batch over `ids` with the loss on every next token.
fn lm_batch(ids: Vec<Vec<u32>>) -> engine::train::sft::Batch {
    engine::train::sft::Batch {
        targets: ids
            .iter()
            .map(|row| row[1..].iter().copied().chain([0]).collect())
            .collect(),
        loss_mask: ids
            .iter()
            .map(|row| (0..row.len()).map(|t| t + 1 < row.len()).collect())
            .collect(),
        positions: ids.iter().map(|row| (0..row.len()).collect()).collect(),
        segments: ids.iter().map(|row| vec![0; row.len()]).collect(),
        examples: ids.len(),
        ids,
    }
}

/// Seconds per SFT step (forward, backward, AdamW) on a fixed synthetic batch, after a warm-up.
fn time_sft_steps(args: &SftShape<'_>, lora: bool, backend: &Backend) -> Result<f64> {
    use engine::models::lora::LoraConfig;
    use engine::train::optim::{AdamW, AdamWConfig, GradBuffer};
    use engine::train::sft::{Batch, apply_update, forward_backward};

    let mut loaded = engine::formats::loader::load_model(args.model, &backend.autodiff())?;
    if lora {
        loaded.model = loaded
            .model
            .attach_lora(&LoraConfig::default(), 0)
            .map_err(anyhow::Error::msg)?;
    }
    let mut model = loaded.model;
    let vocab = loaded.tokenizer.vocab_size().min(model.config.vocab_size) as u32;
    let batch: Batch = lm_batch(synthetic_ids(args.batch, args.seq_len, vocab));
    let mut optimizer = AdamW::new(AdamWConfig {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    });
    let mut times = Vec::new();
    for step in 0..=args.steps {
        let start = Instant::now();
        let mut grads = GradBuffer::default();
        forward_backward(&model, &batch, &mut grads)?;
        model = apply_update(model, &mut optimizer, &grads, 1e-5, Some(1.0))?.0;
        if step > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times.iter().sum::<f64>() / times.len().max(1) as f64)
}

fn bench_train(args: &BenchTrainArgs, backend: BackendKind) -> Result<()> {
    let backend = super::backend_of(backend)?;
    let modes: Vec<&str> = match args.mode.as_deref() {
        Some(m) => vec![m],
        None => vec!["lora", "full"],
    };
    let tokens = (args.batch * args.seq_len) as f64;
    let mut results = serde_json::Map::new();
    let shape = SftShape {
        model: &args.model.model,
        batch: args.batch,
        seq_len: args.seq_len,
        steps: args.steps,
    };
    for mode in modes {
        let secs = time_sft_steps(&shape, mode == "lora", &backend)?;
        results.insert(format!("{mode}_step_s"), secs.into());
        results.insert(format!("{mode}_tokens_per_s"), (tokens / secs).into());
        if !args.json {
            let label = if mode == "lora" {
                "LoRA r16 (attention)"
            } else {
                "full fine-tuning"
            };
            println!(
                "SFT {label:<21} batch {} × {}: {:>7.3} s/step, {:>8.1} tokens/s",
                args.batch,
                args.seq_len,
                secs,
                tokens / secs
            );
        }
    }
    if args.json {
        results.insert("model".into(), args.model.model.clone().into());
        results.insert("batch".into(), args.batch.into());
        results.insert("seq_len".into(), args.seq_len.into());
        println!("{}", serde_json::Value::Object(results));
    }
    Ok(())
}

/// Tokens per second for generating `new_tokens` after `prompt_len`-token prompts at `batch`;
/// returns (prompt tokens/s, decode tokens/s). Prompt time is until the first token; decode
/// speed is from the median interval between steps, so a burst of load from another process
/// on the machine moves it less than a mean would.
fn measure(
    model: &engine::models::CausalLm,
    prompt: &[u32],
    batch: usize,
    new_tokens: usize,
) -> Result<(f64, f64)> {
    let request = GenerateRequest {
        prompts: vec![prompt.to_vec(); batch],
        max_new_tokens: new_tokens + 1,
        sampling: SamplingConfig::greedy(),
        stop_token_ids: Vec::new(),
        top_k_alternatives: 0,
    };
    let start = Instant::now();
    let mut stamps = Vec::with_capacity(new_tokens + 1);
    let mut run = || {
        generate(model, &request, |row, _| {
            if row == 0 {
                stamps.push(Instant::now());
            }
            ControlFlow::Continue(())
        })
    };
    run()?;
    let first = stamps
        .first()
        .map_or(1e-9, |t| t.duration_since(start).as_secs_f64());
    let mut steps: Vec<f64> = stamps
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_secs_f64())
        .collect();
    steps.sort_by(f64::total_cmp);
    let median = steps.get(steps.len() / 2).copied().unwrap_or(f64::INFINITY);
    Ok(((batch * prompt.len()) as f64 / first, batch as f64 / median))
}

fn bench_generate(args: &BenchGenerateArgs, backend: BackendKind) -> Result<()> {
    let loaded = super::open_model(&args.model, backend)?;
    let model = &loaded.model;
    let (prompt_len, decode_steps, big_batch) = if args.quick {
        (64, 8, 4)
    } else {
        (512, 64, 16)
    };
    if prompt_len + decode_steps + 1 > model.config.max_position_embeddings {
        bail!(
            "the model's context ({}) is too short for this benchmark",
            model.config.max_position_embeddings
        );
    }
    // A deterministic prompt of ordinary text tokens.
    let text =
        "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. ".repeat(prompt_len);
    let mut prompt = loaded.tokenizer.encode(&text, false)?;
    prompt.truncate(prompt_len);

    // Warm-up (page faults, thread pool).
    measure(model, &prompt[..prompt_len.min(16)], 1, 2)?;
    let (pp, decode1) = measure(model, &prompt, 1, decode_steps)?;
    let (_, decode_b) = measure(
        model,
        &prompt[..prompt_len.min(64)],
        big_batch,
        decode_steps,
    )?;
    let weight_bytes = model.config.num_parameters() * 4;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = json!({
        "model": loaded.name,
        "backend": backend.to_string(),
        "threads": threads,
        "weights_f32_bytes": weight_bytes,
        "prompt_tokens": prompt_len,
        "prompt_tokens_per_s": pp,
        "decode_steps": decode_steps,
        "decode_batch1_tokens_per_s": decode1,
        "decode_batch": big_batch,
        "decode_batched_tokens_per_s": decode_b,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "model {} on {backend}, {threads} threads, {:.0} MB of f32 weights",
            loaded.name,
            weight_bytes as f64 / 1e6
        );
        println!("prompt processing ({prompt_len} tokens): {pp:>8.1} tokens/s");
        println!("decode, batch 1:                  {decode1:>8.1} tokens/s");
        println!("decode, batch {big_batch:<2}:                 {decode_b:>8.1} tokens/s");
    }
    Ok(())
}

/// One figure of the full benchmark, with this machine's ceiling for it.
struct Figure {
    key: &'static str,
    label: String,
    value: f64,
    unit: &'static str,
    limit: f64,
    basis: String,
}

impl Figure {
    fn json(&self) -> serde_json::Value {
        json!({
            "name": self.key,
            "label": self.label,
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit,
            "fraction_of_limit": self.value / self.limit,
            "limit_basis": self.basis,
        })
    }
}

/// The fastest of `runs` timings of `f` (seconds).
fn fastest(runs: usize, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        best = best.min(f()?);
    }
    Ok(best)
}

/// How fast all cores together read memory, GB/s, over an array of `bytes` (far larger than
/// the caches for a real figure).
fn memory_read_gbps(bytes: usize) -> Result<f64> {
    let xs = vec![1.0f32; bytes / 4];
    let secs = fastest(6, || {
        let t = Instant::now();
        std::hint::black_box(probe::parallel_sum(&xs));
        Ok(t.elapsed().as_secs_f64())
    })?;
    Ok(bytes as f64 / secs / 1e9)
}

/// Synthetic logits rows (a fixed xorshift sequence scaled to a plausible logit range).
fn synthetic_logits(rows: usize, vocab: usize) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..rows * vocab)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 30.0 - 15.0
        })
        .collect()
}

/// SFT tokens/s with LoRA r16 and with full fine-tuning, at the benchmark's batch shape.
fn sft_tokens_per_s(model: &str, sizes: &Sizes, backend: &Backend) -> Result<(f64, f64)> {
    let shape = SftShape {
        model,
        batch: sizes.sft_batch,
        seq_len: sizes.sft_seq,
        steps: sizes.sft_steps,
    };
    let tokens = (sizes.sft_batch * sizes.sft_seq) as f64;
    Ok((
        tokens / time_sft_steps(&shape, true, backend)?,
        tokens / time_sft_steps(&shape, false, backend)?,
    ))
}

/// The benchmark's prompt: ordinary text tokens, `sizes.prompt` of them or fewer where the
/// model's context must also hold the decode steps.
fn bench_prompt(loaded: &engine::formats::loader::LoadedModel, sizes: &Sizes) -> Result<Vec<u32>> {
    let context = loaded.model.config.max_position_embeddings;
    let prompt_len = sizes
        .prompt
        .min(context.saturating_sub(sizes.decode_steps + 2));
    if prompt_len < 8 {
        bail!("the model's context ({context}) is too short for this benchmark");
    }
    let text =
        "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. ".repeat(prompt_len);
    let mut prompt = loaded.tokenizer.encode(&text, false)?;
    prompt.truncate(prompt_len);
    Ok(prompt)
}

/// Sizes of the full benchmark and of `--quick`.
struct Sizes {
    prompt: usize,
    decode_steps: usize,
    big_batch: usize,
    sft_batch: usize,
    sft_seq: usize,
    sft_steps: usize,
    stats_rows: usize,
    memory_bytes: usize,
    /// `[m, k, n]` of the matrix-product probe.
    matmul: [usize; 3],
    grpo_group: usize,
    grpo_new_tokens: usize,
}

impl Sizes {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                prompt: 64,
                decode_steps: 8,
                big_batch: 4,
                sft_batch: 1,
                sft_seq: 64,
                sft_steps: 1,
                stats_rows: 8,
                memory_bytes: 64 << 20,
                matmul: [128, 576, 1536],
                grpo_group: 2,
                grpo_new_tokens: 8,
            }
        } else {
            Self {
                prompt: 512,
                decode_steps: 64,
                big_batch: 16,
                sft_batch: 4,
                sft_seq: 256,
                sft_steps: 2,
                stats_rows: 64,
                memory_bytes: 1 << 30,
                matmul: [512, 576, 1536],
                grpo_group: 8,
                grpo_new_tokens: 64,
            }
        }
    }
}

/// `studio bench`: every figure, each against this machine's limit for it.
fn bench_all(args: &BenchArgs) -> Result<()> {
    let sizes = Sizes::new(args.quick);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let say = |what: &str| {
        if !args.json {
            eprintln!("… {what}");
        }
    };

    say("machine limits: f32 matrix product, memory read");
    let gflops = probe::matmul_gflops(sizes.matmul, 10);
    let gbps = memory_read_gbps(sizes.memory_bytes)?;

    say(&format!("loading {}", args.model));
    let loaded = engine::formats::loader::load_model(&args.model, &engine::backend::Backend::cpu())
        .map_err(|e| anyhow::anyhow!("could not load model `{}`: {e}", args.model))?;
    let model = &loaded.model;
    let config = &model.config;
    let prompt = bench_prompt(&loaded, &sizes)?;
    let prompt_len = prompt.len();

    // What one token costs: weights read per decoded token, FLOPs per prompt and training token.
    let embed = (config.vocab_size * config.hidden_size) as f64;
    let params = config.num_parameters() as f64;
    let head_params = if config.tie_word_embeddings {
        params
    } else {
        params - embed
    }; // every weight a decode step reads (the LM head, not the embedding table)
    let body_params = head_params - embed; // without the LM head
    let q_dim = (config.num_attention_heads * config.head_dim) as f64;
    let attn_flops = |ctx: f64| 4.0 * config.num_hidden_layers as f64 * q_dim * ctx;
    let prompt_flops = 2.0 * body_params + attn_flops(prompt_len as f64 / 2.0);
    let decode_bytes = 4.0 * head_params;
    let train_ctx = sizes.sft_seq as f64 / 2.0;

    say("prompt processing and decode");
    measure(model, &prompt[..prompt_len.min(16)], 1, 2)?; // warm-up
    let (pp, decode1) = measure(model, &prompt, 1, sizes.decode_steps)?;
    let short = &prompt[..prompt_len.min(64)];
    let (_, decode_b) = measure(model, short, sizes.big_batch, sizes.decode_steps)?;

    say("token statistics");
    let vocab = config.vocab_size;
    let logits = synthetic_logits(sizes.stats_rows, vocab);
    std::hint::black_box(engine::kernels::token_stats::rows_stats(&logits, vocab, 5));
    // Best of many: one pass takes milliseconds, and a shared host's bursts last longer.
    let stats_s = fastest(20, || {
        let t = Instant::now();
        std::hint::black_box(engine::kernels::token_stats::rows_stats(&logits, vocab, 5));
        Ok(t.elapsed().as_secs_f64())
    })?;
    let stats_gbps = (logits.len() * 4) as f64 / stats_s / 1e9;

    say("SFT steps (LoRA r16, full)");
    let (lora, full) = sft_tokens_per_s(&args.model, &sizes, &Backend::cpu())?;

    say("GRPO steps (one warm-up, one timed)");
    let grpo = grpo::grpo_steps(
        &args.model,
        &grpo::GrpoShape {
            data: "builtin:arithmetic",
            prompts: 1,
            generations: sizes.grpo_group,
            max_completion_length: sizes.grpo_new_tokens,
            lora_rank: 16,
            beta: 0.04,
            steps: 2,
        },
    )?;
    let (rollout_s, reference_s, update_s) = (grpo.rollout_s, grpo.scoring_s, grpo.update_s);

    let gf = |x: f64| gflops * 1e9 / x;
    let figures = [
        Figure {
            key: "prompt_tokens_per_s",
            label: format!("prompt processing ({prompt_len} tokens)"),
            value: pp,
            unit: "tokens/s",
            limit: gf(prompt_flops),
            basis: format!("{:.1} MFLOP/token at the matmul limit", prompt_flops / 1e6),
        },
        Figure {
            key: "decode_batch1_tokens_per_s",
            label: "decode, batch 1".into(),
            value: decode1,
            unit: "tokens/s",
            limit: gbps * 1e9 / decode_bytes,
            basis: format!("{:.1} MB of f32 weights read per token", decode_bytes / 1e6),
        },
        Figure {
            key: "decode_batched_tokens_per_s",
            label: format!("decode, batch {}", sizes.big_batch),
            value: decode_b,
            unit: "tokens/s",
            limit: (gbps * 1e9 * sizes.big_batch as f64 / decode_bytes).min(gf(2.0 * head_params)),
            basis: "weights read once per step, or the matmul limit".into(),
        },
        Figure {
            key: "sft_lora_tokens_per_s",
            label: format!("SFT LoRA r16, {} × {}", sizes.sft_batch, sizes.sft_seq),
            value: lora,
            unit: "tokens/s",
            limit: gf(4.0 * head_params + 2.0 * attn_flops(train_ctx)),
            basis: "4 FLOP/weight/token (forward, input gradients)".into(),
        },
        Figure {
            key: "sft_full_tokens_per_s",
            label: format!("SFT full, {} × {}", sizes.sft_batch, sizes.sft_seq),
            value: full,
            unit: "tokens/s",
            limit: gf(6.0 * head_params + 3.0 * attn_flops(train_ctx)),
            basis: "6 FLOP/weight/token (forward, input and weight gradients)".into(),
        },
        Figure {
            key: "token_stats_gb_per_s",
            label: format!("token statistics ({} × {vocab} logits)", sizes.stats_rows),
            value: stats_gbps,
            unit: "GB/s",
            limit: gbps,
            basis: "memory read".into(),
        },
    ];
    let grpo_total = rollout_s + reference_s + update_s;
    if args.json {
        let report = json!({
            "model": loaded.name,
            "quick": args.quick,
            "backend": "cpu",
            "threads": threads,
            "machine": {
                "cpu": engine::kernels::simd::cpu_summary(),
                "kernel_path": engine::kernels::simd::current().name(),
                "gemm_path": engine::kernels::simd::gemm_path(),
                "matmul_gflops": gflops,
                "memory_read_gb_per_s": gbps,
            },
            "figures": figures.iter().map(Figure::json).collect::<Vec<_>>(),
            "grpo_step": {
                "group": sizes.grpo_group,
                "prompt_tokens": grpo.prompt_tokens,
                "completion_tokens": grpo.completion_tokens,
                "new_tokens": sizes.grpo_new_tokens,
                "rollout_s": rollout_s,
                "reference_s": reference_s,
                "update_s": update_s,
            },
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "model {} on cpu, {threads} threads{}",
        loaded.name,
        if args.quick { " (quick sizes)" } else { "" }
    );
    println!("cpu: {}", engine::kernels::simd::cpu_summary());
    println!(
        "machine: f32 matrix product {gflops:.0} GFLOP/s ({}×{}·{}×{}), memory read {gbps:.1} GB/s",
        sizes.matmul[0], sizes.matmul[1], sizes.matmul[1], sizes.matmul[2]
    );
    if args.quick || cfg!(debug_assertions) {
        println!(
            "(quick sizes or a debug build: shapes are small or the engine unoptimized, so the \
             limits and shares below are indicative only)"
        );
    }
    println!(
        "\n{:<36} {:>10} {:>10} {:>8}  {:<9} limit basis",
        "", "measured", "limit", "share", "unit"
    );
    for f in &figures {
        println!(
            "{:<36} {:>10.1} {:>10.1} {:>7.0}%  {:<9} {}",
            f.label,
            f.value,
            f.limit,
            100.0 * f.value / f.limit,
            f.unit,
            f.basis
        );
    }
    println!(
        "\nGRPO step, LoRA r16, beta 0.04 ({} rollouts of one prompt, ≤ {} tokens): rollouts {:.2} \
         s ({:.0}%), reference scoring {:.2} s ({:.0}%), update {:.2} s ({:.0}%)\n\
         (`studio bench grpo` for the full step: 8 prompts × 8 completions of 128 tokens)",
        sizes.grpo_group,
        sizes.grpo_new_tokens,
        rollout_s,
        100.0 * rollout_s / grpo_total,
        reference_s,
        100.0 * reference_s / grpo_total,
        update_s,
        100.0 * update_s / grpo_total
    );
    Ok(())
}
