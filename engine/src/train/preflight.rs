//! The checks a launcher runs before it starts a run, without loading any weights: the
//! settings are in range, the model opens and its tokenizer fits the embedding, the dataset
//! has the roles the algorithm needs, the rewards compile, a checkpoint to start from exists,
//! and the training state fits in the machine's memory. Each problem names its setting so a
//! form can show it next to the field.

use serde::Serialize;

use super::config::Algorithm;
use super::{RunConfig, TrainError};
use crate::data::Dataset;
use crate::store::Workspace;

/// One thing wrong with a run config.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Dotted setting (`grpo.epsilon`, `model`, `data.path`), or empty for the whole document.
    pub setting: String,
    pub message: String,
}

/// What the checks found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Preflight {
    pub problems: Vec<Problem>,
    /// Parameters of the model, when it opened.
    pub parameters: Option<usize>,
    /// Rows of the dataset file, when one is used and it opened.
    pub dataset_rows: Option<usize>,
    /// Estimated bytes the training process needs, when the model opened.
    pub memory_bytes: Option<u64>,
    /// `MemAvailable` of the machine, where the OS tells it.
    pub available_bytes: Option<u64>,
}

impl Preflight {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, setting: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            setting: setting.into(),
            message: message.into(),
        });
    }
}

/// A config's TOML text, checked. Syntax errors and out-of-range settings come first (as
/// `studio train` reports them); the model, data and memory checks follow when those pass.
pub fn check_toml(text: &str, workspace: Option<&Workspace>) -> Preflight {
    match RunConfig::from_toml(text, "the form") {
        Ok(config) => check(&config, workspace),
        Err(e) => {
            let mut out = Preflight::default();
            match e {
                TrainError::Setting {
                    setting, problem, ..
                } => out.problem(&setting, problem),
                TrainError::ConfigSyntax { message, .. } => {
                    let setting = setting_named_in(&message).unwrap_or("").to_string();
                    out.problem(&setting, message)
                }
                other => out.problem("", other.to_string()),
            }
            out
        }
    }
}

/// The setting a TOML deserialization message is about, when it names one
/// ("unknown field `lrr`", "invalid type … for key `sft.lr`").
fn setting_named_in(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(&message[start..end])
}

/// Runs the checks that need files (model, dataset, workspace) on a config whose settings are
/// already in range.
pub fn check(config: &RunConfig, workspace: Option<&Workspace>) -> Preflight {
    let mut out = Preflight::default();
    match crate::formats::loader::open_tokenizer(&config.model) {
        Ok((_, decoder)) => {
            let parameters = decoder.num_parameters();
            out.parameters = Some(parameters);
            out.memory_bytes = Some(memory_estimate(config, &decoder));
        }
        Err(e) => out.problem("model", e.to_string()),
    }
    if let Some(path) = &config.data.path {
        match Dataset::open(std::path::Path::new(path), config.data.mapping.as_ref()) {
            Ok(dataset) => {
                out.dataset_rows = Some(dataset.len());
                let roles = dataset.roles();
                let has = |r: &Option<String>| r.is_some();
                let missing = if config.algorithm == Algorithm::Grpo {
                    // The verifier compares a completion with the reference answer.
                    (!has(&roles.prompt) || !has(&roles.answer))
                        .then_some("a prompt and an answer (the verifier's reference)")
                } else {
                    let completion = has(&roles.answer) || has(&roles.reasoning);
                    (!(has(&roles.messages) || has(&roles.prompt) && completion))
                        .then_some("messages, or a prompt with an answer or reasoning")
                };
                if let Some(needs) = missing {
                    out.problem(
                        "data.mapping",
                        format!(
                            "{path}: {} needs {needs}; its columns are {} — map them in [data.mapping]",
                            config.algorithm,
                            dataset.columns().join(", ")
                        ),
                    );
                }
                if dataset.len() <= config.data.holdout.min(dataset.len() / 2) {
                    out.problem("data.path", format!("{path}: no rows left for training"));
                }
            }
            Err(e) => out.problem("data.path", e.to_string()),
        }
    }
    if let Some(init) = &config.init_from {
        match (workspace, init.step) {
            (None, _) => out.problem("init_from.run", "needs a workspace to find the run in"),
            (Some(ws), Some(step)) => {
                if let Err(e) = ws.checkpoint_at(init.run, step) {
                    let setting = match e {
                        crate::store::StoreError::NoCheckpointAtStep { .. } => "init_from.step",
                        _ => "init_from.run",
                    };
                    out.problem(setting, e.to_string());
                }
            }
            (Some(ws), None) => match ws.latest_checkpoint(init.run) {
                Ok(None) => out.problem(
                    "init_from.run",
                    format!("run {} has no checkpoint yet", init.run),
                ),
                Ok(Some(_)) => {}
                Err(e) => out.problem("init_from.run", e.to_string()),
            },
        }
    }
    out.available_bytes = available_memory();
    if let (Some(need), Some(have)) = (out.memory_bytes, out.available_bytes)
        && need > have
    {
        out.problem(
            "",
            format!(
                "needs about {} of memory, the machine has {} available",
                human_bytes(need),
                human_bytes(have)
            ),
        );
    }
    out
}

