//! The built-in tiny reasoner: a small configuration of the Llama code path with its own
//! byte-level tokenizer and ChatML-style template, so the studio runs with no download.
//! `builtin:tiny-reasoner` carries trained weights compiled into the binary (f32, made by
//! `scripts/train-tiny-reasoner.sh` with `assets/presets/tiny-reasoner.toml`);
//! `builtin:tiny-reasoner-init` is the same architecture from a seeded random initialization,
//! for runs that train from scratch.

use std::collections::HashMap;
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokenizers::Tokenizer;

use super::decoder::{Architecture, DecoderConfig, tensor_shapes};
use super::rope::RopeConfig;
use super::{HostTensor, ModelError, WeightSource};
use crate::text::chat_template::ChatTemplate;
use crate::text::tokenizer::TextTokenizer;
use crate::text::{TextError, byte_level};

/// How the trained tiny reasoner is named wherever a model path is expected.
pub const TINY_REASONER: &str = "builtin:tiny-reasoner";

/// The untrained tiny reasoner (seeded random weights), for runs that train from scratch.
pub const TINY_REASONER_INIT: &str = "builtin:tiny-reasoner-init";

/// The seed of the untrained weights.
pub const INIT_SEED: u64 = 0;

/// The trained weights (safetensors, f32): `model.safetensors` of the export that
/// `scripts/train-tiny-reasoner.sh` makes.
pub const TRAINED_WEIGHTS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../assets/models/tiny-reasoner.safetensors"
));

/// Special tokens after the 256 byte tokens, in id order.
pub const SPECIAL_TOKENS: [&str; 8] = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<|pad|>",
];

const CHAT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The tiny reasoner's hyperparameters (≈ 0.9 M parameters).
pub fn config() -> DecoderConfig {
    DecoderConfig {
        architecture: Architecture::Llama,
        vocab_size: 256 + SPECIAL_TOKENS.len(),
        hidden_size: 128,
        intermediate_size: 384,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 32,
        rms_norm_eps: 1e-5,
        rope: RopeConfig {
            theta: 10_000.0,
            llama3: None,
            linear_factor: 1.0,
        },
        max_position_embeddings: 1024,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_ids: vec![256 + 2, 256],
    }
}

/// The tiny reasoner's tokenizer as `tokenizer.json` would hold it: one token per byte, no
/// merges, the special tokens above.
pub fn tokenizer_json() -> serde_json::Value {
    let vocab: HashMap<String, u32> = byte_level::byte_chars()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let added: Vec<serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": 256 + i, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    })
}

/// The tiny reasoner's tokenizer with its chat template and stop tokens.
pub fn tokenizer() -> Result<TextTokenizer, TextError> {
    let origin = PathBuf::from(TINY_REASONER);
    let err = |message: String| TextError::Tokenizer {
        path: origin.clone(),
        message,
    };
    let inner: Tokenizer = tokenizer_json()
        .to_string()
        .parse()
        .map_err(|e: tokenizers::Error| err(e.to_string()))?;
    let template = ChatTemplate::new(
        CHAT_TEMPLATE,
        origin.clone(),
        String::new(),
        "<|im_end|>".into(),
    )?;
    Ok(TextTokenizer::new(
        inner,
        Some(template),
        config().eos_token_ids,
        origin,
    ))
}

/// Seeded random weights for a config: N(0, 0.02) for matrices, ones for norms, zeros for biases.
#[derive(Debug)]
pub struct RandomInit {
    shapes: HashMap<String, Vec<usize>>,
    seed: u64,
}

impl RandomInit {
    pub fn new(config: &DecoderConfig, seed: u64) -> Self {
        Self {
            shapes: tensor_shapes(config).into_iter().collect(),
            seed,
        }
    }
}

impl WeightSource for RandomInit {
    fn origin(&self) -> PathBuf {
        PathBuf::from(TINY_REASONER)
    }

    fn contains(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, ModelError> {
        let Some(shape) = self.shapes.get(name) else {
            return Ok(None);
        };
        let n: usize = shape.iter().product();
        let values = if name.ends_with("norm.weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            // A per-tensor stream, so adding a tensor never shifts the others.
            let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            let mut rng = StdRng::seed_from_u64(self.seed ^ name_hash);
            (0..n)
                .map(|_| {
                    // Box–Muller.
                    let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
                    let u2: f32 = rng.random();
                    0.02 * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect()
        };
        Ok(Some(HostTensor {
            values,
            shape: shape.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_round_trips_text_and_specials() {
        let t = tokenizer().expect("builds");
        let text = "<|im_start|>user\n12+7=? héllo<|im_end|>\n";
        let ids = t.encode(text, false).expect("encodes");
        assert_eq!(ids[0], 256 + 1);
        assert!(ids.iter().all(|&i| (i as usize) < config().vocab_size));
        assert_eq!(t.decode(&ids).expect("decodes"), text);
        assert_eq!(t.max_token_id() as usize, config().vocab_size - 1);
    }

    #[test]
    fn lone_bytes_show_as_hex_pieces() {
        let t = tokenizer().expect("builds");
        // Each of the first 256 ids is one byte.
        assert_eq!(t.token_piece(0xE2).expect("piece"), "<0xE2>");
        assert_eq!(t.token_piece(0x01).expect("piece"), "<0x01>");
        assert_eq!(t.token_piece(u32::from(b'7')).expect("piece"), "7");
        assert_eq!(t.token_piece(u32::from(b' ')).expect("piece"), " ");
        assert_eq!(t.token_piece(u32::from(b'\n')).expect("piece"), "\n");
        assert_eq!(t.token_piece(256 + 2).expect("piece"), "<|im_end|>");
        assert_eq!(
            crate::text::tokenizer::bytes_as_pieces(b"a\xE2\x82 \x7F\xC3\xA9"),
            "a<0xE2><0x82> <0x7F>\u{e9}"
        );
    }

    #[test]
    fn random_init_is_seeded_and_shaped() {
        let c = config();
        let a = RandomInit::new(&c, 1).require("model.layers.0.mlp.up_proj.weight", &[384, 128]);
        let b = RandomInit::new(&c, 1).require("model.layers.0.mlp.up_proj.weight", &[384, 128]);
        let a = a.expect("present");
        assert_eq!(a.values, b.expect("present").values);
        let mean = a.values.iter().sum::<f32>() / a.values.len() as f32;
        let var = a.values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / a.values.len() as f32;
        assert!(
            mean.abs() < 0.002 && (var.sqrt() - 0.02).abs() < 0.002,
            "{mean} {var}"
        );
        assert!(
            !RandomInit::new(&c, 1).contains("lm_head.weight"),
            "tied embeddings"
        );
    }
}
