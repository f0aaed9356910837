//! Every setting of a run config, described for forms: its dotted key, what kind of value it
//! takes and a one-line help. Defaults are not repeated here: [`defaults`] serializes the
//! config's own `Default`s, so a form and `studio train` can never disagree about them. A test
//! checks that every field the config serializes has an entry, so a new setting cannot be
//! left out of the launcher.

use super::RunConfig;

/// The kind of value a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    Bool,
    Integer,
    Float,
    Text,
    /// One of these strings.
    Choice(&'static [&'static str]),
    /// A TOML array (`[0.9, 0.99]`, `["q_proj", "v_proj"]`).
    List,
    /// A table that is present or absent as a whole (`[sft.lora]`, `init_from`); its fields
    /// are the settings under this key.
    Section,
    /// A value edited as TOML text (`[[rewards]]`, the column mapping).
    Toml,
}

/// One setting of the run config.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// Dotted path in the run document (`sft.lr`, `grpo.lora.rank`).
    pub key: &'static str,
    pub kind: SettingKind,
    pub help: &'static str,
}

const fn s(key: &'static str, kind: SettingKind, help: &'static str) -> Setting {
    Setting { key, kind, help }
}

use SettingKind::{Bool, Choice, Float, Integer, List, Section, Text, Toml};

/// The built-in tasks, as `data.builtin` names them.
pub const BUILTIN_TASKS: &[&str] = &["arithmetic", "countdown", "linear_equation"];
const DECAYS: &[&str] = &["cosine", "linear", "constant"];

/// The settings shared by `[sft]` and `[grpo]` (optimizer, schedule, LoRA), in form order.
macro_rules! optimizer_settings {
    ($t:literal) => {
        [
            s(concat!($t, ".lr"), Float, "Peak learning rate."),
            s(concat!($t, ".warmup_steps"), Integer, "Linear warmup steps."),
            s(concat!($t, ".schedule"), Choice(DECAYS), "Decay after warmup."),
            s(concat!($t, ".betas"), List, "AdamW betas [β1, β2], each in [0, 1)."),
            s(concat!($t, ".eps"), Float, "AdamW epsilon."),
            s(concat!($t, ".weight_decay"), Float, "Decoupled weight decay."),
            s(
                concat!($t, ".clip_grad_norm"),
                Float,
                "Clip the global gradient norm to this; 0 disables.",
            ),
            s(
                concat!($t, ".chat_template"),
                Bool,
                "Wrap prompts in the model's chat template.",
            ),
            s(
                concat!($t, ".lora"),
                Section,
                "Train a LoRA adapter instead of every weight.",
            ),
            s(concat!($t, ".lora.rank"), Integer, "Rank of the update."),
            s(
                concat!($t, ".lora.alpha"),
                Float,
                "Scale numerator: the update is multiplied by alpha / rank.",
            ),
            s(
                concat!($t, ".lora.dropout"),
                Float,
                "Dropout on the adapter's input during training.",
            ),
            s(
                concat!($t, ".lora.target_modules"),
                List,
                "Projections to adapt: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.",
            ),
        ]
    };
}

const GENERAL: [Setting; 7] = [
    s("name", Text, "A display name for the run."),
    s(
        "model",
        Text,
        "A Hugging Face folder, a .gguf file, builtin:tiny-reasoner (trained) or builtin:tiny-reasoner-init (untrained).",
    ),
    s(
        "algorithm",
        Choice(&["sft", "grpo"]),
        "Supervised fine-tuning or GRPO-family RL.",
    ),
    s(
        "backend",
        Choice(&["cpu", "wgpu", "cuda"]),
        "Where tensors live: cpu, or wgpu (any GPU; lavapipe without one). cuda: not in this build.",
    ),
    s(
        "seed",
        Integer,
        "Seed of data order, initialization, dropout and sampling.",
    ),
    s(
        "init_from",
        Section,
        "Start from another run's checkpoint instead of the model's weights.",
    ),
    s(
        "init_from.run",
        Integer,
        "The run whose checkpoint the weights come from.",
    ),
];

const INIT_STEP_AND_DATA: [Setting; 8] = [
    s(
        "init_from.step",
        Integer,
        "The checkpoint's step; absent means the latest.",
    ),
    s(
        "data.builtin",
        Choice(BUILTIN_TASKS),
        "A built-in task with a verifier (or use data.path).",
    ),
    s(
        "data.count",
        Integer,
        "Training examples generated from the built-in task.",
    ),
    s(
        "data.difficulty",
        Integer,
        "Difficulty of built-in problems, 0 (easiest) to 3.",
    ),
    s(
        "data.path",
        Text,
        "A dataset file: JSONL, JSON, CSV/TSV or Parquet.",
    ),
    s(
        "data.mapping",
        Toml,
        "Which column holds each role, for unrecognised layouts: prompt, reasoning, answer, messages, image.",
    ),
    s(
        "data.holdout",
        Integer,
        "Rows held out from the file for evaluation.",
    ),
    s(
        "data.curriculum",
        Choice(&["none", "easy_to_hard", "random", "adaptive"]),
        "Levels 0…difficulty over the run: none, easy_to_hard, random (mixed) or adaptive (GRPO, by learning progress).",
    ),
];

