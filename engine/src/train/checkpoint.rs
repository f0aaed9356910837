//! Checkpoints: the trainable parameters (LoRA adapters or all weights) by module path, the
//! optimizer's moments, and the training state (step, data cursor, token count), written to a
//! temporary folder and renamed into place so a checkpoint either exists whole or not at all.
//!
//! Randomness needs no saved state: data order is a pure function of (seed, epoch) and dropout is
//! reseeded from (seed, step) before every step.
//!
//! A checkpoint also opens as a model for inference ([`open_checkpoint`]): its run's base model
//! with the saved weights (and adapters), on the CPU. [`ModelSpec`] is how commands and the
//! window name a model to open: a checkpoint id, `RUN:STEP`, or a model path.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::optim::{AdamW, Moments};
use super::{RunConfig, TrainError};
use crate::backend::Backend;
use crate::formats::loader::{LoadedModel, load_model};
use crate::formats::safetensors::{SafetensorsWeights, write_f32};
use crate::models::lora::LoraConfig;
pub use crate::models::params::module_tensors;
use crate::models::{HostTensor, WeightSource};
use crate::store::{CheckpointId, CheckpointRecord, RunId, Workspace};

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
    /// The adaptive curriculum's value of each difficulty level (empty for the others).
    #[serde(default)]
    pub curriculum_values: Vec<f64>,
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

/// A model as a command or the window names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A checkpoint of a run.
    Checkpoint(CheckpointRef),
    /// A model path (a Hugging Face folder, a .gguf file) or `builtin:NAME`.
    Model(String),
}

/// How a spec names a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointRef {
    /// Its id (`studio runs show RUN` lists them).
    Id(CheckpointId),
    /// `RUN:STEP`: the run's checkpoint at that step.
    RunStep { run: RunId, step: u64 },
}

impl CheckpointRef {
    /// The checkpoint, looked up in `workspace`.
    pub fn find(self, workspace: &Workspace) -> Result<CheckpointRecord, TrainError> {
        Ok(match self {
            Self::Id(id) => workspace.checkpoint(id)?,
            Self::RunStep { run, step } => workspace.checkpoint_at(run, step)?,
        })
    }
}

impl ModelSpec {
    /// A number is a checkpoint id, two numbers around a colon are `RUN:STEP`, anything else
    /// is a model.
    pub fn parse(spec: &str) -> Self {
        if let Ok(id) = spec.parse::<CheckpointId>() {
            return Self::Checkpoint(CheckpointRef::Id(id));
        }
        if let Some((run, step)) = spec.split_once(':')
            && let (Ok(run), Ok(step)) = (run.parse::<RunId>(), step.parse::<u64>())
        {
            return Self::Checkpoint(CheckpointRef::RunStep { run, step });
        }
        Self::Model(spec.to_string())
    }

    /// The spec names a checkpoint (and so needs a workspace to be found in).
    pub fn is_checkpoint(&self) -> bool {
        matches!(self, Self::Checkpoint(_))
    }
}

/// A model opened for inference, from a checkpoint or from its path.
pub struct OpenedModel {
    pub loaded: LoadedModel,
    /// The adapter settings of a LoRA run's checkpoint.
    pub lora: Option<LoraConfig>,
    /// The checkpoint and its run's config, when it is one.
    pub checkpoint: Option<(CheckpointRecord, RunConfig)>,
}

impl std::fmt::Debug for OpenedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedModel")
            .field("name", &self.loaded.name)
            .field("checkpoint", &self.checkpoint.as_ref().map(|c| c.0.id))
            .finish_non_exhaustive()
    }
}

/// The run config `checkpoint` was saved under.
pub fn checkpoint_config(
    workspace: &Workspace,
    checkpoint: &CheckpointRecord,
) -> Result<RunConfig, TrainError> {
    let record = workspace.run(checkpoint.run_id)?;
    RunConfig::from_toml(&record.config_toml, &format!("run {} config", record.id))
}

/// The model of `checkpoint`: its run's base model with the saved weights (and the run's LoRA
/// adapters when it trained some), on `backend`.
pub fn open_checkpoint(
    workspace: &Workspace,
    checkpoint: &CheckpointRecord,
    backend: &Backend,
) -> Result<OpenedModel, TrainError> {
    let what = format!(
        "checkpoint {} (run {} at step {})",
        checkpoint.id, checkpoint.run_id, checkpoint.step
    );
    open_checkpoint_inner(workspace, checkpoint, backend).map_err(|problem| TrainError::OpenModel {
        what,
        problem: Box::new(problem),
    })
}

