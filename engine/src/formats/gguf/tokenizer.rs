//! The tokenizer embedded in a GGUF file's `tokenizer.ggml.*` metadata, rebuilt as a
//! `tokenizers::Tokenizer` that matches the model's Hugging Face `tokenizer.json`, and the chat
//! template and special token ids stored beside it.

use serde_json::{Map, Value, json};

use super::{GgufError, GgufFile, GgufValue};

impl GgufFile {
    /// A `tokenizers::Tokenizer` rebuilt from the `tokenizer.ggml.*` metadata.
    ///
    /// Only byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`) are supported. The
    /// pre-tokenizer follows `tokenizer.ggml.pre` (`smollm`/`starcoder`/`refact`: digits split
    /// off one by one, then GPT-2's byte-level regex; `gpt2`/`default`/absent: GPT-2's
    /// byte-level regex; `qwen2`, `deepseek-r1-qwen`, `llama-bpe`/`llama3`: the model's split
    /// regex, then byte-level mapping), mirroring each model's Hugging Face `tokenizer.json`.
    /// Control tokens (type 3) become special added tokens, user-defined tokens (type 4)
    /// non-special added tokens: both are matched atomically, and decoding with
    /// `skip_special_tokens` drops only the control ones. BOS (and EOS) are added by a
    /// template post-processor when `tokenizer.ggml.add_bos_token` (`add_eos_token`) is true.
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer, GgufError> {
        let err = |message: String| GgufError::Tokenizer {
            path: self.path.clone(),
            message,
        };
        let model = self
            .metadata("tokenizer.ggml.model")
            .and_then(GgufValue::as_str)
            .ok_or_else(|| self.missing("tokenizer.ggml.model"))?;
        if model != "gpt2" {
            let what = match model {
                "llama" => "SentencePiece (\"llama\")".to_string(),
                other => format!("\"{other}\""),
            };
            return Err(err(format!(
                "tokenizer model {what} is not supported yet; only byte-level BPE (\"gpt2\") vocabularies are"
            )));
        }
        let pre = self
            .metadata("tokenizer.ggml.pre")
            .and_then(GgufValue::as_str)
            .unwrap_or("default");
        let (normalizer, pre_tokenizer, ignore_merges) = pre_tokenizer_for(pre).ok_or_else(|| {
            err(format!(
                "pre-tokenizer \"{pre}\" (tokenizer.ggml.pre) is not supported; supported: smollm, starcoder, refact, gpt2, default, qwen2, deepseek-r1-qwen, llama-bpe, llama3"
            ))
        })?;

        let tokens = self.string_array("tokenizer.ggml.tokens")?;
        let merges = self.string_array("tokenizer.ggml.merges")?;
        let types: Vec<i64> = match self.metadata("tokenizer.ggml.token_type") {
            Some(v) => v
                .as_array()
                .ok_or_else(|| self.missing("tokenizer.ggml.token_type"))?
                .iter()
                .map(|t| t.as_i64().unwrap_or(1))
                .collect(),
            None => Vec::new(),
        };

        let mut vocab = Map::new();
        let mut added = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            // Keep the first id of a duplicated string, as llama.cpp's token-to-id map does.
            if !vocab.contains_key(*token) {
                vocab.insert((*token).to_owned(), json!(id));
            }
            let ty = types.get(id).copied().unwrap_or(1);
            if ty == 3 || ty == 4 {
                added.push(json!({
                    "id": id,
                    "content": token,
                    "single_word": false,
                    "lstrip": false,
                    "rstrip": false,
                    "normalized": false,
                    "special": ty == 3,
                }));
            }
        }

