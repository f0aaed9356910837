//! A run's configuration: one TOML document (model, data, algorithm and its settings,
//! evaluation, checkpoint cadence, backend, seed). Every field has a documented default;
//! unknown fields and out-of-range values are errors naming the setting.

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::schedule::Decay;
use crate::models::lora::LoraConfig;

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// A display name. Default: "run".
    #[serde(default = "default_name")]
    pub name: String,
    /// A Hugging Face folder, a .gguf file, or `builtin:tiny-reasoner`.
    pub model: String,
    /// `cpu` (default), `wgpu`, `cuda`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Seed of data order, initialization, dropout. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Only `sft` for now.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    pub data: DataConfig,
    #[serde(default)]
    pub sft: SftConfig,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

fn default_name() -> String {
    "run".into()
}
fn default_backend() -> String {
    "cpu".into()
}
fn default_algorithm() -> String {
    "sft".into()
}

/// Where examples come from: a built-in task or a dataset file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A built-in task (`arithmetic`, `countdown`, `linear_equation`).
    pub builtin: Option<String>,
    /// Training examples generated from the built-in task. Default 4096.
    #[serde(default = "default_count")]
    pub count: u64,
    /// Difficulty of built-in problems, 0 (easiest) to 3. Default 1.
    #[serde(default = "default_difficulty")]
    pub difficulty: u8,
    /// A dataset file (JSONL, JSON, CSV/TSV, Parquet).
    pub path: Option<String>,
    /// Column → role mapping for datasets whose layout is not recognised.
    pub mapping: Option<crate::data::RoleMapping>,
    /// Rows held out from the file for evaluation. Default 32.
    #[serde(default = "default_holdout")]
    pub holdout: usize,
}

fn default_count() -> u64 {
    4096
}
fn default_difficulty() -> u8 {
    crate::data::builtin::DEFAULT_DIFFICULTY
}
fn default_holdout() -> usize {
    32
}

/// Supervised fine-tuning settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// Optimizer steps. Default 100.
    pub max_steps: u64,
    /// Sequences per micro-batch. Default 8.
    pub batch_size: usize,
    /// Micro-batches per optimizer step. Default 1.
    pub grad_accum: usize,
    /// Tokens per sequence (longer examples are cut). Default 256.
    pub max_seq_len: usize,
    /// Pack several examples into one sequence (block-diagonal attention). Default true.
    pub packing: bool,
    /// Peak learning rate. Default 1e-4.
    pub lr: f64,
    /// Linear warmup steps. Default 0.
    pub warmup_steps: u64,
    /// Decay after warmup: cosine (default), linear, constant.
    pub schedule: Decay,
    /// AdamW betas. Default [0.9, 0.999].
    pub betas: [f64; 2],
    /// AdamW epsilon. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this; 0 disables. Default 1.0.
    pub clip_grad_norm: f64,
    /// Use the model's chat template for prompt/completion. Default true.
    pub chat_template: bool,
    /// LoRA instead of full fine-tuning when present.
    pub lora: Option<LoraConfig>,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            max_steps: 100,
            batch_size: 8,
            grad_accum: 1,
            max_seq_len: 256,
            packing: true,
            lr: 1e-4,
            warmup_steps: 0,
            schedule: Decay::Cosine,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.0,
            clip_grad_norm: 1.0,
            chat_template: true,
            lora: None,
        }
    }
}

/// Periodic evaluation with the task verifiers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every N optimizer steps (and at the end); 0 = only at the end. Default 0.
    pub every: u64,
    /// Held-out problems per evaluation. Default 32.
    pub count: usize,
    /// Tokens generated per answer (greedy). Default 96.
    pub max_new_tokens: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 0,
            count: 32,
            max_new_tokens: 96,
        }
    }
}

/// Checkpoint cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save every N optimizer steps (and always at the end); 0 = only at the end. Default 50.
    pub every: u64,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self { every: 50 }
    }
}

