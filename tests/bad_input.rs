//! Bad input gets a one-paragraph error naming the file, field or tensor at fault and a non-zero
//! exit, never a panic. Each case runs the real `studio` binary.

mod common;

use std::path::{Path, PathBuf};

use engine::formats::safetensors::{SafetensorsWeights, write_f32};
use engine::models::{HostTensor, WeightSource};

/// Runs `studio score` on `model` and returns stderr, asserting a clean failure.
fn score_fails(model: &Path, text: &str) -> String {
    let out = common::studio([
        "score",
        "--model",
        &model.to_string_lossy(),
        "--text",
        text,
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "panic reached the user: {stderr}"
    );
    let message = stderr.trim();
    assert!(message.starts_with("error: "), "{message}");
    assert!(
        !message.contains("\n\n"),
        "one paragraph expected: {message}"
    );
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    message.to_string()
}

/// A writable copy of the qwen2-tiny fixture.
fn fixture_copy() -> Option<(tempfile::TempDir, PathBuf)> {
    let src = common::shared_file("fixtures/qwen2-tiny")?;
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("qwen2-tiny");
    common::copy_dir(&src, &model);
    Some((dir, model))
}

fn edit_config(model: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = model.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut v);
    std::fs::write(&path, v.to_string()).expect("write");
}

/// Rewrites the fixture's weights through `edit` (name, tensor) → Some(replacement) or None to drop.
fn edit_weights(model: &Path, edit: impl Fn(&str, HostTensor) -> Option<HostTensor>) {
    let names: Vec<String> = {
        let w = SafetensorsWeights::open(model).expect("fixture weights");
        w.summary().into_keys().collect()
    };
    let w = SafetensorsWeights::open(model).expect("fixture weights");
    let tensors: Vec<(String, HostTensor)> = names
        .iter()
        .filter_map(|n| {
            let t = w.tensor(n).expect("readable").expect("present");
            edit(n, t).map(|t| (n.clone(), t))
        })
        .collect();
    drop(w);
    write_f32(&model.join("model.safetensors"), &tensors).expect("rewrite");
}

#[test]
fn missing_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = score_fails(&dir.path().join("no-such-model"), "hi");
    assert!(
        m.contains("no-such-model") && m.contains("no such file"),
        "{m}"
    );
}

#[test]
fn folder_that_is_not_a_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "hello").expect("write");
    let m = score_fails(dir.path(), "hi");
    assert!(m.contains("is not a model"), "{m}");
}

#[test]
fn invalid_and_unknown_config() {
    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    std::fs::write(model.join("config.json"), "{ \"model_type\": \"qwen2\", ").expect("write");
    let m = score_fails(&model, "hi");
    assert!(
        m.contains("config.json") && m.contains("not valid JSON"),
        "{m}"
    );

    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_config(&model, |v| v["num_attention_heads"] = "four".into());
    let m = score_fails(&model, "hi");
    assert!(
        m.contains("config.json") && m.contains("num_attention_heads"),
        "{m}"
    );

    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_config(&model, |v| {
        v.as_object_mut().expect("object").remove("hidden_size");
    });
    let m = score_fails(&model, "hi");
    assert!(m.contains("hidden_size") && m.contains("missing"), "{m}");

    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_config(&model, |v| v["model_type"] = "rwkv".into());
    let m = score_fails(&model, "hi");
    assert!(
        m.contains("config.json") && m.contains("rwkv") && m.contains("not supported"),
        "{m}"
    );
}

#[test]
fn truncated_safetensors() {
    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    let path = model.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let m = score_fails(&model, "hi");
    assert!(
        m.contains("model.safetensors") && m.contains("truncated"),
        "{m}"
    );
}

