//! The engine against Hugging Face transformers. Each fixture's `reference.json` holds what
//! transformers 5.23 computes in float32 for a tiny random model saved by `save_pretrained`:
//! - `../shared/fixtures/qwen2-tiny`: Qwen2 (q/k/v biases, untied embeddings);
//! - `tests/fixtures/qwen3-tiny`: Qwen3 (per-head q/k RMSNorm, an explicit `head_dim` of 32 where
//!   hidden / heads = 16, tied embeddings);
//! - `tests/fixtures/llama3-rope-tiny`: Llama with Llama-3 `rope_scaling` (factor 8, original
//!   context 256, one frequency in each of the kept, smoothed and divided bands) scored past
//!   position 256.
//!
//! The last two and their references are made by `tests/fixtures/make_reference.py`. Every
//! logprob and entropy within 1e-4, the same top-5 ids, the same 24 greedy ids.

mod common;

use engine::backend::Backend;
use engine::formats::loader::load_model;
use engine::infer::{GenerateRequest, SamplingConfig, generate, score};
use serde_json::Value;
use std::ops::ControlFlow;

const TOL: f64 = 1e-4;

fn reference() -> Option<(std::path::PathBuf, Value)> {
    let dir = common::shared_file("fixtures/qwen2-tiny")?;
    Some(read_reference(dir))
}

/// A fixture committed under `tests/fixtures/`.
fn committed(name: &str) -> (std::path::PathBuf, Value) {
    read_reference(common::repo_root().join("tests/fixtures").join(name))
}

fn read_reference(dir: std::path::PathBuf) -> (std::path::PathBuf, Value) {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    (dir, serde_json::from_str(&text).expect("reference is JSON"))
}

#[test]
fn scores_match_transformers() {
    let Some((dir, reference)) = reference() else {
        return;
    };
    check_scores(&dir, &reference);
}

#[test]
fn qwen3_scores_match_transformers() {
    let (dir, reference) = committed("qwen3-tiny");
    let loaded = load_model(&dir.to_string_lossy(), &Backend::cpu()).expect("fixture loads");
    let c = &loaded.model.config;
    assert_eq!(c.architecture, engine::models::Architecture::Qwen3);
    assert_eq!(
        (c.head_dim, c.hidden_size / c.num_attention_heads),
        (32, 16)
    );
    assert!(c.tie_word_embeddings);
    check_scores(&dir, &reference);
}

#[test]
fn llama3_rope_scaling_scores_match_transformers() {
    let (dir, reference) = committed("llama3-rope-tiny");
    let loaded = load_model(&dir.to_string_lossy(), &Backend::cpu()).expect("fixture loads");
    let rope = &loaded.model.config.rope;
    let scaling = rope.llama3.as_ref().expect("llama3 rope scaling read");
    assert_eq!(scaling.original_max_position_embeddings, 256.0);
    let longest = reference["scores"]
        .as_array()
        .expect("scores")
        .iter()
        .map(|c| c["tokens"].as_array().expect("tokens").len())
        .max()
        .expect("cases");
    assert!(
        longest > 300,
        "the reference reaches past the original context"
    );
    check_scores(&dir, &reference);
}

#[test]
fn qwen3_greedy_ids_match_transformers() {
    let (dir, reference) = committed("qwen3-tiny");
    check_greedy(&dir, &reference);
}

#[test]
fn llama3_rope_scaling_greedy_ids_match_transformers() {
    let (dir, reference) = committed("llama3-rope-tiny");
    check_greedy(&dir, &reference);
}

fn check_scores(dir: &std::path::Path, reference: &Value) {
    check_scores_on(dir, reference, &Backend::cpu());
}

