//! A decoder's hyperparameters, architecture-neutral (mirrors `config.json`), the families that
//! share the decoder and what each switches on, and the tensors a checkpoint of a config holds.

use serde::{Deserialize, Serialize};

use super::rope::RopeConfig;

/// The model families the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    /// The `model_type` written to `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    /// The transformers class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => super::llama::HF_CLASS,
            Self::Qwen2 => super::qwen2::HF_CLASS,
            Self::Qwen3 => super::qwen3::HF_CLASS,
        }
    }

    /// What the family adds to the shared decoder.
    pub fn features(self) -> ArchFeatures {
        match self {
            Self::Llama => super::llama::FEATURES,
            Self::Qwen2 => super::qwen2::FEATURES,
            Self::Qwen3 => super::qwen3::FEATURES,
        }
    }

    /// The family that reads a `model_type`, if any.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        if super::llama::MODEL_TYPES.contains(&model_type) {
            Some(Self::Llama)
        } else if super::qwen2::MODEL_TYPES.contains(&model_type) {
            Some(Self::Qwen2)
        } else if super::qwen3::MODEL_TYPES.contains(&model_type) {
            Some(Self::Qwen3)
        } else {
            None
        }
    }
}

/// Structural switches that distinguish the families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchFeatures {
    /// Biases on the q, k and v projections (Qwen2).
    pub attention_bias: bool,
    /// RMSNorm over each head's queries and keys before RoPE (Qwen3).
    pub qk_norm: bool,
}

/// Hyperparameters of a decoder, architecture-neutral (mirrors `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub architecture: Architecture,
    /// Rows of the embedding matrix (may exceed the tokenizer's vocabulary).
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` unless the config says otherwise.
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    /// Longest context the model was trained for (`max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// The LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// Tokens that end generation (`eos_token_id` of config and generation config).
    pub eos_token_ids: Vec<u32>,
}

impl DecoderConfig {
    /// Parameter count (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let f = self.architecture.features();
        let (h, hd) = (self.hidden_size, self.head_dim);
        let q = self.num_attention_heads * hd;
        let kv = self.num_key_value_heads * hd;
        let mut attn = h * q + 2 * h * kv + q * h;
        if f.attention_bias {
            attn += q + 2 * kv;
        }
        if f.qk_norm {
            attn += 2 * hd;
        }
        let mlp = 3 * h * self.intermediate_size;
        let layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + self.num_hidden_layers * layer + h + head
    }
}

/// Every tensor of a checkpoint with this config, by Hugging Face name, with its shape
/// (`[out, in]` for projections, as transformers stores them).
pub fn tensor_shapes(config: &DecoderConfig) -> Vec<(String, Vec<usize>)> {
    let f = config.architecture.features();
    let (h, hd, ff) = (
        config.hidden_size,
        config.head_dim,
        config.intermediate_size,
    );
    let q = config.num_attention_heads * hd;
    let kv = config.num_key_value_heads * hd;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, h],
    )];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push((format!("{p}.self_attn.{name}.weight"), vec![rows, h]));
            if f.attention_bias {
                out.push((format!("{p}.self_attn.{name}.bias"), vec![rows]));
            }
        }
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        if f.qk_norm {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![ff, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![ff, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, ff]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}
