//! A run's configuration: one TOML document (model, data, algorithm and its settings,
//! evaluation, checkpoint cadence, backend, seed). Every field has a documented default;
//! unknown fields and out-of-range values are errors naming the setting.

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::grpo::objective::{ImportanceLevel, LossType, ScaleRewards};
use super::rewards::{RewardSet, RewardSpec};
use super::schedule::Decay;
use crate::backend::BackendKind;
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
    #[serde(default)]
    pub backend: BackendKind,
    /// Seed of data order, initialization, dropout. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// `sft` (default) or `grpo`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Start from another run's checkpoint (cold-start SFT, then GRPO, is two runs).
    #[serde(default)]
    pub init_from: Option<InitFrom>,
    pub data: DataConfig,
    #[serde(default)]
    pub sft: SftConfig,
    /// Settings of `algorithm = "grpo"`.
    #[serde(default)]
    pub grpo: GrpoConfig,
    /// The rewards of a GRPO run (`[[rewards]]` tables), summed with their weights.
    #[serde(default)]
    pub rewards: Vec<RewardSpec>,
    #[serde(default)]
    pub eval: EvalConfig,
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
}

fn default_name() -> String {
    "run".into()
}

/// What a run trains with: the `algorithm` setting, parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Supervised fine-tuning (the `[sft]` table).
    #[default]
    Sft,
    /// GRPO-family RL with verifiable rewards (the `[grpo]` table and `[[rewards]]`).
    Grpo,
}

impl Algorithm {
    /// Every algorithm, in the order forms list them.
    pub const ALL: [Self; 2] = [Self::Sft, Self::Grpo];

    /// The name in configs, and the table its settings sit in.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Grpo => "grpo",
        }
    }

    /// The algorithm a config names, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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
    /// The order of difficulty over the run, for built-in tasks (held-out problems stay at
    /// `difficulty`, the hardest level): `none` (default), `easy_to_hard`, `random` or
    /// `adaptive` (GRPO).
    #[serde(default)]
    pub curriculum: Curriculum,
}

/// How a run's training problems move through the difficulty levels `0 … difficulty`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Curriculum {
    /// Every problem at `difficulty`.
    #[default]
    None,
    /// The levels in order, rising with the step: an equal share of the steps at each.
    EasyToHard,
    /// The levels mixed at random, each problem's drawn uniformly (the order-free baseline of
    /// the same problems).
    Random,
    /// GRPO only: each step's level drawn by learning progress, as in Self-Evolving
    /// Curriculum: a level's value is the running mean of the absolute advantages its steps
    /// gave (`CURRICULUM_ALPHA`), and the next level is drawn in proportion to
    /// exp(value / `CURRICULUM_TEMPERATURE`).
    Adaptive,
}

/// Adaptive curriculum: the weight of a step's learning progress in its level's value.
pub const CURRICULUM_ALPHA: f64 = 0.5;
/// Adaptive curriculum: the temperature of the draw over the levels' values (in units of mean
/// absolute advantage).
pub const CURRICULUM_TEMPERATURE: f64 = 0.1;

impl Curriculum {
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::EasyToHard => "easy_to_hard",
            Self::Random => "random",
            Self::Adaptive => "adaptive",
        }
    }
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

/// Which checkpoint a run starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitFrom {
    /// The run whose latest checkpoint (or `step`'s) the weights come from.
    pub run: i64,
    /// The checkpoint's step; default: the latest.
    #[serde(default)]
    pub step: Option<u64>,
}