const SFT: [Setting; 5] = [
    s("sft.max_steps", Integer, "Optimizer steps."),
    s("sft.batch_size", Integer, "Sequences per micro-batch."),
    s(
        "sft.grad_accum",
        Integer,
        "Micro-batches per optimizer step.",
    ),
    s(
        "sft.max_seq_len",
        Integer,
        "Tokens per sequence; longer examples are cut.",
    ),
    s(
        "sft.packing",
        Bool,
        "Pack several examples into one sequence (block-diagonal attention).",
    ),
];

const GRPO: [Setting; 25] = [
    s("grpo.max_steps", Integer, "Rollout-and-update steps."),
    s("grpo.prompts_per_step", Integer, "Prompts drawn per step."),
    s(
        "grpo.num_generations",
        Integer,
        "Completions sampled per prompt (G), at least 2.",
    ),
    s(
        "grpo.max_completion_length",
        Integer,
        "Tokens generated per completion at most.",
    ),
    s("grpo.temperature", Float, "Sampling temperature."),
    s("grpo.top_p", Float, "Nucleus sampling; 1 disables."),
    s(
        "grpo.top_k",
        Integer,
        "Sample among the k most likely tokens; 0 disables.",
    ),
    s(
        "grpo.min_p",
        Float,
        "Drop tokens below min_p × the top probability; 0 disables.",
    ),
    s(
        "grpo.repetition_penalty",
        Float,
        "Divides the logits of tokens already in the sequence.",
    ),
    s(
        "grpo.scale_rewards",
        Choice(&["group", "batch", "none"]),
        "Divide advantages by the reward std of the group, the batch, or not at all (Dr. GRPO).",
    ),
    s(
        "grpo.loss_type",
        Choice(&["grpo", "bnpo", "dapo", "dr_grpo"]),
        "Loss normaliser: per sequence (grpo), per token of the batch (bnpo, dapo) or a constant (dr_grpo).",
    ),
    s("grpo.epsilon", Float, "Lower clip of the importance ratio."),
    s(
        "grpo.epsilon_high",
        Float,
        "Upper clip (clip-higher, DAPO); absent means epsilon.",
    ),
    s(
        "grpo.delta",
        Float,
        "Two-sided clip: cap on the unclipped ratio; absent means none.",
    ),
    s(
        "grpo.num_iterations",
        Integer,
        "Updates per rollout batch (μ), with importance ratios against the rollout policy.",
    ),
    s(
        "grpo.importance_sampling_level",
        Choice(&["token", "sequence"]),
        "Importance ratio per token, or per sequence (GSPO).",
    ),
    s(
        "grpo.beta",
        Float,
        "Weight of the k3 KL to the frozen reference; 0 keeps no reference.",
    ),
    s("grpo.entropy_coef", Float, "Weight of the entropy bonus."),
    s(
        "grpo.top_entropy_quantile",
        Float,
        "Only this top fraction of completion tokens by entropy gets gradient (ρ, forking tokens).",
    ),
    s(
        "grpo.mask_truncated_completions",
        Bool,
        "Completions cut at max_completion_length count for nothing in the loss.",
    ),
    s(
        "grpo.dynamic_sampling",
        Bool,
        "DAPO: drop groups whose rewards all agree and draw more prompts.",
    ),
    s(
        "grpo.max_resample_rounds",
        Integer,
        "Extra rounds of prompts dynamic sampling may draw.",
    ),
    s(
        "grpo.micro_batch",
        Integer,
        "Sequences per forward/backward pass of the update.",
    ),
    s(
        "grpo.traces_keep_every",
        Integer,
        "Keep the rollouts of every N-th step once older than traces_keep_recent.",
    ),
    s(
        "grpo.traces_keep_recent",
        Integer,
        "Steps behind the newest whose rollouts are all kept.",
    ),
];

const REST: [Setting; 5] = [
    s(
        "rewards",
        Toml,
        "[[rewards]] tables: kind = accuracy | format | length | overlong, weight, pattern, max_length, cache.",
    ),
    s(
        "eval.every",
        Integer,
        "Evaluate every N optimizer steps (and at the end); 0 = only at the end.",
    ),
    s("eval.count", Integer, "Held-out problems per evaluation."),
    s(
        "eval.max_new_tokens",
        Integer,
        "Tokens generated per answer (greedy).",
    ),
    s(
        "checkpoint.every",
        Integer,
        "Save every N optimizer steps (and always at the end); 0 = only at the end.",
    ),
];

