//! Whole-file tests: synthetic GGUF files written by [`super::writer`] (well-formed, truncated,
//! with unknown types and architectures), and the real SmolLM2-135M-Instruct file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::excessive_precision)]

use half::f16;
use serde_json::json;
use std::io::Write;

use super::dequant::tests::f16_bytes;
use super::hf::tests::converter_permute;
use super::*;

// -----------------------------------------------------------------------------------------
// Synthetic files.
// -----------------------------------------------------------------------------------------

use super::writer::{MetaValue as Kv, TensorEntry as T, f32_data, gguf_bytes as write_gguf};

const HIDDEN: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const VOCAB: usize = 10;

/// The Hugging Face q_proj / k_proj of the synthetic model (row-major `[out, in]`).
fn hf_q() -> Vec<f32> {
    (0..HIDDEN * HIDDEN).map(|i| i as f32 * 0.01).collect()
}

fn hf_k() -> Vec<f32> {
    (0..HIDDEN / 2 * HIDDEN)
        .map(|i| -(i as f32) * 0.5)
        .collect()
}

/// A tiny model of architecture `arch`, its q/k stored the way llama.cpp's converter
/// stores them for that architecture.
fn synthetic_model(arch: &str) -> Vec<u8> {
    let permute = arch == "llama";
    let q = if permute {
        converter_permute(&hf_q(), HIDDEN, HIDDEN, HEADS)
    } else {
        hf_q()
    };
    let k = if permute {
        converter_permute(&hf_k(), HIDDEN / 2, HIDDEN, KV_HEADS)
    } else {
        hf_k()
    };
    // Q8_0 embeddings: row r has d = 0.5 and quants r - 16 + j.
    let mut embd = Vec::new();
    for r in 0..VOCAB {
        embd.extend(f16_bytes(0.5));
        embd.extend((0..32i32).map(|j| (r as i32 - 16 + j) as i8 as u8));
    }
    let k16: Vec<u8> = k.iter().flat_map(|&v| f16_bytes(v)).collect();
    let key = |k: &str| format!("{arch}.{k}");
    let keys: Vec<String> = [
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.layer_norm_rms_epsilon",
        "rope.freq_base",
        "context_length",
    ]
    .iter()
    .map(|k| key(k))
    .collect();
    let tokens = vec![
        "<|bos|>", "<|user|>", "a", "b", "ab", "Ġ", "Ġab", "c", "d", "e",
    ];
    let kvs = vec![
        ("general.architecture", Kv::Str(arch)),
        (keys[0].as_str(), Kv::U32(HIDDEN as u32)),
        (keys[1].as_str(), Kv::U32(1)),
        (keys[2].as_str(), Kv::U32(64)),
        (keys[3].as_str(), Kv::U32(HEADS as u32)),
        (keys[4].as_str(), Kv::U32(KV_HEADS as u32)),
        (keys[5].as_str(), Kv::F32(1e-6)),
        (keys[6].as_str(), Kv::F32(500_000.0)),
        (keys[7].as_str(), Kv::U32(2048)),
        ("tokenizer.ggml.model", Kv::Str("gpt2")),
        ("tokenizer.ggml.pre", Kv::Str("gpt2")),
        ("tokenizer.ggml.tokens", Kv::Strs(tokens)),
        (
            "tokenizer.ggml.token_type",
            Kv::I32s(vec![3, 4, 1, 1, 1, 1, 1, 1, 1, 1]),
        ),
        ("tokenizer.ggml.merges", Kv::Strs(vec!["a b", "Ġ ab"])),
        ("tokenizer.ggml.bos_token_id", Kv::U32(0)),
        ("tokenizer.ggml.eos_token_id", Kv::U32(9)),
        ("tokenizer.ggml.eot_token_id", Kv::U32(8)),
        ("tokenizer.ggml.add_bos_token", Kv::Bool(true)),
        ("tokenizer.chat_template", Kv::Str("{{ messages }}")),
    ];
    let tensors = vec![
        T {
            name: "token_embd.weight",
            dims: vec![32, VOCAB as u64],
            kind: 8,
            data: embd,
        },
        T {
            name: "blk.0.attn_norm.weight",
            dims: vec![32],
            kind: 0,
            data: f32_data(&[1.5; 32]),
        },
        T {
            name: "blk.0.attn_q.weight",
            dims: vec![32, 32],
            kind: 0,
            data: f32_data(&q),
        },
        T {
            name: "blk.0.attn_k.weight",
            dims: vec![32, 16],
            kind: 1,
            data: k16,
        },
        T {
            name: "output_norm.weight",
            dims: vec![32],
            kind: 0,
            data: f32_data(&[0.25; 32]),
        },
    ];
    write_gguf(&kvs, &tensors)
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
    path
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gguf-test-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn synthetic_llama_round_trip() {
    let dir = temp_dir("llama");
    let path = write_temp(&dir, "tiny.gguf", &synthetic_model("llama"));
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path);
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.metadata("llama.block_count"), Some(&GgufValue::U32(1)));
    assert_eq!(f.metadata_keys().next(), Some("general.architecture"));

    let c = f.hf_config().unwrap();
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["architectures"], json!(["LlamaForCausalLM"]));
    assert_eq!(c["hidden_size"], 32);
    assert_eq!(c["intermediate_size"], 64);
    assert_eq!(c["num_hidden_layers"], 1);
    assert_eq!(c["num_attention_heads"], 4);
    assert_eq!(c["num_key_value_heads"], 2);
    assert_eq!(c["rms_norm_eps"], 1e-6);
    assert_eq!(c["rope_theta"], 500_000.0);
    assert_eq!(c["max_position_embeddings"], 2048);
    assert_eq!(c["vocab_size"], VOCAB);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["bos_token_id"], 0);
    assert_eq!(c["eos_token_id"], 9);
    assert_eq!(c["torch_dtype"], "float32");
    assert_eq!(c["attention_bias"], false);
    assert!(c.get("head_dim").is_none() && c.get("rope_scaling").is_none());

    assert_eq!(
        f.hf_tensor_names(),
        [
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.norm.weight",
        ]
    );
    assert_eq!(f.hf_tensor_kind("model.embed_tokens.weight"), Some("Q8_0"));
    assert_eq!(
        f.hf_tensor_kind("model.layers.0.self_attn.k_proj.weight"),
        Some("F16")
    );
    assert_eq!(f.hf_tensor_kind("lm_head.weight"), None);
    assert!(f.hf_tensor("lm_head.weight").unwrap().is_none());
    assert!(
        f.hf_tensor("model.layers.0.mlp.up_proj.weight")
            .unwrap()
            .is_none()
    );

    let (embd, shape) = f.hf_tensor("model.embed_tokens.weight").unwrap().unwrap();
    assert_eq!(shape, [VOCAB, 32]);
    for r in 0..VOCAB {
        for j in 0..32 {
            assert_eq!(embd[r * 32 + j], (r as f32 - 16.0 + j as f32) * 0.5);
        }
    }
    let (norm, shape) = f.hf_tensor("model.norm.weight").unwrap().unwrap();
    assert_eq!((norm, shape), (vec![0.25; 32], vec![32]));

    // q and k come back in Hugging Face order although the file stores them permuted.
    let (q, shape) = f
        .hf_tensor("model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .unwrap();
    assert_eq!(shape, [32, 32]);
    assert_eq!(q, hf_q());
    let (k, shape) = f
        .hf_tensor("model.layers.0.self_attn.k_proj.weight")
        .unwrap()
        .unwrap();
    assert_eq!(shape, [16, 32]);
    let expected_k: Vec<f32> = hf_k().iter().map(|&v| f16::from_f32(v).to_f32()).collect();
    assert_eq!(k, expected_k);
    // raw_tensor shows the stored (permuted) layout.
    let (raw_q, _) = f.raw_tensor("blk.0.attn_q.weight").unwrap().unwrap();
    assert_ne!(raw_q, hf_q());

    assert_eq!(f.chat_template().as_deref(), Some("{{ messages }}"));
    assert_eq!(f.eos_token_ids(), [9, 8]);
    assert_eq!(f.bos_token_id(), Some(0));

    // Tokenizer: BOS template, merges, a user-defined token matched atomically.
    let tok = f.tokenizer().unwrap();
    let enc = tok.encode("ab<|user|> ab", true).unwrap();
    assert_eq!(enc.get_ids(), [0, 4, 1, 6]);
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "ab<|user|> ab");
    assert_eq!(
        tok.decode(enc.get_ids(), false).unwrap(),
        "<|bos|>ab<|user|> ab"
    );
    assert_eq!(tok.encode("ab", false).unwrap().get_ids(), [4]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn synthetic_qwen2_is_not_unpermuted() {
    let dir = temp_dir("qwen2");
    let path = write_temp(&dir, "tiny.gguf", &synthetic_model("qwen2"));
    let f = GgufFile::open(&path).unwrap();
    let c = f.hf_config().unwrap();
    assert_eq!(c["model_type"], "qwen2");
    assert_eq!(c["architectures"], json!(["Qwen2ForCausalLM"]));
    assert_eq!(c["attention_bias"], true);
    let (q, _) = f
        .hf_tensor("model.layers.0.self_attn.q_proj.weight")
        .unwrap()
        .unwrap();
    assert_eq!(q, hf_q());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncated_files_give_truncated() {
    let dir = temp_dir("trunc");
    let full = synthetic_model("llama");
    // Every cut: inside the magic, header, metadata, tensor table, padding and data.
    for cut in 1..full.len() {
        let path = write_temp(&dir, "cut.gguf", &full[..cut]);
        match GgufFile::open(&path) {
            Err(GgufError::Truncated { path: p, what }) => {
                assert_eq!(p, path);
                assert!(!what.is_empty());
            }
            other => panic!(
                "cut at {cut} of {}: expected Truncated, got {other:?}",
                full.len()
            ),
        }
    }
    let err = GgufFile::open(&write_temp(&dir, "cut.gguf", &full[..100])).unwrap_err();
    assert!(
        err.to_string().contains("cut.gguf") && err.to_string().contains("truncated"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn huge_counts_do_not_allocate() {
    let dir = temp_dir("huge");
    // Header announcing u64::MAX metadata entries.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    let path = write_temp(&dir, "huge.gguf", &b);
    assert!(matches!(
        GgufFile::open(&path),
        Err(GgufError::Truncated { .. })
    ));
    // A string claiming 2^62 bytes, and an array claiming 2^60 elements.
    for tail in [
        [(1u64 << 62).to_le_bytes().to_vec()].concat(),
        [
            1u64.to_le_bytes().to_vec(),
            b"k".to_vec(),
            9u32.to_le_bytes().to_vec(),
            4u32.to_le_bytes().to_vec(),
            (1u64 << 60).to_le_bytes().to_vec(),
        ]
        .concat(),
    ] {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(&tail);
        b.extend([0u8; 16]);
        let path = write_temp(&dir, "huge.gguf", &b);
        assert!(matches!(
            GgufFile::open(&path),
            Err(GgufError::Truncated { .. })
        ));
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn header_errors() {
    let dir = temp_dir("header");
    let path = write_temp(&dir, "bad.gguf", b"GGML\x03\0\0\0");
    assert!(matches!(
        GgufFile::open(&path),
        Err(GgufError::BadMagic { .. })
    ));
    let mut v1 = synthetic_model("llama");
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    let path = write_temp(&dir, "v1.gguf", &v1);
    match GgufFile::open(&path) {
        Err(e @ GgufError::UnsupportedVersion { version: 1, .. }) => {
            assert!(e.to_string().contains("v1.gguf"), "{e}")
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    let missing = dir.join("does-not-exist.gguf");
    match GgufFile::open(&missing) {
        Err(e @ GgufError::Io { .. }) => assert!(e.to_string().contains("does-not-exist.gguf")),
        other => panic!("expected Io, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_architecture_is_named() {
    let dir = temp_dir("arch");
    let path = write_temp(&dir, "mamba.gguf", &synthetic_model("mamba"));
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.architecture().unwrap(), "mamba");
    let err = f.hf_config().unwrap_err();
    assert!(matches!(&err, GgufError::UnsupportedArchitecture { arch, .. } if arch == "mamba"));
    let msg = err.to_string();
    assert!(
        msg.contains("mamba")
            && msg.contains("supported: llama, qwen2")
            && msg.contains("mamba.gguf"),
        "{msg}"
    );
    assert!(matches!(
        f.hf_tensor("model.norm.weight"),
        Err(GgufError::UnsupportedArchitecture { .. })
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unsupported_types_are_named() {
    let dir = temp_dir("types");
    let kvs = [("general.architecture", Kv::Str("llama"))];
    let tensors = [
        T {
            name: "blk.0.ffn_up.weight",
            dims: vec![256, 1],
            kind: 16,
            data: vec![0; 66],
        },
        T {
            name: "blk.0.ffn_down.weight",
            dims: vec![8],
            kind: 99,
            data: vec![0; 8],
        },
    ];
    let path = write_temp(&dir, "iq.gguf", &write_gguf(&kvs, &tensors));
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(
        f.hf_tensor_kind("model.layers.0.mlp.up_proj.weight"),
        Some("IQ2_XXS")
    );
    for (name, kind) in [
        (
            "model.layers.0.mlp.up_proj.weight",
            "IQ2_XXS (ggml type 16)",
        ),
        (
            "model.layers.0.mlp.down_proj.weight",
            "unknown (ggml type 99)",
        ),
    ] {
        match f.hf_tensor(name) {
            Err(e @ GgufError::UnsupportedQuantization { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(kind) && msg.contains("iq.gguf"), "{msg}");
            }
            other => panic!("{name}: expected UnsupportedQuantization, got {other:?}"),
        }
    }
    // Missing metadata is named too.
    assert!(
        matches!(f.hf_config(), Err(GgufError::MissingMetadata { key, .. }) if key == "llama.embedding_length")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn tokenizer_errors_name_the_cause() {
    let dir = temp_dir("tok");
    for (model, pre, needle) in [
        ("llama", "default", "SentencePiece"),
        ("gpt2", "exotic-pre", "exotic-pre"),
    ] {
        let kvs = [
            ("general.architecture", Kv::Str("llama")),
            ("tokenizer.ggml.model", Kv::Str(model)),
            ("tokenizer.ggml.pre", Kv::Str(pre)),
            ("tokenizer.ggml.tokens", Kv::Strs(vec!["a"])),
            ("tokenizer.ggml.merges", Kv::Strs(vec![])),
        ];
        let path = write_temp(&dir, "tok.gguf", &write_gguf(&kvs, &[]));
        let f = GgufFile::open(&path).unwrap();
        match f.tokenizer() {
            Err(e @ GgufError::Tokenizer { .. }) => {
                assert!(e.to_string().contains(needle), "{e}")
            }
            other => panic!("expected a Tokenizer error, got {:?}", other.map(|_| ())),
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn metadata_value_accessors() {
    assert_eq!(GgufValue::F32(1e-5).as_f64(), Some(1e-5));
    assert_eq!(GgufValue::I32(-1).as_u64(), None);
    assert_eq!(GgufValue::U16(7).as_i64(), Some(7));
    assert_eq!(GgufValue::U32(3).as_f64(), Some(3.0));
    assert_eq!(GgufValue::String("x".into()).as_str(), Some("x"));
    assert_eq!(GgufValue::Bool(true).as_bool(), Some(true));
    assert_eq!(
        GgufValue::Array(vec![GgufValue::U8(1)])
            .as_array()
            .map(<[_]>::len),
        Some(1)
    );
}

// -----------------------------------------------------------------------------------------
// The real SmolLM2-135M-Instruct Q4_1 file.
// -----------------------------------------------------------------------------------------

/// The SmolLM2 file, or `None` (see [`crate::test_files`]).
fn smollm2() -> Option<GgufFile> {
    let path = crate::test_files::smollm2_gguf()?;
    Some(GgufFile::open(&path).unwrap())
}

#[test]
fn smollm2_config_and_metadata() {
    let Some(f) = smollm2() else { return };
    assert_eq!(f.architecture().unwrap(), "llama");
    let c = f.hf_config().unwrap();
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["hidden_size"], 576);
    assert_eq!(c["num_hidden_layers"], 30);
    assert_eq!(c["num_attention_heads"], 9);
    assert_eq!(c["num_key_value_heads"], 3);
    assert_eq!(c["intermediate_size"], 1536);
    assert_eq!(c["vocab_size"], 49152);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["rms_norm_eps"], 1e-5);
    assert_eq!(c["rope_theta"], 100_000.0);
    assert_eq!(c["max_position_embeddings"], 8192);
    assert_eq!(c["bos_token_id"], 1);
    assert_eq!(c["eos_token_id"], 2);
    assert_eq!(f.eos_token_ids(), [2]);
    assert!(f.chat_template().unwrap().contains("<|im_start|>"));
    let names = f.hf_tensor_names();
    // 30 layers × 9 tensors + embeddings + final norm; no lm_head (tied).
    assert_eq!(names.len(), 30 * 9 + 2);
    assert!(!names.iter().any(|n| n == "lm_head.weight"));
    assert_eq!(f.hf_tensor_kind("model.embed_tokens.weight"), Some("Q8_0"));
    assert_eq!(
        f.hf_tensor_kind("model.layers.0.self_attn.q_proj.weight"),
        Some("Q4_1")
    );
    assert_eq!(f.hf_tensor_kind("model.norm.weight"), Some("F32"));
}

#[test]
fn smollm2_tokenizer_matches_hf() {
    let Some(f) = smollm2() else { return };
    let tok = f.tokenizer().unwrap();
    // Expected ids from the Python `tokenizers` 0.23.3 package, with a Tokenizer assembled
    // exactly like SmolLM2-135M-Instruct's tokenizer.json (BPE over this file's tokens and
    // merges; pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(
    // add_prefix_space=False, trim_offsets=True, use_regex=True)]; the 17 control tokens
    // as special added tokens; ByteLevel decoder).
    let cases: [(&str, &[u32]); 5] = [
        (
            "What is the capital of France?",
            &[1780, 314, 260, 3575, 282, 4649, 47],
        ),
        (
            "12345 apples\n\n  x",
            &[33, 34, 35, 36, 37, 13855, 8866, 1792],
        ),
        (
            "<|im_start|>user\nHi<|im_end|>\n",
            &[1, 4093, 198, 26843, 2, 198],
        ),
        (
            "Hello, world! It's 2024-06-01.\tTabs and  double  spaces",
            &[
                19556, 28, 905, 17, 657, 506, 216, 34, 32, 34, 36, 29, 32, 38, 29, 32, 33, 30, 197,
                68, 7366, 284, 216, 5561, 216, 5600,
            ],
        ),
        (
            "naïve café 😀 日本語",
            &[
                3546, 46494, 37366, 40303, 218, 17097, 241, 115, 40993, 179, 120, 248,
            ],
        ),
    ];
    for (text, ids) in cases {
        let enc = tok.encode(text, true).unwrap();
        assert_eq!(enc.get_ids(), ids, "{text:?}");
        assert_eq!(tok.decode(ids, false).unwrap(), text);
    }
    assert_eq!(
        tok.decode(&[1, 4093, 198, 26843, 2, 198], true).unwrap(),
        "user\nHi\n"
    );
}

#[test]
fn smollm2_tensors_match_gguf_py() {
    let Some(f) = smollm2() else { return };
    // Reference: gguf-py 0.19.0 `gguf.quants.dequantize` on the same tensors, reshaped to
    // the reversed ggml dims; q/k then passed through transformers 5.23's
    // `LlamaTensorProcessor._reverse_permute_weights` formula (reshape(n_head, dim, 2, ..)
    // .swapaxes(2, 1)) with n_head 9 for q and 3 for k.
    // (hf name, shape, sum, sum of |x|, [((row, col), value)])
    #[allow(clippy::type_complexity)]
    let cases: [(&str, [usize; 2], f64, f64, &[((usize, usize), f32)]); 4] = [
        (
            "model.embed_tokens.weight",
            [49152, 576],
            -15353.04449415207,
            2802153.619805813,
            &[
                ((0, 0), -0.10654449462890625),
                ((1, 0), -0.0238037109375),
                ((2, 5), -0.016357421875),
                ((31, 7), -0.10756683349609375),
                ((32, 7), 0.021839141845703125),
                ((33, 100), 0.1413717269897461),
                ((63, 575), 0.020923614501953125),
                ((64, 3), -0.11484909057617188),
                ((49151, 575), -0.0417022705078125),
            ],
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            [576, 576],
            59.22322082519531,
            63395.39872741699,
            &[
                ((0, 0), -0.0963134765625),
                ((1, 0), -0.1591796875),
                ((2, 5), -0.109375),
                ((31, 7), -0.027099609375),
                ((32, 7), -0.04180908203125),
                ((33, 100), 0.30572509765625),
                ((63, 575), -0.061248779296875),
                ((64, 3), 0.3507080078125),
                ((575, 575), -0.255859375),
            ],
        ),
        (
            "model.layers.0.self_attn.k_proj.weight",
            [192, 576],
            26.937057495117188,
            29794.78126525879,
            &[
                ((0, 0), -0.1552734375),
                ((1, 0), 0.203369140625),
                ((2, 5), 0.04052734375),
                ((31, 7), 0.2586669921875),
                ((32, 7), -0.40234375),
                ((33, 100), -0.503173828125),
                ((63, 575), 0.043701171875),
                ((64, 3), 0.9891357421875),
                ((191, 575), 0.3636474609375),
            ],
        ),
        (
            "model.layers.5.mlp.down_proj.weight",
            [576, 1536],
            21.782142639160156,
            127540.6024093628,
            &[
                ((0, 0), 0.15875244140625),
                ((1, 0), 0.1392822265625),
                ((2, 5), -0.1583251953125),
                ((31, 7), -0.0968017578125),
                ((32, 7), -0.16650390625),
                ((33, 100), -0.30950927734375),
                ((63, 575), 0.10247802734375),
                ((64, 3), 0.0579833984375),
                ((575, 1535), 0.173095703125),
            ],
        ),
    ];
    for (name, shape, sum, abs_sum, picks) in cases {
        let (data, got_shape) = f.hf_tensor(name).unwrap().unwrap();
        assert_eq!(got_shape, shape, "{name}");
        let got_sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
        let got_abs: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
        assert!(
            (got_sum - sum).abs() < 1e-6 * abs_sum,
            "{name}: sum {got_sum} vs {sum}"
        );
        assert!(
            (got_abs - abs_sum).abs() < 1e-6 * abs_sum,
            "{name}: |sum| {got_abs} vs {abs_sum}"
        );
        for &((r, c), v) in picks {
            assert_eq!(data[r * shape[1] + c], v, "{name}[{r}, {c}]");
        }
    }
    let (norm, shape) = f
        .hf_tensor("model.layers.0.input_layernorm.weight")
        .unwrap()
        .unwrap();
    assert_eq!(shape, [576]);
    assert_eq!(
        (norm[0], norm[1], norm[100], norm[575]),
        (
            0.01397705078125,
            0.0238037109375,
            -0.047119140625,
            -0.038330078125
        )
    );
    let (norm, _) = f.hf_tensor("model.norm.weight").unwrap().unwrap();
    assert_eq!((norm[0], norm[575]), (1.7578125, 1.984375));
}