/// GRPO-family settings, named as in TRL's `GRPOConfig` where one exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpoConfig {
    /// Rollout-and-update steps. Default 100.
    pub max_steps: u64,
    /// Prompts drawn per step. Default 8.
    pub prompts_per_step: usize,
    /// Completions sampled per prompt (G). Default 8.
    pub num_generations: usize,
    /// Tokens generated per completion at most. Default 128.
    pub max_completion_length: usize,
    /// Sampling temperature. Default 1.0.
    pub temperature: f64,
    /// Nucleus sampling; 1 disables. Default 1.0.
    pub top_p: f64,
    /// Sample among the k most likely tokens; 0 disables. Default 0.
    pub top_k: usize,
    /// Drop tokens below `min_p` × the top probability; 0 disables. Default 0.
    pub min_p: f64,
    /// Divides the logits of tokens already in the sequence (>1 discourages repeats). Default 1.
    pub repetition_penalty: f64,
    /// `group` (default), `batch` or `none`.
    pub scale_rewards: ScaleRewards,
    /// `grpo`, `bnpo`, `dapo` (default) or `dr_grpo`.
    pub loss_type: LossType,
    /// Lower clip of the importance ratio. Default 0.2.
    pub epsilon: f64,
    /// Upper clip (clip-higher); default: `epsilon`.
    pub epsilon_high: Option<f64>,
    /// Two-sided clip: cap on the unclipped ratio; default none.
    pub delta: Option<f64>,
    /// Updates per rollout batch (μ), with importance ratios against the rollout policy. Default 1.
    pub num_iterations: usize,
    /// `token` (default) or `sequence` (GSPO).
    pub importance_sampling_level: ImportanceLevel,
    /// Weight of the k3 KL to the frozen reference (the base with the adapter off, for LoRA);
    /// 0 (default) keeps no reference.
    pub beta: f64,
    /// Weight of the entropy bonus. Default 0.
    pub entropy_coef: f64,
    /// Only this top fraction of completion tokens by entropy gets gradient (ρ). Default 1.
    pub top_entropy_quantile: f64,
    /// Truncated completions (no end token) count for nothing in the loss. Default false.
    pub mask_truncated_completions: bool,
    /// DAPO's dynamic sampling: drop groups whose rewards all agree and draw more prompts.
    /// Default false.
    pub dynamic_sampling: bool,
    /// Extra rounds of prompts dynamic sampling may draw per step. Default 4.
    pub max_resample_rounds: usize,
    /// Sequences per forward/backward pass of the update. Default 16.
    pub micro_batch: usize,
    /// Trace retention: keep the rollouts of every N-th step once they are more than
    /// `traces_keep_recent` steps old; 1 (default) keeps every step.
    pub traces_keep_every: u64,
    /// Steps behind the newest whose rollouts are all kept. Default 100.
    pub traces_keep_recent: u64,
    /// Peak learning rate. Default 1e-5.
    pub lr: f64,
    /// Linear warmup steps. Default 0.
    pub warmup_steps: u64,
    /// Decay after warmup: cosine, linear, constant (default).
    pub schedule: Decay,
    /// AdamW betas. Default [0.9, 0.99].
    pub betas: [f64; 2],
    /// AdamW epsilon. Default 1e-8.
    pub eps: f64,
    /// Decoupled weight decay. Default 0.
    pub weight_decay: f64,
    /// Clip the global gradient norm to this; 0 disables. Default 1.0.
    pub clip_grad_norm: f64,
    /// Use the model's chat template for prompts. Default true.
    pub chat_template: bool,
    /// LoRA instead of full fine-tuning when present.
    pub lora: Option<LoraConfig>,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        Self {
            max_steps: 100,
            prompts_per_step: 8,
            num_generations: 8,
            max_completion_length: 128,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            scale_rewards: ScaleRewards::Group,
            loss_type: LossType::Dapo,
            epsilon: 0.2,
            epsilon_high: None,
            delta: None,
            num_iterations: 1,
            importance_sampling_level: ImportanceLevel::Token,
            beta: 0.0,
            entropy_coef: 0.0,
            top_entropy_quantile: 1.0,
            mask_truncated_completions: false,
            dynamic_sampling: false,
            max_resample_rounds: 4,
            micro_batch: 16,
            traces_keep_every: 1,
            traces_keep_recent: 100,
            lr: 1e-5,
            warmup_steps: 0,
            schedule: Decay::Constant,
            betas: [0.9, 0.99],
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
        let config: Self = toml::from_str(text).map_err(|e| {
            let study = toml::from_str::<toml::Table>(text)
                .is_ok_and(|t| t.get("runs").is_some_and(toml::Value::is_array));
            TrainError::ConfigSyntax {
                origin: origin.to_string(),
                message: if study {
                    "this is a study (it has [[runs]] tables), not a run config: run it with \
                     studio study FILE, or check it with studio study FILE --check"
                        .to_string()
                } else {
                    e.to_string()
                },
            }
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
        if self.backend == BackendKind::Cuda {
            return bad("backend", crate::backend::CUDA_NOT_COMPILED);
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
        if self.data.curriculum != Curriculum::None && self.data.builtin.is_none() {
            return bad(
                "data.curriculum",
                "orders a built-in task's difficulty levels; a dataset file has none (set it \
                 to \"none\" or use `builtin`)",
            );
        }
        if self.data.curriculum == Curriculum::Adaptive && self.algorithm != Algorithm::Grpo {
            return bad(
                "data.curriculum",
                "= \"adaptive\" draws levels by GRPO's advantages; an SFT run takes \
                 \"easy_to_hard\" or \"random\"",
            );
        }
        if self.data.difficulty > crate::data::builtin::MAX_DIFFICULTY {
            return bad(
                "data.difficulty",
                &format!("must be 0 to {}", crate::data::builtin::MAX_DIFFICULTY),
            );
        }
        if self.algorithm == Algorithm::Grpo {
            return self.validate_grpo(origin);
        }
        if !self.rewards.is_empty() {
            return bad("rewards", "are used by algorithm = \"grpo\" only");
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
            validate_lora(l, "sft", origin)?;
        }
        Ok(())
    }

    fn validate_grpo(&self, origin: &str) -> Result<(), TrainError> {
        let bad = |setting: &str, problem: String| {
            Err(TrainError::Setting {
                origin: origin.to_string(),
                setting: format!("grpo.{setting}"),
                problem,
            })
        };
        let g = &self.grpo;
        let at_least_1 = [
            ("max_steps", g.max_steps as usize),
            ("prompts_per_step", g.prompts_per_step),
            ("max_completion_length", g.max_completion_length),
            ("num_iterations", g.num_iterations),
            ("micro_batch", g.micro_batch),
            ("traces_keep_every", g.traces_keep_every as usize),
        ];
        for (name, value) in at_least_1 {
            if value == 0 {
                return bad(name, "must be at least 1".into());
            }
        }
        if g.num_generations < 2 {
            return bad(
                "num_generations",
                format!(
                    "must be at least 2 (found {}): advantages compare the completions of one prompt",
                    g.num_generations
                ),
            );
        }
        if !(g.top_entropy_quantile > 0.0 && g.top_entropy_quantile <= 1.0) {
            return bad(
                "top_entropy_quantile",
                format!("must be in (0, 1], found {}", g.top_entropy_quantile),
            );
        }
        if !(g.temperature > 0.0 && g.temperature.is_finite()) {
            return bad("temperature", "must be a positive number".into());
        }
        if !(g.lr > 0.0 && g.lr.is_finite()) {
            return bad("lr", "must be a positive number".into());
        }
        if !(g.epsilon > 0.0 && g.epsilon < 1.0) {
            return bad("epsilon", format!("must be in (0, 1), found {}", g.epsilon));
        }
        if let Some(high) = g.epsilon_high
            && !(high > 0.0 && high.is_finite())
        {
            return bad("epsilon_high", format!("must be positive, found {high}"));
        }
        if let Some(delta) = g.delta
            && delta <= 1.0 + g.epsilon_high.unwrap_or(g.epsilon)
        {
            return bad(
                "delta",
                format!("must exceed 1 + epsilon_high (a cap below the clip range), found {delta}"),
            );
        }
        for (name, value) in [("beta", g.beta), ("entropy_coef", g.entropy_coef)] {
            if !(value >= 0.0 && value.is_finite()) {
                return bad(name, format!("must be ≥ 0, found {value}"));
            }
        }
        if !(0.0..1.0).contains(&g.betas[0]) || !(0.0..1.0).contains(&g.betas[1]) {
            return bad("betas", "must both be in [0, 1)".into());
        }
        if g.clip_grad_norm < 0.0 {
            return bad("clip_grad_norm", "must be ≥ 0 (0 disables clipping)".into());
        }
        if let Some(l) = &g.lora {
            validate_lora(l, "grpo", origin)?;
        }
        RewardSet::compile(&self.rewards, g.max_completion_length).map_err(|e| {
            TrainError::Setting {
                origin: origin.to_string(),
                setting: "rewards".into(),
                problem: e.to_string(),
            }
        })?;
        Ok(())
    }

    /// The optimizer steps of the algorithm this run uses.
    pub fn steps(&self) -> u64 {
        if self.algorithm == Algorithm::Grpo {
            self.grpo.max_steps
        } else {
            self.sft.max_steps
        }
    }

    /// Whether the algorithm this run uses wraps prompts in the model's chat template
    /// (`sft.chat_template` or `grpo.chat_template`).
    pub fn chat_template(&self) -> bool {
        if self.algorithm == Algorithm::Grpo {
            self.grpo.chat_template
        } else {
            self.sft.chat_template
        }
    }

    /// The LoRA settings of the algorithm this run uses, with the table they sit in (`grpo` or
    /// `sft`); `None` for full fine-tuning.
    pub fn lora(&self) -> (&'static str, Option<&LoraConfig>) {
        match self.algorithm {
            Algorithm::Grpo => ("grpo", self.grpo.lora.as_ref()),
            Algorithm::Sft => ("sft", self.sft.lora.as_ref()),
        }
    }
}

fn validate_lora(l: &LoraConfig, table: &str, origin: &str) -> Result<(), TrainError> {
    let bad = |setting: &str, problem: String| {
        Err(TrainError::Setting {
            origin: origin.to_string(),
            setting: format!("{table}.lora.{setting}"),
            problem,
        })
    };
    if l.rank == 0 {
        return bad("rank", "must be at least 1".into());
    }
    if !(0.0..1.0).contains(&l.dropout) {
        return bad("dropout", "must be in [0, 1)".into());
    }
    if let Some(t) = l
        .target_modules
        .iter()
        .find(|t| !crate::models::lora::TARGETS.contains(&t.as_str()))
    {
        return bad(
            "target_modules",
            format!(
                "names `{t}`, which is not a projection ({})",
                crate::models::lora::TARGETS.join(", ")
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "model = \"builtin:tiny-reasoner-init\"\n[data]\nbuiltin = \"arithmetic\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = RunConfig::from_toml(MINIMAL, "run.toml").expect("valid");
        assert_eq!(c.sft.batch_size, 8);
        assert_eq!(c.checkpoint.every, 50);
        assert_eq!(c.backend, BackendKind::Cpu);
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

    const GRPO: &str = r#"
algorithm = "grpo"
model = "builtin:tiny-reasoner"
[data]
builtin = "arithmetic"
[grpo]
max_steps = 100
prompts_per_step = 8
num_generations = 8
max_completion_length = 128
temperature = 1.0
lr = 1e-5
loss_type = "dapo"
epsilon_high = 0.28
[[rewards]]
name = "accuracy"
kind = "accuracy"
weight = 1.0
[[rewards]]
name = "format"
kind = "format"
pattern = '(?s)<think>.*</think>\s*<answer>.*</answer>'
weight = 0.5
"#;

    #[test]
    fn the_issue_s_grpo_document_parses_with_defaults() {
        let c = RunConfig::from_toml(GRPO, "grpo.toml").expect("valid");
        assert_eq!(c.algorithm, Algorithm::Grpo);
        assert_eq!(c.grpo.epsilon_high, Some(0.28));
        assert_eq!(c.grpo.loss_type, LossType::Dapo);
        assert_eq!(c.grpo.scale_rewards, ScaleRewards::Group);
        assert_eq!(c.grpo.top_entropy_quantile, 1.0);
        assert_eq!(c.rewards.len(), 2);
        assert_eq!(c.rewards[1].weight, 0.5);
        assert_eq!(c.steps(), 100);
    }

    #[test]
    fn bad_grpo_settings_name_the_setting() {
        let with = |extra: &str, replace: (&str, &str)| {
            RunConfig::from_toml(
                &GRPO
                    .replace(replace.0, replace.1)
                    .replace("[grpo]", &format!("[grpo]\n{extra}")),
                "g.toml",
            )
            .expect_err("invalid")
            .to_string()
        };
        let e = with("", ("num_generations = 8", "num_generations = 1"));
        assert!(
            e.contains("grpo.num_generations") && e.contains("at least 2"),
            "{e}"
        );
        let e = with("top_entropy_quantile = 0.0", ("", ""));
        assert!(
            e.contains("grpo.top_entropy_quantile") && e.contains("(0, 1]"),
            "{e}"
        );
        let e = with("top_entropy_quantile = 1.5", ("", ""));
        assert!(e.contains("grpo.top_entropy_quantile"), "{e}");
        let e = with("", ("kind = \"accuracy\"", "kind = \"vibes\""));
        assert!(e.contains("vibes") && e.contains("g.toml"), "{e}");
        let e = with("", ("(?s)<think>", "(?s)(<think>"));
        assert!(
            e.contains("rewards[1] (format)") && e.contains("does not compile"),
            "{e}"
        );
        let no_rewards = GRPO.split("[[rewards]]").next().expect("head").to_string();
        let e = RunConfig::from_toml(&no_rewards, "g.toml")
            .expect_err("no rewards")
            .to_string();
        assert!(e.contains("rewards") && e.contains("at least one"), "{e}");
        let e = with("delta = 1.1", ("", ""));
        assert!(e.contains("grpo.delta"), "{e}");
    }
}
