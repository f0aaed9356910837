//! Qwen3 (transformers `Qwen3ForCausalLM`): the Llama layout with an RMSNorm over each head's
//! queries and keys (`q_norm`, `k_norm`, applied before RoPE), no q/k/v biases, and an explicit
//! `head_dim` that need not equal `hidden_size / num_attention_heads`.

use super::decoder::ArchFeatures;

/// `model_type` values read as Qwen3.
pub const MODEL_TYPES: &[&str] = &["qwen3"];
/// The transformers class written into exported `config.json` files.
pub const HF_CLASS: &str = "Qwen3ForCausalLM";

/// Per-head RMSNorm on queries and keys.
pub const FEATURES: ArchFeatures = ArchFeatures {
    attention_bias: false,
    qk_norm: true,
};
