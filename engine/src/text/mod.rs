//! Text around a model: the tokenizer (through the `tokenizers` crate) and chat templates
//! (Jinja through minijinja). A leaf of the engine: `formats`, `models` and `infer` use it, and it
//! names none of them. Reading a tokenizer out of a model folder or a GGUF file is `formats`' job.

pub mod byte_level;
pub mod chat_template;
pub mod tokenizer;

pub use chat_template::{ChatMessage, ChatTemplate};
pub use tokenizer::TextTokenizer;

use std::path::PathBuf;

/// What can go wrong with a tokenizer or a chat template. `path` names the file they came from.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{path}: could not load the tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    #[error("{path}: could not encode the text: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("{path}: could not decode token ids {ids:?}: {message}")]
    Decode {
        path: PathBuf,
        ids: Vec<u32>,
        message: String,
    },
    #[error("{path}: chat template: {message}")]
    ChatTemplate { path: PathBuf, message: String },
}
