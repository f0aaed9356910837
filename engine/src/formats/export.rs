//! Writing a model as a Hugging Face folder that transformers loads: `config.json`,
//! `model.safetensors` (f32 or bf16), `tokenizer.json`, `tokenizer_config.json` (special tokens and chat
//! template) and `generation_config.json`. Each file is written to a temporary name and renamed.

use std::path::Path;

use serde_json::json;

use super::FormatError;
use super::hf_config::to_json;
use super::loader::LoadedModel;
use super::safetensors::{StoredDtype, write_tensors};

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FormatError> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).map_err(|e| FormatError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| FormatError::io(path, e))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), FormatError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| FormatError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Writes `model` as a Hugging Face folder at `out` (created if needed), its weights as `dtype`.
pub fn export_hf(model: &LoadedModel, out: &Path, dtype: StoredDtype) -> Result<(), FormatError> {
    std::fs::create_dir_all(out).map_err(|e| FormatError::io(out, e))?;
    let config = &model.model.config;
    let tensors = model.model.named_tensors()?;
    let weights = out.join("model.safetensors");
    let tmp = out.join("model.safetensors.tmp-write");
    write_tensors(&tmp, &tensors, dtype)?;
    std::fs::rename(&tmp, &weights).map_err(|e| FormatError::io(&weights, e))?;
    let mut config_json = to_json(config);
    config_json["dtype"] = dtype.hf_name().into();
    config_json["torch_dtype"] = dtype.hf_name().into();
    write_json(&out.join("config.json"), &config_json)?;

    let tokenizer_path = out.join("tokenizer.json");
    let tok_tmp = out.join("tokenizer.json.tmp-write");
    model
        .tokenizer
        .inner
        .save(&tok_tmp, false)
        .map_err(|e| FormatError::Write {
            path: tokenizer_path.clone(),
            message: e.to_string(),
        })?;
    std::fs::rename(&tok_tmp, &tokenizer_path).map_err(|e| FormatError::io(&tokenizer_path, e))?;

    let token = |id: Option<u32>| id.and_then(|i| model.tokenizer.inner.id_to_token(i));
    let eos = token(config.eos_token_ids.first().copied());
    let mut tok_config = json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": eos,
        "bos_token": token(config.bos_token_id),
        "model_max_length": config.max_position_embeddings,
        "clean_up_tokenization_spaces": false,
    });
    if let Some(t) = &model.tokenizer.chat_template {
        tok_config["chat_template"] = t.source.clone().into();
    }
    write_json(&out.join("tokenizer_config.json"), &tok_config)?;
    write_json(
        &out.join("generation_config.json"),
        &json!({ "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_ids }),
    )?;
    Ok(())
}