fn check_scores_on(dir: &std::path::Path, reference: &Value, backend: &Backend) {
    let loaded = load_model(&dir.to_string_lossy(), backend).expect("fixture loads");
    let mut worst = 0.0f64;
    for case in reference["scores"].as_array().expect("scores") {
        let text = case["text"].as_str().expect("text");
        let expected = case["tokens"].as_array().expect("tokens");
        let ids = loaded.tokenizer.encode(text, true).expect("encodes");
        let expected_ids: Vec<u32> = expected
            .iter()
            .map(|t| t["id"].as_u64().expect("id") as u32)
            .collect();
        assert_eq!(ids, expected_ids, "token ids of {text:?}");
        let scored = score(&loaded.model, &ids, 5).expect("scores");
        for (i, (got, want)) in scored.iter().zip(expected).enumerate() {
            if i == 0 {
                assert!(got.logprob.is_none() && got.entropy.is_none() && got.top.is_empty());
                continue;
            }
            let lp = f64::from(got.logprob.expect("logprob"));
            let h = f64::from(got.entropy.expect("entropy"));
            let want_lp = want["logprob"].as_f64().expect("logprob");
            let want_h = want["entropy"].as_f64().expect("entropy");
            worst = worst.max((lp - want_lp).abs()).max((h - want_h).abs());
            assert!(
                (lp - want_lp).abs() < TOL,
                "{text:?} token {i}: logprob {lp} vs {want_lp}"
            );
            assert!(
                (h - want_h).abs() < TOL,
                "{text:?} token {i}: entropy {h} vs {want_h}"
            );
            let want_top: Vec<(u32, f64)> = want["top"]
                .as_array()
                .expect("top")
                .iter()
                .map(|t| {
                    let id = t["id"].as_u64().expect("id") as u32;
                    (id, t["logprob"].as_f64().expect("lp"))
                })
                .collect();
            assert_eq!(
                got.top.len(),
                want_top.len(),
                "{text:?} token {i}: top-5 size"
            );
            for (rank, (&(got_id, glp), &(want_id, want_lp))) in
                got.top.iter().zip(&want_top).enumerate()
            {
                // The log-prob at each rank matches; the id too, unless transformers' list has
                // the same id at another rank whose log-prob ties this one (within 2·TOL: two
                // near-equal logits may swap under another summation order, as on a GPU).
                assert!(
                    (f64::from(glp) - want_lp).abs() < TOL,
                    "{text:?} token {i}: rank {rank} log-prob {glp} vs {want_lp}"
                );
                let tied = want_top
                    .iter()
                    .any(|&(id, lp)| id == got_id && (lp - want_lp).abs() < 2.0 * TOL);
                assert!(
                    got_id == want_id || tied,
                    "{text:?} token {i}: rank {rank} is id {got_id}, transformers has {want_id} \
                     (top-5 {:?} vs {want_top:?})",
                    got.top
                );
            }
        }
    }
    eprintln!(
        "largest |difference| from transformers on {}: {worst:.2e}",
        backend.kind
    );
}

/// Every fixture's scores and greedy ids on each GPU backend present: wgpu (lavapipe in the
/// test script) and CUDA (skipped with "no CUDA device" where there is none).
#[test]
fn every_fixture_matches_transformers_on_the_gpu_backends() {
    let backends: Vec<Backend> = engine::test_files::wgpu_backend()
        .into_iter()
        .chain(engine::test_files::cuda_backend())
        .collect();
    let mut fixtures = vec![committed("qwen3-tiny"), committed("llama3-rope-tiny")];
    fixtures.extend(reference());
    for backend in &backends {
        for (dir, reference) in &fixtures {
            check_scores_on(dir, reference, backend);
            check_greedy_on(dir, reference, backend);
        }
    }
}

#[test]
fn greedy_ids_match_transformers() {
    let Some((dir, reference)) = reference() else {
        return;
    };
    check_greedy(&dir, &reference);
}

fn check_greedy(dir: &std::path::Path, reference: &Value) {
    check_greedy_on(dir, reference, &Backend::cpu());
}

fn check_greedy_on(dir: &std::path::Path, reference: &Value, backend: &Backend) {
    let loaded = load_model(&dir.to_string_lossy(), backend).expect("fixture loads");
    let greedy = &reference["greedy"];
    let prompt = loaded
        .tokenizer
        .encode(greedy["prompt"].as_str().expect("prompt"), true)
        .expect("encodes");
    let want: Vec<u32> = greedy["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    let request = GenerateRequest {
        prompts: vec![prompt.clone()],
        max_new_tokens: want.len(),
        sampling: SamplingConfig::greedy(),
        stop_token_ids: Vec::new(),
        top_k_alternatives: 0,
    };
    let out =
        generate(&loaded.model, &request, |_, _| ControlFlow::Continue(())).expect("generates");
    let got: Vec<u32> = out[0].iter().map(|t| t.id).collect();
    assert_eq!(got, want);

    // Batched with a shorter, left-padded row: the long row is unchanged, the short row equals
    // its own unbatched run.
    let short = prompt[..prompt.len() - 3].to_vec();
    let alone = generate(
        &loaded.model,
        &GenerateRequest {
            prompts: vec![short.clone()],
            ..request.clone()
        },
        |_, _| ControlFlow::Continue(()),
    )
    .expect("generates");
    let batched = generate(
        &loaded.model,
        &GenerateRequest {
            prompts: vec![prompt, short],
            ..request
        },
        |_, _| ControlFlow::Continue(()),
    )
    .expect("generates");
    let ids =
        |row: &Vec<engine::infer::GeneratedToken>| row.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(&batched[0]), want);
    assert_eq!(ids(&batched[1]), ids(&alone[0]));
    for (a, b) in batched[1].iter().zip(&alone[0]) {
        assert!((a.logprob - b.logprob).abs() < 1e-4 && (a.entropy - b.entropy).abs() < 1e-4);
    }
}