/// An estimate of the bytes a training process holds: f32 weights; gradients and two AdamW
/// moments for what is trained (every weight, or the adapters); a reference copy is never
/// kept (LoRA's reference is the base with the adapter off); and activations of one
/// micro-batch kept for the backward pass (per token and layer: the residual stream, the
/// attention projections and the MLP's three intermediate tensors; plus the logits).
pub fn memory_estimate(config: &RunConfig, d: &crate::models::DecoderConfig) -> u64 {
    let params = d.num_parameters() as u64;
    let (_, lora) = config.lora();
    let trained = match lora {
        None => params,
        Some(l) => {
            let per_layer = l.target_modules.len() as u64
                * l.rank as u64
                * (d.hidden_size + d.intermediate_size.max(d.hidden_size)) as u64;
            per_layer * d.num_hidden_layers as u64
        }
    };
    let tokens = if config.algorithm == Algorithm::Grpo {
        let g = &config.grpo;
        (g.micro_batch.min(g.prompts_per_step * g.num_generations)
            * (g.max_completion_length + 128)) as u64
    } else {
        (config.sft.batch_size * config.sft.max_seq_len) as u64
    };
    let per_token_layer = (12 * d.hidden_size + 3 * d.intermediate_size) as u64;
    let activations =
        tokens * (per_token_layer * d.num_hidden_layers as u64 + 2 * d.vocab_size as u64);
    4 * (params + 3 * trained + activations)
}

/// `MemAvailable` from `/proc/meminfo`.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `1.2 GiB`, `340 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_config_passes_and_is_sized() {
        let p = check_toml(super::super::settings::MINIMAL_RUN, None);
        assert!(p.ok(), "{:?}", p.problems);
        let params = p.parameters.expect("the tiny model opens");
        // At least weights, gradients and both moments in f32.
        assert!(p.memory_bytes.expect("estimated") >= 16 * params as u64);
    }

    #[test]
    fn problems_name_their_setting() {
        let bad_range = format!(
            "{}\n[grpo]\nepsilon = 3.0\n",
            super::super::settings::MINIMAL_RUN
        )
        .replace("model =", "algorithm = \"grpo\"\nmodel =");
        let p = check_toml(&bad_range, None);
        assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
        assert_eq!(p.problems[0].setting, "grpo.epsilon");

        let unknown = format!(
            "{}\n[sft]\nlrr = 1.0\n",
            super::super::settings::MINIMAL_RUN
        );
        let p = check_toml(&unknown, None);
        assert_eq!(p.problems[0].setting, "lrr", "{:?}", p.problems);

        let p = check_toml(
            "model = \"/nowhere/model.gguf\"\n[data]\nbuiltin = \"arithmetic\"\n",
            None,
        );
        assert_eq!(p.problems[0].setting, "model", "{:?}", p.problems);
        assert!(p.problems[0].message.contains("/nowhere/model.gguf"));
    }

    #[test]
    fn a_dataset_without_the_needed_roles_is_caught() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("rows.jsonl");
        std::fs::write(
            &file,
            "{\"foo\": \"a\", \"bar\": \"b\"}\n{\"foo\": \"c\", \"bar\": \"d\"}\n",
        )
        .expect("write");
        let text = format!(
            "model = \"builtin:tiny-reasoner-init\"\n[data]\npath = {:?}\nholdout = 0\n",
            file.display().to_string()
        );
        let p = check_toml(&text, None);
        let problem = p
            .problems
            .iter()
            .find(|p| p.setting == "data.mapping")
            .unwrap_or_else(|| panic!("no mapping problem in {:?}", p.problems));
        assert!(problem.message.contains("foo, bar"), "{}", problem.message);
        // Mapping the columns fixes it.
        let mapped = format!("{text}[data.mapping]\nprompt = \"foo\"\nanswer = \"bar\"\n");
        let p = check_toml(&mapped, None);
        assert!(p.ok(), "{:?}", p.problems);
        assert_eq!(p.dataset_rows, Some(2));
    }

    #[test]
    fn memory_estimate_matches_an_independent_count() {
        let config: RunConfig =
            toml::from_str(super::super::settings::MINIMAL_RUN).expect("parses");
        let d = crate::models::tiny::config();
        // Weights + grads + 2 moments for every parameter, written out by hand.
        let n = d.num_parameters() as u64;
        let state = 4 * n * 4;
        let estimate = memory_estimate(&config, &d);
        assert!(
            estimate > state && estimate < state + 4 * 8 * 256 * 100_000,
            "{estimate}"
        );
        // LoRA trains far fewer parameters.
        let mut lora = config.clone();
        lora.sft.lora = Some(Default::default());
        assert!(memory_estimate(&lora, &d) < estimate);
    }
}
