//! Finding models already on disk: the built-in tiny reasoner, the Hugging Face cache
//! (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`) and folders the user adds
//! (`STUDIO_MODEL_DIRS`, colon-separated, or passed in). Only headers are read, never weights.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::formats::FormatError;
use crate::formats::gguf::GgufFile;
use crate::formats::hf_config::read_config;
use crate::formats::loader::{ModelFormat, display_name, gguf_config};
use crate::models::tiny::{self, TINY_REASONER};

/// A model found on disk, summarized from its config.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// What to pass as `--model`.
    pub path: String,
    pub format: ModelFormat,
    pub architecture: String,
    pub parameters: usize,
    pub layers: usize,
    pub dtype: String,
    pub vocab_size: usize,
}

/// Folders searched for Hugging Face cache snapshots.
pub fn hf_cache_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        dirs.push(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        dirs.push(PathBuf::from(p).join("hub"));
    }
    if let Some(home) = directories::BaseDirs::new() {
        dirs.push(home.home_dir().join(".cache/huggingface/hub"));
    }
    dirs.dedup();
    dirs
}

/// Summarizes one model location without loading its weights.
pub fn describe(spec: &str) -> Result<ModelInfo, FormatError> {
    use crate::formats::loader::ModelLocation;
    match ModelLocation::parse(spec)? {
        ModelLocation::TinyReasoner => {
            let c = tiny::config();
            Ok(ModelInfo {
                name: "tiny-reasoner (built-in)".into(),
                path: TINY_REASONER.into(),
                format: ModelFormat::Builtin,
                architecture: c.architecture.model_type().into(),
                parameters: c.num_parameters(),
                layers: c.num_hidden_layers,
                dtype: "float32".into(),
                vocab_size: c.vocab_size,
            })
        }
        ModelLocation::HfFolder(folder) => {
            let config = read_config(&folder.join("config.json"))?;
            let c = &config.decoder;
            Ok(ModelInfo {
                name: display_name(&folder),
                path: folder.display().to_string(),
                format: ModelFormat::Hf,
                architecture: c.architecture.model_type().into(),
                parameters: c.num_parameters(),
                layers: c.num_hidden_layers,
                dtype: config.dtype.clone().unwrap_or_else(|| "float32".into()),
                vocab_size: c.vocab_size,
            })
        }
        ModelLocation::Gguf(path) => {
            let gguf = GgufFile::open(&path)?;
            let (config, dtype) = gguf_config(&gguf)?;
            let c = &config.decoder;
            Ok(ModelInfo {
                name: display_name(&path),
                path: path.display().to_string(),
                format: ModelFormat::Gguf,
                architecture: c.architecture.model_type().into(),
                parameters: c.num_parameters(),
                layers: c.num_hidden_layers,
                dtype,
                vocab_size: c.vocab_size,
            })
        }
    }
}

/// Candidate model locations under `dir`: folders with `config.json` and `.gguf` files, up to
/// `depth` levels down.
fn scan(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if path.join("config.json").is_file() {
                out.push(path);
            } else if depth > 0 {
                scan(&path, depth - 1, out);
            }
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            out.push(path);
        }
    }
}

/// Every model found: the built-in one first, then the Hugging Face cache, then `extra_dirs`
/// and `STUDIO_MODEL_DIRS`. Locations that fail to parse are returned with their error.
pub fn discover(extra_dirs: &[PathBuf]) -> Vec<Result<ModelInfo, (String, FormatError)>> {
    let mut candidates = Vec::new();
    for cache in hf_cache_dirs() {
        // hub/models--org--name/snapshots/<hash>/config.json
        scan(&cache, 3, &mut candidates);
    }
    let mut dirs: Vec<PathBuf> = extra_dirs.to_vec();
    if let Some(v) = std::env::var_os("STUDIO_MODEL_DIRS") {
        dirs.extend(std::env::split_paths(&v));
    }
    for dir in dirs {
        if dir.join("config.json").is_file() || dir.is_file() {
            candidates.push(dir);
        } else {
            scan(&dir, 2, &mut candidates);
        }
    }
    candidates.dedup();
    let mut found = vec![describe(TINY_REASONER).map_err(|e| (TINY_REASONER.to_string(), e))];
    for c in candidates {
        let spec = c.display().to_string();
        found.push(describe(&spec).map_err(|e| (spec, e)));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_is_always_listed() {
        let found = discover(&[]);
        let first = found[0].as_ref().expect("built-in describes");
        assert_eq!(first.path, TINY_REASONER);
        assert!(first.parameters > 100_000);
    }

    #[test]
    fn finds_folders_and_gguf_in_added_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = dir.path().join("org/model");
        std::fs::create_dir_all(&m).expect("mkdir");
        std::fs::write(
            m.join("config.json"),
            r#"{"model_type":"qwen2","hidden_size":64,"intermediate_size":160,"num_hidden_layers":2,
               "num_attention_heads":4,"num_key_value_heads":2,"vocab_size":700}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("broken.gguf"), b"not gguf").expect("write");
        let found = discover(&[dir.path().to_path_buf()]);
        let ok: Vec<&ModelInfo> = found.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert!(
            ok.iter()
                .any(|i| i.architecture == "qwen2" && i.layers == 2)
        );
        assert!(
            found
                .iter()
                .any(|r| matches!(r, Err((p, _)) if p.ends_with("broken.gguf")))
        );
    }
}
