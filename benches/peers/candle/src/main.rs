//! candle (candle-transformers' Llama) on the studio's benchmark: a 512-token prompt in one
//! forward pass, then batch-1 decode with its KV cache, f32 on the CPU. Prints one JSON line.
//!
//! Usage: candle-peer MODEL_DIR [PROMPT_TOKENS] [DECODE_STEPS]

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama::{Cache, Llama, LlamaConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or("usage: candle-peer MODEL_DIR")?);
    let prompt_len: usize = args.get(2).map_or(Ok(512), |s| s.parse())?;
    let steps: usize = args.get(3).map_or(Ok(64), |s| s.parse())?;
    let device = Device::Cpu;
    let config: LlamaConfig = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let config = config.into_config(false);
    let weights: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    // SAFETY (candle's API): the files are memory-mapped read-only and not modified while used.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &device)? };
    let model = Llama::load(vb, &config)?;
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
        .map_err(|e| format!("tokenizer: {e}"))?;
    let text = "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. "
        .repeat(prompt_len);
    let mut ids: Vec<u32> = tokenizer
        .encode(text, false)
        .map_err(|e| format!("encode: {e}"))?
        .get_ids()
        .to_vec();
    ids.truncate(prompt_len);

    let run = |ids: &[u32], steps: usize| -> Result<(f64, f64), Box<dyn std::error::Error>> {
        let mut cache = Cache::new(true, DType::F32, &config, &device)?;
        let input = Tensor::new(ids, &device)?.unsqueeze(0)?;
        let t = Instant::now();
        let logits = model.forward(&input, 0, &mut cache)?;
        let mut next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        let prefill = t.elapsed().as_secs_f64();
        // The median step, as `studio bench` reports decode.
        let mut intervals = Vec::with_capacity(steps);
        for i in 0..steps {
            let t = Instant::now();
            let input = Tensor::new(&[next], &device)?.unsqueeze(0)?;
            let logits = model.forward(&input, ids.len() + i, &mut cache)?;
            next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
            intervals.push(t.elapsed().as_secs_f64());
        }
        intervals.sort_by(f64::total_cmp);
        Ok((prefill, intervals.get(steps / 2).copied().unwrap_or(f64::NAN)))
    };
    run(&ids[..16.min(ids.len())], 2)?; // warm-up
    let (prefill, decode) = run(&ids, steps)?;
    println!(
        "{}",
        serde_json::json!({
            "peer": "candle",
            "candle": "0.9",
            "threads": candle_core::utils::get_num_threads(),
            "prompt_tokens": ids.len(),
            "prompt_tokens_per_s": ids.len() as f64 / prefill,
            "decode_steps": steps,
            "decode_batch1_tokens_per_s": 1.0 / decode,
        })
    );
    Ok(())
}