fn open_checkpoint_inner(
    workspace: &Workspace,
    checkpoint: &CheckpointRecord,
    backend: &Backend,
) -> Result<OpenedModel, TrainError> {
    let config = checkpoint_config(workspace, checkpoint)?;
    let mut loaded = load_model(&config.model, backend)?;
    // A GRPO run's adapter sits in `[grpo.lora]`, an SFT run's in `[sft.lora]`.
    let (table, lora) = config.lora();
    let lora = lora.cloned();
    if let Some(l) = &lora {
        loaded.model = loaded
            .model
            .attach_lora(l, 0)
            .map_err(|e| TrainError::Setting {
                origin: format!("run {} config", checkpoint.run_id),
                setting: format!("{table}.lora.target_modules"),
                problem: e.to_string(),
            })?;
    }
    let saved = load(&checkpoint.path)?;
    loaded.model.transformer =
        restore_module(loaded.model.transformer, &saved.weights, &checkpoint.path)?;
    loaded.name = format!(
        "{} (run {} checkpoint {} at step {})",
        loaded.name, checkpoint.run_id, checkpoint.id, checkpoint.step
    );
    Ok(OpenedModel {
        loaded,
        lora,
        checkpoint: Some((checkpoint.clone(), config)),
    })
}

/// Opens what `spec` names (see [`ModelSpec::parse`]) on `backend`; a checkpoint is looked up
/// in `workspace`, which only a model path may go without.
pub fn open_model_spec(
    workspace: Option<&Workspace>,
    spec: &str,
    backend: &Backend,
) -> Result<OpenedModel, TrainError> {
    match (ModelSpec::parse(spec), workspace) {
        (ModelSpec::Model(model), _) => {
            let loaded = load_model(&model, backend).map_err(|e| TrainError::OpenModel {
                what: format!("model `{model}`"),
                problem: Box::new(e.into()),
            })?;
            Ok(OpenedModel {
                loaded,
                lora: None,
                checkpoint: None,
            })
        }
        (ModelSpec::Checkpoint(_), None) => Err(TrainError::NoWorkspace {
            spec: spec.to_string(),
        }),
        (ModelSpec::Checkpoint(at), Some(workspace)) => {
            open_checkpoint(workspace, &at.find(workspace)?, backend)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_as_checkpoints_or_models() {
        assert_eq!(
            ModelSpec::parse("12"),
            ModelSpec::Checkpoint(CheckpointRef::Id(12))
        );
        assert_eq!(
            ModelSpec::parse("3:40"),
            ModelSpec::Checkpoint(CheckpointRef::RunStep { run: 3, step: 40 })
        );
        for model in [
            "builtin:tiny-reasoner",
            "/models/m.gguf",
            "3:x",
            "a:4",
            "3:-1",
        ] {
            assert_eq!(ModelSpec::parse(model), ModelSpec::Model(model.into()));
            assert!(!ModelSpec::parse(model).is_checkpoint());
        }
        assert!(ModelSpec::parse("3:40").is_checkpoint());
    }

    #[test]
    fn a_checkpoint_spec_needs_a_workspace_and_an_existing_step() {
        let error = open_model_spec(None, "2:5", &Backend::cpu()).expect_err("no workspace");
        assert!(matches!(error, TrainError::NoWorkspace { .. }), "{error}");

        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = Workspace::open(dir.path()).expect("workspace");
        let run = workspace.create_run("r", "").expect("run");
        workspace
            .add_checkpoint(run, 4, &dir.path().join("c4"), "full")
            .expect("checkpoint");
        let message = open_model_spec(Some(&workspace), &format!("{run}:5"), &Backend::cpu())
            .expect_err("no step 5")
            .to_string();
        assert!(
            message.contains(&format!("run {run} has no checkpoint at step 5"))
                && message.contains("steps: 4"),
            "{message}"
        );
        let message = open_model_spec(Some(&workspace), "/nowhere/model.gguf", &Backend::cpu())
            .expect_err("no file")
            .to_string();
        assert!(message.contains("/nowhere/model.gguf"), "{message}");
    }
}
