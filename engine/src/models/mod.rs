//! Decoder-only transformer models built from burn modules. One shared decoder
//! ([`decoder`]) serves every family; each family file says what it changes.

pub mod decoder;
pub mod llama;
pub mod lora;
pub mod params;
pub mod qwen2;
pub mod qwen3;
pub mod rope;
pub mod tiny;

pub use decoder::{Architecture, CausalLm, DecoderConfig, KvCache};