#[test]
fn cli_score_and_generate_follow_the_json_contract() {
    let Some((dir, reference)) = reference() else {
        return;
    };
    let case = &reference["scores"][1];
    let out = common::studio_json([
        "score",
        "--model",
        &dir.to_string_lossy(),
        "--text",
        case["text"].as_str().expect("text"),
        "--json",
    ]);
    let tokens = out["tokens"].as_array().expect("tokens array");
    assert!(out["model"].is_string());
    assert_eq!(
        tokens.len(),
        case["tokens"].as_array().expect("tokens").len()
    );
    assert!(tokens[0]["logprob"].is_null() && tokens[0]["entropy"].is_null());
    assert_eq!(tokens[0]["top"].as_array().map(Vec::len), Some(0));
    for (got, want) in tokens
        .iter()
        .zip(case["tokens"].as_array().expect("tokens"))
        .skip(1)
    {
        assert_eq!(got["id"], want["id"]);
        assert!(got["text"].is_string());
        let d =
            got["logprob"].as_f64().expect("number") - want["logprob"].as_f64().expect("number");
        assert!(d.abs() < TOL);
        assert_eq!(got["top"].as_array().map(Vec::len), Some(5));
        assert!(got["top"][0]["text"].is_string() && got["top"][0]["logprob"].is_number());
    }

    let greedy = &reference["greedy"];
    let out = common::studio_json([
        "generate",
        "--model",
        &dir.to_string_lossy(),
        "--prompt",
        greedy["prompt"].as_str().expect("prompt"),
        "--max-new-tokens",
        "24",
        "--temperature",
        "0",
        "--ignore-eos",
        "--json",
    ]);
    let ids: Vec<&Value> = out["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| &t["id"])
        .collect();
    let want: Vec<&Value> = greedy["ids"].as_array().expect("ids").iter().collect();
    assert_eq!(ids, want);
    assert!(out["text"].is_string());
    assert!(out["tokens"][0]["logprob"].as_f64().expect("logprob") <= 0.0);
    assert!(out["tokens"][0]["entropy"].as_f64().expect("entropy") >= 0.0);
}

/// The Qwen3 fixture's weights split into two shards listed by `model.safetensors.index.json`
/// (as `save_pretrained` writes large models) load to the same scores; an index naming a shard
/// that is not there is an error naming that file.
#[test]
fn sharded_safetensors_load_as_one() {
    use engine::formats::safetensors::{SafetensorsWeights, write_f32};
    use engine::models::WeightSource;

    let (dir, reference) = committed("qwen3-tiny");
    let sharded = tempfile::tempdir().expect("tempdir");
    for file in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(dir.join(file), sharded.path().join(file)).expect("copy");
    }
    let whole = SafetensorsWeights::open_file(&dir.join("model.safetensors")).expect("opens");
    let names: Vec<String> = whole.summary().into_keys().collect();
    assert!(names.len() > 10);
    let (first, second) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let tensors: Vec<_> = part
            .iter()
            .map(|n| (n.clone(), whole.tensor(n).expect("reads").expect("present")))
            .collect();
        write_f32(&sharded.path().join(file), &tensors).expect("writes a shard");
        for n in part {
            weight_map.insert(n.clone(), Value::String(file.to_string()));
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(
        sharded.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .expect("writes the index");
    assert!(!sharded.path().join("model.safetensors").exists());
    check_scores(sharded.path(), &reference);

    std::fs::remove_file(sharded.path().join("model-00002-of-00002.safetensors")).expect("rm");
    let error = load_model(&sharded.path().to_string_lossy(), &Backend::cpu())
        .expect_err("a missing shard fails")
        .to_string();
    assert!(
        error.contains("model-00002-of-00002.safetensors"),
        "{error}"
    );
}
