//! Checkpoints: the trainable parameters (LoRA adapters or all weights) by module path, the
//! optimizer's moments, and the training state (step, data cursor, token count), written to a
//! temporary folder and renamed into place so a checkpoint either exists whole or not at all.
//!
//! Randomness needs no saved state: data order is a pure function of (seed, epoch) and dropout is
//! reseeded from (seed, step) before every step.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::optim::{AdamW, Moments};
use crate::formats::safetensors::{SafetensorsWeights, write_f32};
pub use crate::models::params::module_tensors;
use crate::models::{HostTensor, WeightSource};

/// Replaces `module`'s parameters by the saved ones with the same paths.
pub fn restore_module<M: burn::module::Module>(
    module: M,
    tensors: &BTreeMap<String, HostTensor>,
    origin: &Path,
) -> Result<M, TrainError> {
    crate::models::params::restore_module(module, tensors).map_err(|problem| TrainError::Restore {
        path: origin.to_path_buf(),
        problem,
    })
}

/// Where training stands, saved with every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Index of the next example in the shuffled stream.
    pub next_example: u64,
    /// An example taken from the stream that did not fit its row yet (its stream index).
    pub pending_example: Option<u64>,
    /// Tokens processed so far (prompt and completion).
    pub num_tokens: u64,
    /// `lora` or `full`.
    pub kind: String,
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes a checkpoint folder `dir` atomically (temp folder + rename).
pub fn save(
    dir: &Path,
    weights: &[(String, HostTensor)],
    optimizer: &AdamW,
    state: &TrainState,
) -> Result<(), TrainError> {
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| write_err(&tmp, e))?;
    write_f32(&tmp.join("weights.safetensors"), weights).map_err(|e| write_err(&tmp, e))?;
    let mut moments = Vec::with_capacity(optimizer.state.len() * 2);
    for (path, m) in &optimizer.state {
        let n = m.m.len();
        moments.push((
            format!("{path}.m"),
            HostTensor {
                values: m.m.clone(),
                shape: vec![n],
            },
        ));
        moments.push((
            format!("{path}.v"),
            HostTensor {
                values: m.v.clone(),
                shape: vec![n],
            },
        ));
    }
    write_f32(&tmp.join("optimizer.safetensors"), &moments).map_err(|e| write_err(&tmp, e))?;
    let meta = serde_json::json!({ "state": state, "optimizer_step": optimizer.step });
    std::fs::write(tmp.join("state.json"), meta.to_string()).map_err(|e| write_err(&tmp, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| write_err(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| write_err(dir, e))
}

/// A checkpoint read back.
#[derive(Debug)]
pub struct Loaded {
    pub weights: BTreeMap<String, HostTensor>,
    pub moments: BTreeMap<String, Moments>,
    pub optimizer_step: u64,
    pub state: TrainState,
}

fn read_all(path: &Path) -> Result<BTreeMap<String, HostTensor>, TrainError> {
    let w = SafetensorsWeights::open_file(path).map_err(|e| write_err(path, e))?;
    let mut out = BTreeMap::new();
    for name in w.summary().into_keys() {
        if let Some(t) = w.tensor(&name).map_err(|e| write_err(path, e))? {
            out.insert(name, t);
        }
    }
    Ok(out)
}

/// Reads the checkpoint folder `dir`.
pub fn load(dir: &Path) -> Result<Loaded, TrainError> {
    let weights = read_all(&dir.join("weights.safetensors"))?;
    let flat = read_all(&dir.join("optimizer.safetensors"))?;
    let mut moments: BTreeMap<String, Moments> = BTreeMap::new();
    for (name, t) in flat {
        if let Some(path) = name.strip_suffix(".m") {
            moments
                .entry(path.to_string())
                .or_insert_with(|| Moments {
                    m: vec![],
                    v: vec![],
                })
                .m = t.values;
        } else if let Some(path) = name.strip_suffix(".v") {
            moments
                .entry(path.to_string())
                .or_insert_with(|| Moments {
                    m: vec![],
                    v: vec![],
                })
                .v = t.values;
        }
    }
    let meta_path = dir.join("state.json");
    let text = std::fs::read_to_string(&meta_path).map_err(|e| write_err(&meta_path, e))?;
    let meta: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| write_err(&meta_path, e))?;
    let state: TrainState =
        serde_json::from_value(meta["state"].clone()).map_err(|e| write_err(&meta_path, e))?;
    let optimizer_step = meta["optimizer_step"].as_u64().unwrap_or(state.step);
    Ok(Loaded {
        weights,
        moments,
        optimizer_step,
        state,
    })
}
