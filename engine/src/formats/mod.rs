//! Model file formats: Hugging Face folders (`config.json`, safetensors, `tokenizer.json`, chat
//! templates) and GGUF files, plus the exporter that writes an HF folder.
//!
//! Every format hands tensors to the model builder through [`WeightSource`] (defined in
//! `models::weights`), by their Hugging Face names, as f32. Errors name the file and the field or tensor at fault.

pub mod export;
pub mod gguf;
pub mod hf_config;
pub mod hf_tokenizer;
pub mod loader;
pub mod mmap;
pub mod peft;
pub mod safetensors;

use std::path::PathBuf;

use crate::models::ModelError;
pub use crate::models::{HostTensor, WeightSource};

/// Everything that can go wrong while reading a model from disk.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: no such file or folder")]
    NotFound { path: PathBuf },
    #[error(
        "{path} is not a model: expected a Hugging Face model folder (with config.json and \
         *.safetensors), a .gguf file, or `builtin:tiny-reasoner`"
    )]
    NotAModel { path: PathBuf },
    #[error("could not read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path}: field `{field}` {problem}")]
    ConfigField {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error(
        "{path}: model_type `{model_type}` is not supported (supported: llama, mistral, qwen2, qwen3)"
    )]
    UnsupportedArchitecture { path: PathBuf, model_type: String },
    #[error("{path} is not a valid safetensors file (truncated or corrupt?): {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: tensor `{name}` has dtype {dtype}, only F32, F16 and BF16 are supported")]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: could not load the tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error(
        "{path}: the tokenizer can produce token id {max_id} but the model's embedding has only \
         {embedding_rows} rows (tokenizer and model do not belong together)"
    )]
    TokenizerModelMismatch {
        path: PathBuf,
        max_id: u32,
        embedding_rows: usize,
    },
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("could not write {path}: {message}")]
    Write { path: PathBuf, message: String },
}

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound { path }
        } else {
            Self::Io { path, source }
        }
    }
}

impl From<FormatError> for ModelError {
    /// A format's failure while a model reads a tensor from it.
    fn from(error: FormatError) -> Self {
        ModelError::ReadTensor(Box::new(error))
    }
}
