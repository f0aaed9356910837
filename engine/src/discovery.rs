//! Finding models already on disk: the built-in tiny reasoner, the Hugging Face cache
//! (`HF_HUB_CACHE`, `HF_HOME/hub`, `~/.cache/huggingface/hub`) and folders the user adds
//! (`STUDIO_MODEL_DIRS`, colon-separated, or passed in). Only headers are read, never weights.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::formats::FormatError;
use crate::formats::gguf::GgufFile;
use crate::formats::hf_config::read_config;
use crate::formats::loader::{ModelFormat, display_name, gguf_config};
use crate::models::tiny::{self, TINY_REASONER, TINY_REASONER_INIT};

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
    pub hidden_size: usize,
    pub attention_heads: usize,
    pub kv_heads: usize,
    /// The context the model was trained for (`max_position_embeddings`).
    pub context: usize,
    pub dtype: String,
    pub vocab_size: usize,
    /// Bytes of weights on disk (the .gguf file, or the folder's safetensors); for the
    /// built-in model, what the binary carries.
    pub file_size: u64,
}

impl ModelInfo {
    fn new(
        name: String,
        path: String,
        format: ModelFormat,
        c: &crate::models::DecoderConfig,
        dtype: String,
        file_size: u64,
    ) -> Self {
        Self {
            name,
            path,
            format,
            architecture: c.architecture.model_type().into(),
            parameters: c.num_parameters(),
            layers: c.num_hidden_layers,
            hidden_size: c.hidden_size,
            attention_heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            context: c.max_position_embeddings,
            dtype,
            vocab_size: c.vocab_size,
            file_size,
        }
    }
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

/// Bytes of the safetensors files in a model folder (links followed, as in the HF cache).
fn weights_size(folder: &Path) -> u64 {
    std::fs::read_dir(folder)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.path()
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("safetensors"))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok())
        .map(|m| m.len())
        .sum()
}

/// Summarizes one model location without loading its weights.
pub fn describe(spec: &str) -> Result<ModelInfo, FormatError> {
    use crate::formats::loader::ModelLocation;
    match ModelLocation::parse(spec)? {
        ModelLocation::TinyReasoner { trained } => {
            let c = tiny::config();
            let (name, path, size) = if trained {
                (
                    "tiny-reasoner (built-in, trained)",
                    TINY_REASONER,
                    tiny::TRAINED_WEIGHTS.len() as u64,
                )
            } else {
                (
                    "tiny-reasoner-init (built-in, untrained)",
                    TINY_REASONER_INIT,
                    0,
                )
            };
            Ok(ModelInfo::new(
                name.into(),
                path.into(),
                ModelFormat::Builtin,
                &c,
                "float32".into(),
                size,
            ))
        }
        ModelLocation::HfFolder(folder) => {
            let config = read_config(&folder.join("config.json"))?;
            Ok(ModelInfo::new(
                display_name(&folder),
                folder.display().to_string(),
                ModelFormat::Hf,
                &config.decoder,
                config.dtype.clone().unwrap_or_else(|| "float32".into()),
                weights_size(&folder),
            ))
        }
        ModelLocation::Gguf(path) => {
            let gguf = GgufFile::open(&path)?;
            let (config, dtype) = gguf_config(&gguf)?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            Ok(ModelInfo::new(
                display_name(&path),
                path.display().to_string(),
                ModelFormat::Gguf,
                &config.decoder,
                dtype,
                size,
            ))
        }
    }
}

/// The paths in `dir`, sorted (none when it cannot be read).
fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    entries
}

/// Candidate model locations under `dir`: folders with `config.json` and `.gguf` files, up to
/// `depth` levels down.
fn scan(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    for path in sorted_entries(dir) {
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
    let mut found: Vec<_> = [TINY_REASONER, TINY_REASONER_INIT]
        .into_iter()
        .map(|spec| describe(spec).map_err(|e| (spec.to_string(), e)))
        .collect();
    for c in candidates {
        let spec = c.display().to_string();
        found.push(describe(&spec).map_err(|e| (spec, e)));
    }
    found
}

/// Dataset files in the Hugging Face cache (`datasets--ORG--NAME/snapshots/HASH/…`): Parquet,
/// JSON and JSONL files, up to four folders below the snapshot.
pub fn hf_cache_datasets() -> Vec<PathBuf> {
    hf_cache_datasets_in(&hf_cache_dirs())
}

/// [`hf_cache_datasets`] in the given cache folders.
pub fn hf_cache_datasets_in(caches: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        for path in sorted_entries(dir) {
            if path.is_dir() {
                if depth > 0 {
                    walk(&path, depth - 1, out);
                }
            } else if path.extension().is_some_and(|e| {
                ["parquet", "json", "jsonl"]
                    .iter()
                    .any(|x| e.eq_ignore_ascii_case(x))
            }) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for cache in caches {
        let Ok(entries) = std::fs::read_dir(cache) else {
            continue;
        };
        let mut repos: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("datasets--"))
            })
            .collect();
        repos.sort();
        for repo in repos {
            walk(&repo.join("snapshots"), 5, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_dataset_files_in_the_hub_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snap = dir.path().join("datasets--org--data/snapshots/abc/main");
        std::fs::create_dir_all(&snap).expect("mkdir");
        std::fs::write(snap.join("train-00000.parquet"), b"x").expect("write");
        std::fs::write(snap.join("README.md"), b"x").expect("write");
        std::fs::create_dir_all(dir.path().join("models--org--m/snapshots/abc")).expect("mkdir");
        std::fs::write(
            dir.path().join("models--org--m/snapshots/abc/x.json"),
            b"{}",
        )
        .expect("write");
        let found = hf_cache_datasets_in(&[dir.path().to_path_buf()]);
        assert_eq!(found, vec![snap.join("train-00000.parquet")]);
    }

    #[test]
    fn builtin_is_always_listed() {
        let found = discover(&[]);
        let first = found[0].as_ref().expect("built-in describes");
        assert_eq!(first.path, TINY_REASONER);
        assert!(first.parameters > 100_000);
        let second = found[1].as_ref().expect("built-in describes");
        assert_eq!(second.path, TINY_REASONER_INIT);
        assert_eq!(second.parameters, first.parameters);
        assert_eq!(first.file_size, tiny::TRAINED_WEIGHTS.len() as u64);
        assert_eq!(first.context, tiny::config().max_position_embeddings);
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
        assert!(ok.iter().any(|i| i.architecture == "qwen2"
            && i.layers == 2
            && i.attention_heads == 4
            && i.kv_heads == 2));
        assert!(
            found
                .iter()
                .any(|r| matches!(r, Err((p, _)) if p.ends_with("broken.gguf")))
        );
    }
}