/// Every setting, in form order.
pub fn all() -> Vec<Setting> {
    let mut out = Vec::with_capacity(80);
    out.extend(GENERAL);
    out.extend(INIT_STEP_AND_DATA);
    out.extend(SFT);
    out.extend(optimizer_settings!("sft"));
    out.extend(GRPO);
    out.extend(optimizer_settings!("grpo"));
    out.extend(REST);
    out
}

/// The setting at `key`.
pub fn find(key: &str) -> Option<Setting> {
    all().into_iter().find(|s| s.key == key)
}

/// The smallest run document: what every form starts from.
pub const MINIMAL_RUN: &str =
    "model = \"builtin:tiny-reasoner-init\"\n\n[data]\nbuiltin = \"arithmetic\"\n";

/// The defaults of every setting that has one, as the config serializes them (settings whose
/// default is "absent", such as `grpo.epsilon_high` or `sft.lora`, are missing). Sections'
/// fields take the defaults of the section's own type (`sft.lora.rank` = 16).
pub fn defaults() -> toml::Table {
    let mut config: RunConfig = toml::from_str(MINIMAL_RUN).expect("the minimal run parses");
    config.sft.lora = Some(Default::default());
    config.grpo.lora = Some(Default::default());
    let mut table = to_table(&config);
    // `data.builtin` and `model` are choices of the minimal run, not defaults.
    table.remove("model");
    if let Some(toml::Value::Table(data)) = table.get_mut("data") {
        data.remove("builtin");
    }
    table
}

fn to_table(config: &RunConfig) -> toml::Table {
    match toml::Value::try_from(config) {
        Ok(toml::Value::Table(t)) => t,
        other => panic!("a run config serializes to a table, not {other:?}"),
    }
}

/// The default of the setting at dotted `key`, if it has one.
pub fn default_of(defaults: &toml::Table, key: &str) -> Option<toml::Value> {
    let mut parts = key.split('.');
    let mut value = defaults.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every leaf key a config with every optional part set serializes.
    fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) if key != "data.mapping" => leaves(&key, t, out),
                _ => out.push(key),
            }
        }
    }

    #[test]
    fn every_serialized_field_has_a_setting_with_a_matching_kind() {
        let full = r#"
            model = "m"
            init_from = { run = 1, step = 10 }
            rewards = [{ kind = "accuracy" }]
            [data]
            path = "x.jsonl"
            mapping = { prompt = "q" }
            [sft.lora]
            [grpo]
            epsilon_high = 0.28
            delta = 1.5
            [grpo.lora]
        "#;
        let config: RunConfig = toml::from_str(full).expect("parses");
        let table = to_table(&config);
        let mut keys = Vec::new();
        leaves("", &table, &mut keys);
        keys.push("data.builtin".into());
        let settings = all();
        for key in &keys {
            let setting = settings
                .iter()
                .find(|s| s.key == key)
                .unwrap_or_else(|| panic!("`{key}` has no entry in train::settings"));
            let value = default_of(&table, key);
            let fits = matches!(
                (setting.kind, &value),
                (_, None)
                    | (Bool, Some(toml::Value::Boolean(_)))
                    | (Integer, Some(toml::Value::Integer(_)))
                    | (Float, Some(toml::Value::Float(_)))
                    | (Text | Choice(_), Some(toml::Value::String(_)))
                    | (List, Some(toml::Value::Array(_)))
                    | (Toml, Some(_))
            );
            assert!(
                fits,
                "`{key}` is {:?} but serializes as {value:?}",
                setting.kind
            );
            if let (Choice(options), Some(toml::Value::String(v))) = (setting.kind, &value) {
                assert!(
                    options.contains(&v.as_str()),
                    "`{key}` = {v} is not among {options:?}"
                );
            }
        }
        // And no entry names a field the config does not have.
        for setting in &settings {
            let known = keys.iter().any(|k| k == setting.key)
                || keys
                    .iter()
                    .any(|k| k.starts_with(&format!("{}.", setting.key)));
            assert!(known, "`{}` is not a field of the run config", setting.key);
        }
    }

    #[test]
    fn defaults_come_from_the_config_types() {
        let d = defaults();
        let value = |k: &str| default_of(&d, k);
        // Spot checks against the documented defaults in config.rs and lora.rs.
        assert_eq!(value("sft.lr"), Some(toml::Value::Float(1e-4)));
        assert_eq!(value("grpo.lr"), Some(toml::Value::Float(1e-5)));
        assert_eq!(
            value("grpo.loss_type"),
            Some(toml::Value::String("dapo".into()))
        );
        assert_eq!(value("sft.lora.rank"), Some(toml::Value::Integer(16)));
        assert_eq!(value("checkpoint.every"), Some(toml::Value::Integer(50)));
        assert_eq!(value("grpo.epsilon_high"), None);
        assert_eq!(value("model"), None);
        // Every choice default is one of its options.
        for setting in all() {
            if let (Choice(options), Some(toml::Value::String(v))) =
                (setting.kind, default_of(&d, setting.key))
            {
                assert!(options.contains(&v.as_str()), "{}", setting.key);
            }
        }
    }
}