        let byte_level_post = json!({
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": false,
            "use_regex": true,
        });
        let flag = |k: &str| {
            self.metadata(k)
                .and_then(GgufValue::as_bool)
                .unwrap_or(false)
        };
        let token_text = |id: u32| -> Result<&str, GgufError> {
            tokens.get(id as usize).copied().ok_or_else(|| {
                err(format!(
                    "special token id {id} is outside the vocabulary of {}",
                    tokens.len()
                ))
            })
        };
        let bos = if flag("tokenizer.ggml.add_bos_token") {
            let id = self
                .bos_token_id()
                .ok_or_else(|| self.missing("tokenizer.ggml.bos_token_id"))?;
            Some((id, token_text(id)?))
        } else {
            None
        };
        let eos = if flag("tokenizer.ggml.add_eos_token") {
            let id = self
                .token_id("tokenizer.ggml.eos_token_id")
                .ok_or_else(|| self.missing("tokenizer.ggml.eos_token_id"))?;
            Some((id, token_text(id)?))
        } else {
            None
        };
        let post_processor = if bos.is_some() || eos.is_some() {
            let special = |text: &str, type_id: u32| json!({"SpecialToken": {"id": text, "type_id": type_id}});
            let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
            let mut single = Vec::new();
            let mut pair = Vec::new();
            let mut special_tokens = Map::new();
            for (part, type_id) in [("A", 0u32), ("B", 1u32)] {
                let target = if part == "A" { &mut single } else { &mut pair };
                if let Some((_, text)) = bos {
                    target.push(special(text, type_id));
                }
                target.push(seq(part, type_id));
                if let Some((_, text)) = eos {
                    target.push(special(text, type_id));
                }
            }
            let pair: Vec<Value> = single.iter().cloned().chain(pair).collect();
            for (id, text) in bos.iter().chain(eos.iter()) {
                special_tokens.insert(
                    (*text).to_owned(),
                    json!({"id": text, "ids": [id], "tokens": [text]}),
                );
            }
            json!({
                "type": "Sequence",
                "processors": [
                    byte_level_post,
                    {
                        "type": "TemplateProcessing",
                        "single": single,
                        "pair": pair,
                        "special_tokens": special_tokens,
                    },
                ],
            })
        } else {
            byte_level_post
        };

        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {
                "type": "ByteLevel",
                "add_prefix_space": true,
                "trim_offsets": true,
                "use_regex": true,
            },
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": ignore_merges,
                "vocab": vocab,
                "merges": merges,
            },
        });
        let bytes = serde_json::to_vec(&spec).map_err(|e| err(e.to_string()))?;
        tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| err(e.to_string()))
    }

    /// `tokenizer.chat_template`, the model's Jinja chat template.
    pub fn chat_template(&self) -> Option<String> {
        self.metadata("tokenizer.chat_template")
            .and_then(GgufValue::as_str)
            .map(str::to_owned)
    }

    /// Token ids that end generation: `tokenizer.ggml.eos_token_id`, then
    /// `tokenizer.ggml.eot_token_id` when present and different.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"] {
            if let Some(id) = self.token_id(key)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// `tokenizer.ggml.bos_token_id`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.token_id("tokenizer.ggml.bos_token_id")
    }
}

/// The Split regex of Llama 3's `tokenizer.json` (llama.cpp pre-tokenizer `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Split regex of Qwen2's `tokenizer.json` (single digits instead of runs of up to 3).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `(normalizer, pre_tokenizer, ignore_merges)` of the Hugging Face `tokenizer.json` that
/// llama.cpp's pre-tokenizer name `pre` stands for; `None` for names not handled.
fn pre_tokenizer_for(pre: &str) -> Option<(Value, Value, bool)> {
    let byte_level = |trim_offsets: bool, use_regex: bool| {
        json!({
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": trim_offsets,
            "use_regex": use_regex,
        })
    };
    let split = |regex: &str| {
        json!({
            "type": "Split",
            "pattern": {"Regex": regex},
            "behavior": "Isolated",
            "invert": false,
        })
    };
    Some(match pre {
        "smollm" | "starcoder" | "refact" => (
            Value::Null,
            json!({
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": true},
                    byte_level(true, true),
                ],
            }),
            false,
        ),
        "gpt2" | "default" => (Value::Null, byte_level(true, true), false),
        "qwen2" | "deepseek-r1-qwen" => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false, false)]}),
            false,
        ),
        "llama-bpe" | "llama3" | "llama-v3" => (
            Value::Null,
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(true, false)]}),
            true,
        ),
        _ => return None,
    })
}