impl RunConfig {
    /// Parses and validates a TOML document. `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        let config: Self = toml::from_str(text).map_err(|e| TrainError::ConfigSyntax {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks every setting's range.
    pub fn validate(&self, origin: &str) -> Result<(), TrainError> {
        let bad = |setting: &str, problem: &str| {
            Err(TrainError::Setting {
                origin: origin.to_string(),
                setting: setting.to_string(),
                problem: problem.to_string(),
            })
        };
        if self.algorithm != "sft" {
            return bad(
                "algorithm",
                &format!("= \"{}\" is not supported yet (sft)", self.algorithm),
            );
        }
        if self.backend.parse::<crate::backend::BackendKind>().is_err() {
            return bad("backend", "must be cpu, wgpu or cuda");
        }
        match (&self.data.builtin, &self.data.path) {
            (None, None) => return bad("data", "needs `builtin = \"TASK\"` or `path = \"FILE\"`"),
            (Some(_), Some(_)) => return bad("data", "takes `builtin` or `path`, not both"),
            (Some(task), None) if crate::data::builtin::BuiltinTask::from_name(task).is_none() => {
                return bad(
                    "data.builtin",
                    &format!(
                        "= \"{task}\" is not a built-in task (arithmetic, countdown, linear_equation)"
                    ),
                );
            }
            _ => {}
        }
        if self.data.difficulty > crate::data::builtin::MAX_DIFFICULTY {
            return bad(
                "data.difficulty",
                &format!("must be 0 to {}", crate::data::builtin::MAX_DIFFICULTY),
            );
        }
        let s = &self.sft;
        if s.max_steps == 0 {
            return bad("sft.max_steps", "must be at least 1");
        }
        if s.batch_size == 0 {
            return bad("sft.batch_size", "must be at least 1");
        }
        if s.grad_accum == 0 {
            return bad("sft.grad_accum", "must be at least 1");
        }
        if s.max_seq_len < 8 {
            return bad("sft.max_seq_len", "must be at least 8");
        }
        if !(s.lr > 0.0 && s.lr.is_finite()) {
            return bad("sft.lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&s.betas[0]) || !(0.0..1.0).contains(&s.betas[1]) {
            return bad("sft.betas", "must both be in [0, 1)");
        }
        if s.clip_grad_norm < 0.0 {
            return bad("sft.clip_grad_norm", "must be ≥ 0 (0 disables clipping)");
        }
        if let Some(l) = &s.lora {
            if l.rank == 0 {
                return bad("sft.lora.rank", "must be at least 1");
            }
            if !(0.0..1.0).contains(&l.dropout) {
                return bad("sft.lora.dropout", "must be in [0, 1)");
            }
            if let Some(t) = l
                .target_modules
                .iter()
                .find(|t| !crate::models::lora::TARGETS.contains(&t.as_str()))
            {
                return bad(
                    "sft.lora.target_modules",
                    &format!(
                        "names `{t}`, which is not a projection ({})",
                        crate::models::lora::TARGETS.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "model = \"builtin:tiny-reasoner\"\n[data]\nbuiltin = \"arithmetic\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = RunConfig::from_toml(MINIMAL, "run.toml").expect("valid");
        assert_eq!(c.sft.batch_size, 8);
        assert_eq!(c.checkpoint.every, 50);
        assert_eq!(c.backend, "cpu");
    }

    #[test]
    fn bad_settings_are_named() {
        let e = RunConfig::from_toml(&format!("{MINIMAL}[sft]\nlr = -1.0\n"), "run.toml")
            .expect_err("bad lr");
        assert!(
            e.to_string().contains("sft.lr") && e.to_string().contains("run.toml"),
            "{e}"
        );
        let e = RunConfig::from_toml(&format!("{MINIMAL}[sft]\nbatchsize = 4\n"), "run.toml")
            .expect_err("typo");
        assert!(e.to_string().contains("batchsize"), "{e}");
        let e = RunConfig::from_toml("model = \"x\"\n[data]\nbuiltin = \"chess\"\n", "r.toml")
            .expect_err("task");
        assert!(e.to_string().contains("data.builtin"), "{e}");
        let e = RunConfig::from_toml(
            &format!("{MINIMAL}[sft.lora]\ntarget_modules = [\"qkv\"]\n"),
            "r.toml",
        )
        .expect_err("target");
        assert!(e.to_string().contains("qkv"), "{e}");
    }
}
