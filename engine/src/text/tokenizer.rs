//! Tokenization through the `tokenizers` crate, with the chat template and the stop tokens that
//! belong to it. Where these come from (a model folder, GGUF metadata, the built-in tiny
//! reasoner) is decided by the callers.

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;

use super::TextError;
use super::chat_template::{ChatMessage, ChatTemplate};

/// A model's tokenizer with its chat template and stop tokens.
#[derive(Debug)]
pub struct TextTokenizer {
    pub inner: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
    origin: PathBuf,
}

impl TextTokenizer {
    /// Wraps an already-built tokenizer.
    pub fn new(
        inner: Tokenizer,
        chat_template: Option<ChatTemplate>,
        eos_token_ids: Vec<u32>,
        origin: PathBuf,
    ) -> Self {
        Self {
            inner,
            chat_template,
            eos_token_ids,
            origin,
        }
    }

    /// The file the tokenizer came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Token ids of `text`; `add_special_tokens` lets the post-processor add BOS and the like.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TextError> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| TextError::Encode {
                path: self.origin.clone(),
                message: e.to_string(),
            })
    }

    /// Text of `ids` (special tokens kept, so nothing the model produced is hidden). An id the
    /// vocabulary does not have, or a decoder failure, is an error naming the ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TextError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TextError::Decode {
                path: self.origin.clone(),
                ids: ids.to_vec(),
                message: e.to_string(),
            })
    }

    /// Text of one token, as it appears inside decoded text (byte-level pieces joined).
    pub fn token_text(&self, id: u32) -> Result<String, TextError> {
        self.decode(&[id])
    }

    /// Renders a single user message through the chat template with the generation prompt,
    /// then encodes it (the template already holds the special tokens, so none are added).
    pub fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, TextError> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| TextError::ChatTemplate {
                path: self.origin.clone(),
                message: "this model has no chat template; run without --chat".into(),
            })?;
        let text = template.render(messages, true)?;
        self.encode(&text, false)
    }

    /// Size of the vocabulary including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The largest id the tokenizer can produce.
    pub fn max_token_id(&self) -> u32 {
        self.inner
            .get_vocab(true)
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }
}
