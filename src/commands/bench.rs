//! `studio bench`: throughput of the engine on this machine. Figures, never pass/fail.

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{Result, bail};
use engine::infer::{GenerateRequest, SamplingConfig, generate};
use serde_json::json;

use crate::cli::{BenchArgs, BenchGenerateArgs, BenchTrainArgs, BenchWhat};

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.what {
        BenchWhat::Generate(g) => bench_generate(g),
        BenchWhat::Train(t) => bench_train(t),
    }
}

/// Seconds per SFT step (forward, backward, AdamW) on a fixed synthetic batch, after a warm-up.
fn time_sft_steps(args: &BenchTrainArgs, lora: bool) -> Result<f64> {
    use engine::models::lora::LoraConfig;
    use engine::train::optim::{AdamW, AdamWConfig, GradBuffer};
    use engine::train::sft::{Batch, apply_update, forward_backward};

    let backend = engine::backend::Backend::cpu().autodiff();
    let mut loaded = engine::formats::loader::load_model(&args.model.model, &backend)?;
    if lora {
        loaded.model = loaded
            .model
            .attach_lora(&LoraConfig::default())
            .map_err(anyhow::Error::msg)?;
    }
    let mut model = loaded.model;
    let vocab = loaded.tokenizer.vocab_size().min(model.config.vocab_size) as u32;
    // Deterministic ordinary token ids; the loss is on every position, as in plain causal LM SFT.
    let ids: Vec<Vec<u32>> = (0..args.batch)
        .map(|r| {
            (0..args.seq_len)
                .map(|t| ((r * 7919 + t * 104_729) as u32) % vocab)
                .collect()
        })
        .collect();
    let batch = Batch {
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
        ids,
        examples: args.batch,
    };
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
        forward_backward(&model, &batch, &mut grads, false)?;
        model = apply_update(model, &mut optimizer, &grads, 1e-5, Some(1.0)).0;
        if step > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(times.iter().sum::<f64>() / times.len().max(1) as f64)
}

fn bench_train(args: &BenchTrainArgs) -> Result<()> {
    let modes: Vec<&str> = match args.mode.as_deref() {
        Some(m) => vec![m],
        None => vec!["lora", "full"],
    };
    let tokens = (args.batch * args.seq_len) as f64;
    let mut results = serde_json::Map::new();
    for mode in modes {
        let secs = time_sft_steps(args, mode == "lora")?;
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
/// returns (prompt tokens/s, decode tokens/s).
fn measure(
    model: &engine::models::CausalLm,
    prompt: &[u32],
    batch: usize,
    new_tokens: usize,
) -> Result<(f64, f64)> {
    let mut request = GenerateRequest {
        prompts: vec![prompt.to_vec(); batch],
        max_new_tokens: 1,
        sampling: SamplingConfig::greedy(),
        stop_token_ids: Vec::new(),
        top_k_alternatives: 0,
    };
    // Prefill alone (one new token), then the full run; decode time is the difference.
    let t0 = Instant::now();
    generate(model, &request, |_, _| ControlFlow::Continue(()))?;
    let prefill = t0.elapsed().as_secs_f64();
    request.max_new_tokens = new_tokens + 1;
    let t1 = Instant::now();
    generate(model, &request, |_, _| ControlFlow::Continue(()))?;
    let total = t1.elapsed().as_secs_f64();
    let decode = (total - prefill).max(1e-9);
    Ok((
        (batch * prompt.len()) as f64 / prefill,
        (batch * new_tokens) as f64 / decode,
    ))
}

fn bench_generate(args: &BenchGenerateArgs) -> Result<()> {
    let loaded = super::open_model(&args.model)?;
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
        "backend": "cpu",
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
            "model {} on cpu, {threads} threads, {:.0} MB of f32 weights",
            loaded.name,
            weight_bytes as f64 / 1e6
        );
        println!("prompt processing ({prompt_len} tokens): {pp:>8.1} tokens/s");
        println!("decode, batch 1:                  {decode1:>8.1} tokens/s");
        println!("decode, batch {big_batch:<2}:                 {decode_b:>8.1} tokens/s");
    }
    Ok(())
}
