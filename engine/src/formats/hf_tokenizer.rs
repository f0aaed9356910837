//! A tokenizer from a Hugging Face model folder: `tokenizer.json`, the special tokens and chat
//! template of `tokenizer_config.json` (or `chat_template.jinja`), and the end-of-sequence ids of
//! `generation_config.json`.

use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use super::FormatError;
use super::hf_config::read_json;
use crate::text::{ChatTemplate, TextTokenizer};

/// `"<s>"` or `{"content": "<s>", ...}` as in `tokenizer_config.json`.
fn token_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("content").and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_u64)
            .map(|n| n as u32)
            .collect(),
        Some(v) => v.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Loads `tokenizer.json` and its companions from a Hugging Face model folder.
/// `config_eos` are the ids `config.json` lists.
pub fn tokenizer_from_hf_folder(
    folder: &Path,
    config_eos: &[u32],
) -> Result<TextTokenizer, FormatError> {
    let path = folder.join("tokenizer.json");
    if !path.is_file() {
        return Err(FormatError::Tokenizer {
            path: folder.to_path_buf(),
            message: "tokenizer.json is missing".into(),
        });
    }
    let inner = Tokenizer::from_file(&path).map_err(|e| FormatError::Tokenizer {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let config_path = folder.join("tokenizer_config.json");
    let tok_config = if config_path.is_file() {
        read_json(&config_path)?
    } else {
        Value::Null
    };
    let bos = token_string(tok_config.get("bos_token")).unwrap_or_default();
    let eos = token_string(tok_config.get("eos_token")).unwrap_or_default();

    let jinja_path = folder.join("chat_template.jinja");
    let template_source = if jinja_path.is_file() {
        let text =
            std::fs::read_to_string(&jinja_path).map_err(|e| FormatError::io(&jinja_path, e))?;
        Some((text, jinja_path))
    } else {
        match tok_config.get("chat_template") {
            Some(Value::String(s)) => Some((s.clone(), config_path.clone())),
            // A list of named templates: use "default".
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(|s| (s.to_string(), config_path.clone())),
            _ => None,
        }
    };
    let chat_template = template_source
        .map(|(src, origin)| ChatTemplate::new(&src, origin, bos.clone(), eos.clone()))
        .transpose()?;

    let gen_path = folder.join("generation_config.json");
    let mut eos_ids = if gen_path.is_file() {
        ids_of(read_json(&gen_path)?.get("eos_token_id"))
    } else {
        Vec::new()
    };
    for id in config_eos {
        if !eos_ids.contains(id) {
            eos_ids.push(*id);
        }
    }
    if eos_ids.is_empty()
        && let Some(id) = (!eos.is_empty()).then(|| inner.token_to_id(&eos)).flatten()
    {
        eos_ids.push(id);
    }
    Ok(TextTokenizer::new(inner, chat_template, eos_ids, path))
}
