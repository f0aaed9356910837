//! Llama (transformers `LlamaForCausalLM`; also SmolLM/SmolLM2, Llama 3.x and Mistral-style
//! checkpoints with the same math): RMSNorm, rotary positions rotating halves, grouped-query
//! attention without biases, SwiGLU feed-forward, tied or untied embeddings.

use super::decoder::ArchFeatures;

/// `model_type` values read as Llama.
pub const MODEL_TYPES: &[&str] = &["llama", "mistral"];
/// The transformers class written into exported `config.json` files.
pub const HF_CLASS: &str = "LlamaForCausalLM";

/// What Llama adds to the shared decoder: nothing.
pub const FEATURES: ArchFeatures = ArchFeatures {
    attention_bias: false,
    qk_norm: false,
};
