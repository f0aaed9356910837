//! Qwen2 and Qwen2.5 (transformers `Qwen2ForCausalLM`): the Llama layout with biases on the
//! q, k and v projections (none on o), RoPE theta usually 1e6.

use super::decoder::ArchFeatures;

/// `model_type` values read as Qwen2.
pub const MODEL_TYPES: &[&str] = &["qwen2"];
/// The transformers class written into exported `config.json` files.
pub const HF_CLASS: &str = "Qwen2ForCausalLM";

/// q/k/v carry biases.
pub const FEATURES: ArchFeatures = ArchFeatures {
    attention_bias: true,
    qk_norm: false,
};