#[test]
fn missing_tensor_and_wrong_shape() {
    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_weights(&model, |n, t| {
        (n != "model.layers.1.mlp.up_proj.weight").then_some(t)
    });
    let m = score_fails(&model, "hi");
    assert!(
        m.contains("model.layers.1.mlp.up_proj.weight") && m.contains("missing"),
        "{m}"
    );

    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_weights(&model, |n, t| {
        Some(if n == "model.layers.0.self_attn.k_proj.weight" {
            HostTensor {
                values: t.values[..16 * 64].to_vec(),
                shape: vec![16, 64],
            }
        } else {
            t
        })
    });
    let m = score_fails(&model, "hi");
    assert!(
        m.contains("model.layers.0.self_attn.k_proj.weight")
            && m.contains("[16, 64]")
            && m.contains("[32, 64]"),
        "{m}"
    );
}

#[test]
fn tokenizer_beyond_embedding_rows_fails_but_padded_embedding_loads() {
    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_config(&model, |v| v["vocab_size"] = 600.into());
    edit_weights(&model, |n, t| {
        Some(
            if n == "model.embed_tokens.weight" || n == "lm_head.weight" {
                HostTensor {
                    values: t.values[..600 * 64].to_vec(),
                    shape: vec![600, 64],
                }
            } else {
                t
            },
        )
    });
    let m = score_fails(&model, "hi");
    assert!(m.contains("token id 699") && m.contains("600 rows"), "{m}");

    // Embedding padded past the tokenizer (as Qwen2.5 ships 151,936 rows for 151,665 tokens).
    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    edit_config(&model, |v| v["vocab_size"] = 768.into());
    edit_weights(&model, |n, mut t| {
        if n == "model.embed_tokens.weight" || n == "lm_head.weight" {
            t.values.resize(768 * 64, 0.0);
            t.shape = vec![768, 64];
        }
        Some(t)
    });
    let out = common::studio_json([
        "score",
        "--model",
        &model.to_string_lossy(),
        "--text",
        "12 + 30",
        "--json",
    ]);
    assert!(out["tokens"].as_array().is_some_and(|t| t.len() > 1));
}

#[test]
fn prompt_longer_than_context() {
    let Some((_d, model)) = fixture_copy() else {
        return;
    };
    let text = "word ".repeat(600);
    let m = score_fails(&model, &text);
    assert!(m.contains("context") && m.contains("512"), "{m}");
}

/// A GGUF file with string metadata and tensors `(name, dims, ggml type id, data)`, through the
/// engine's writer.
fn write_gguf(path: &Path, metadata: &[(&str, &str)], tensors: &[(&str, &[u64], u32, Vec<u8>)]) {
    use engine::formats::gguf::writer::{MetaValue, TensorEntry, gguf_bytes};
    let metadata: Vec<(&str, MetaValue<'_>)> = metadata
        .iter()
        .map(|&(k, v)| (k, MetaValue::Str(v)))
        .collect();
    let tensors: Vec<TensorEntry<'_>> = tensors
        .iter()
        .map(|(name, dims, kind, data)| TensorEntry {
            name,
            dims: dims.to_vec(),
            kind: *kind,
            data: data.clone(),
        })
        .collect();
    std::fs::write(path, gguf_bytes(&metadata, &tensors)).expect("write the GGUF file");
}

#[test]
fn gguf_unsupported_architecture_and_quantization() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mamba.gguf");
    write_gguf(
        &path,
        &[("general.architecture", "mamba")],
        &[("token_embd.weight", &[4, 2], 0, vec![0; 32])],
    );
    let m = score_fails(&path, "hi");
    assert!(m.contains("mamba.gguf") && m.contains("mamba"), "{m}");

    // Type 16 is IQ2_XXS, a quantization the studio does not read.
    let path = dir.path().join("iq2.gguf");
    write_gguf(
        &path,
        &[("general.architecture", "llama")],
        &[("token_embd.weight", &[256, 1], 16, vec![0; 66])],
    );
    let m = score_fails(&path, "hi");
    assert!(m.contains("iq2.gguf") && m.contains("IQ2_XXS"), "{m}");
}
