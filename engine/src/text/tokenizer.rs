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

    /// One token as a reader should see it: its text when that is whole characters, else each
    /// byte that is not part of a printable character as a `<0xE2>`-style piece (a lone byte of
    /// a multi-byte character, a control character). Line breaks and tabs stay as they are.
    pub fn token_piece(&self, id: u32) -> Result<String, TextError> {
        let text = self.token_text(id)?;
        let unreadable = |c: char| {
            c == char::REPLACEMENT_CHARACTER || (c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
        };
        if !text.chars().any(unreadable) {
            return Ok(text);
        }
        let bytes = self
            .token_bytes(id)
            .unwrap_or_else(|| text.as_bytes().to_vec());
        Ok(bytes_as_pieces(&bytes))
    }

    /// The raw bytes of a token: byte-level BPE vocabulary entries (`Ġ` for a space) mapped back
    /// through GPT-2's alphabet, or a byte-fallback token `<0xNN>`. `None` for other tokens.
    fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let raw = self.inner.id_to_token(id)?;
        if let Some(hex) = raw.strip_prefix("<0x").and_then(|r| r.strip_suffix('>')) {
            return u8::from_str_radix(hex, 16).ok().map(|b| vec![b]);
        }
        raw.chars().map(super::byte_level::byte_of).collect()
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

/// Bytes as text where they are printable UTF-8, and `<0xNN>` for each byte that is not (an
/// incomplete or invalid sequence, a control character other than line break and tab).
pub fn bytes_as_pieces(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() && !matches!(c, '\n' | '\t' | '\r') {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("<0x{b:02X}>"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("<0x{b:02X}>"));
        }
    }
    out
}
