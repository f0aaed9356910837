//! Decoder-only transformer models built from burn modules. One shared decoder
//! ([`decoder`]) serves every family; each family file says what it changes.

pub mod attention;
pub mod config;
pub mod decoder;
pub mod llama;
pub mod loading;
pub mod lora;
pub mod params;
pub mod qwen2;
pub mod qwen3;
pub mod rope;
pub mod tiny;
pub mod weights;

pub use decoder::{Architecture, CausalLm, DecoderConfig, KvCache};
pub use weights::{HostTensor, WeightSource};

use std::path::PathBuf;

/// What can go wrong while building, reading or changing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {found:?}, expected {expected:?} from config.json")]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A weight source's own failure (a corrupt file, an unsupported dtype), as it said it.
    #[error(transparent)]
    ReadTensor(Box<dyn std::error::Error + Send + Sync>),
    #[error("could not read parameter `{name}` from the backend: {message}")]
    ReadParameter { name: String, message: String },
    #[error("unknown LoRA target module `{module}` (choose from {choices})")]
    UnknownLoraTarget { module: String, choices: String },
    #[error("saved tensor `{name}` has shape {saved:?}, the model's parameter {model:?}")]
    SavedShapeMismatch {
        name: String,
        saved: Vec<usize>,
        model: Vec<usize>,
    },
    #[error(
        "{saved} saved tensors but only {matched} match the model (made with another model or \
         LoRA setting?)"
    )]
    SavedTensorsUnmatched { saved: usize, matched: usize },
}
