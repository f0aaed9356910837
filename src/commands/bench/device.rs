//! `studio bench --backend wgpu|cuda`: the same figures as the CPU benchmark, on a GPU runtime.
//! There is no machine probe for a GPU here, so the figures carry no limit; the token statistics
//! are measured against the composed path (log-softmax, exp, sum, top-k as burn ops) on the same
//! device, in GB/s of logits.

use std::time::Instant;

use anyhow::Result;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use engine::backend::Backend;
use serde_json::json;

use super::{Sizes, bench_prompt, fastest, measure, sft_tokens_per_s, synthetic_logits};
use crate::cli::BenchArgs;

/// Seconds for the fused kernel and for the composed path over `logits`, fastest of 5 each after
/// a warm-up (which compiles the kernels).
pub(crate) fn token_stats_seconds(
    device: &Device,
    logits: &[f32],
    vocab: usize,
) -> Result<(f64, f64)> {
    let rows = logits.len() / vocab;
    let tensor = Tensor::<2>::from_data(TensorData::new(logits.to_vec(), [rows, vocab]), device);
    let targets = vec![0u32; rows];
    let fused = || -> Result<f64> {
        let t = Instant::now();
        let out = engine::kernels::fused::token_stats(tensor.clone(), &targets, 5)
            .map_err(anyhow::Error::msg)?;
        std::hint::black_box(out);
        Ok(t.elapsed().as_secs_f64())
    };
    let composed = || -> Result<f64> {
        let t = Instant::now();
        let lp = log_softmax(tensor.clone(), 1);
        let entropy = (lp.clone().exp() * lp.clone()).sum_dim(1).neg();
        let (top, ids) = lp.topk_with_indices(5, 1);
        let err = |e| anyhow::anyhow!("reading the composed statistics back: {e:?}");
        let host = (
            entropy.into_data().try_to_vec::<f32>().map_err(err)?,
            top.into_data().try_to_vec::<f32>().map_err(err)?,
            ids.into_data(),
        );
        std::hint::black_box(host);
        Ok(t.elapsed().as_secs_f64())
    };
    fused()?;
    composed()?;
    Ok((fastest(5, fused)?, fastest(5, composed)?))
}

/// Qwen2's vocabulary size.
const QWEN2_VOCAB: usize = 151_936;

pub(crate) fn bench_backend(args: &BenchArgs, backend: &Backend) -> Result<()> {
    let sizes = Sizes::new(args.quick);
    let say = |what: &str| {
        if !args.json {
            eprintln!("… {what}");
        }
    };
    say(&format!("loading {} on {}", args.model, backend.kind));
    let loaded = engine::formats::loader::load_model(&args.model, backend)
        .map_err(|e| anyhow::anyhow!("could not load model `{}`: {e}", args.model))?;
    let model = &loaded.model;
    let prompt = bench_prompt(&loaded, &sizes)?;
    let prompt_len = prompt.len();

    // Warm-ups of the very shapes timed: a GPU runtime compiles kernels per shape class.
    say("prompt processing and decode (the first calls compile the kernels)");
    measure(model, &prompt, 1, 2)?;
    let (pp, decode1) = measure(model, &prompt, 1, sizes.decode_steps)?;
    let short = &prompt[..prompt_len.min(64)];
    measure(model, short, sizes.big_batch, 2)?;
    let (_, decode_b) = measure(model, short, sizes.big_batch, sizes.decode_steps)?;

    say("token statistics: fused kernel and composed ops");
    // Qwen2's vocabulary, whatever the model's: the rows the kernel exists for.
    let vocab = QWEN2_VOCAB;
    let logits = synthetic_logits(sizes.stats_rows, vocab);
    let (fused_s, composed_s) = token_stats_seconds(&backend.device, &logits, vocab)?;
    let bytes = (logits.len() * 4) as f64;

    say("SFT steps (LoRA r16, full)");
    let (lora, full) = sft_tokens_per_s(&args.model, &sizes, backend)?;

    let figures = [
        (
            "prompt_tokens_per_s",
            format!("prompt processing ({prompt_len} tokens)"),
            pp,
            "tokens/s",
        ),
        (
            "decode_batch1_tokens_per_s",
            "decode, batch 1".to_string(),
            decode1,
            "tokens/s",
        ),
        (
            "decode_batched_tokens_per_s",
            format!("decode, batch {}", sizes.big_batch),
            decode_b,
            "tokens/s",
        ),
        (
            "sft_lora_tokens_per_s",
            format!("SFT LoRA r16, {} × {}", sizes.sft_batch, sizes.sft_seq),
            lora,
            "tokens/s",
        ),
        (
            "sft_full_tokens_per_s",
            format!("SFT full, {} × {}", sizes.sft_batch, sizes.sft_seq),
            full,
            "tokens/s",
        ),
        (
            "token_stats_gb_per_s",
            format!("token statistics, fused ({} × {vocab})", sizes.stats_rows),
            bytes / fused_s / 1e9,
            "GB/s",
        ),
        (
            "token_stats_composed_gb_per_s",
            "token statistics, composed ops".to_string(),
            bytes / composed_s / 1e9,
            "GB/s",
        ),
    ];
    let adapter = engine::backend::adapters()
        .into_iter()
        .next()
        .map(|a| a.name);
    if args.json {
        let report = json!({
            "model": loaded.name,
            "quick": args.quick,
            "backend": backend.kind.to_string(),
            "adapter": adapter,
            "figures": figures
                .iter()
                .map(|(key, label, value, unit)| json!({"name": key, "label": label, "value": value, "unit": unit}))
                .collect::<Vec<_>>(),
            "token_stats_fused_over_composed": composed_s / fused_s,
        });
        println!("{report}");
        return Ok(());
    }
    println!(
        "model {} on {} ({}){}",
        loaded.name,
        backend.kind,
        adapter.as_deref().unwrap_or("adapter unknown"),
        if args.quick { " (quick sizes)" } else { "" }
    );
    println!("(no machine probe on a GPU backend: figures without a limit)\n");
    for (_, label, value, unit) in &figures {
        println!("{label:<48} {value:>10.2}  {unit}");
    }
    println!(
        "\nfused token statistics: {:.1}× the composed ops' speed",
        composed_s / fused_s
    );
    Ok(())
}
