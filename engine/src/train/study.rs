//! Studies: several runs executed one after another and compared (`studio study FILE`). A study
//! reproduces one effect of a paper in miniature: each `[[runs]]` table holds a whole run
//! config under `config`, may start from an earlier run of the study (`init_from = "KEY"`), and
//! `compare` names the metrics of the comparison table.
//!
//! ```toml
//! name = "clip-higher"
//! compare = ["entropy", "eval/accuracy"]
//! [[runs]]
//! key = "sft"
//! [runs.config]
//! model = "builtin:tiny-reasoner-init"
//! # … a whole run config …
//! [[runs]]
//! key = "grpo"
//! init_from = "sft"
//! [runs.config]
//! algorithm = "grpo"
//! # …
//! ```

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::config::RunConfig;

/// A study file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub name: String,
    /// What the study shows and where (paper, figure).
    #[serde(default)]
    pub description: String,
    /// Metrics of the comparison table: each run's last value and its mean over the run.
    pub compare: Vec<String>,
    pub runs: Vec<StudyRun>,
}

/// One run of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRun {
    /// Its name within the study (the table's row, the target of `init_from`).
    pub key: String,
    /// Start from the final checkpoint of the study's earlier run with this key.
    #[serde(default)]
    pub init_from: Option<String>,
    /// The run config, as in a run file.
    pub config: toml::Table,
}

impl Study {
    /// Parses and checks a study: unique keys, `init_from` naming an earlier run, every run
    /// config valid. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        let study: Self = toml::from_str(text).map_err(|e| TrainError::ConfigSyntax {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let bad = |setting: String, problem: String| TrainError::Setting {
            origin: origin.to_string(),
            setting,
            problem,
        };
        if study.runs.is_empty() {
            return Err(bad(
                "runs".into(),
                "needs at least one [[runs]] table".into(),
            ));
        }
        for (i, run) in study.runs.iter().enumerate() {
            let earlier = &study.runs[..i];
            if earlier.iter().any(|r| r.key == run.key) {
                return Err(bad(
                    format!("runs[{i}].key"),
                    format!("`{}` is used twice", run.key),
                ));
            }
            if let Some(from) = &run.init_from
                && !earlier.iter().any(|r| &r.key == from)
            {
                return Err(bad(
                    format!("runs[{i}].init_from"),
                    format!("`{from}` is not the key of an earlier run of the study"),
                ));
            }
            // Placeholder run id for the check; the real one is known when the run is created.
            study.run_config(i, &|_| Some(1))?;
        }
        Ok(study)
    }

    /// Run `index`'s config as TOML text, with `init_from` resolved through `run_id_of(key)`,
    /// validated.
    pub fn run_config(
        &self,
        index: usize,
        run_id_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<(String, RunConfig), TrainError> {
        let run = &self.runs[index];
        let origin = format!("study `{}`, run `{}`", self.name, run.key);
        let mut table = run.config.clone();
        if !table.contains_key("name") {
            table.insert("name".into(), format!("{}: {}", self.name, run.key).into());
        }
        if let Some(from) = &run.init_from {
            let id = run_id_of(from).ok_or_else(|| TrainError::Setting {
                origin: origin.clone(),
                setting: "init_from".into(),
                problem: format!("run `{from}` has not run yet"),
            })?;
            let mut init = toml::Table::new();
            init.insert("run".into(), id.into());
            table.insert("init_from".into(), init.into());
        }
        let text = toml::to_string(&table).map_err(|e| TrainError::ConfigSyntax {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        let config = RunConfig::from_toml(&text, &origin)?;
        Ok((text, config))
    }
}

/// What [`Study::check`] found for one run of a study.
#[derive(Debug)]
pub struct RunCheck {
    pub key: String,
    /// The run config, or why it is not one.
    pub config: Result<RunConfig, TrainError>,
    /// The checks Launch runs before a start ([`super::preflight::check`]); `None` when the
    /// config did not parse.
    pub preflight: Option<super::preflight::Preflight>,
}

impl RunCheck {
    pub fn ok(&self) -> bool {
        self.config.is_ok() && self.preflight.as_ref().is_some_and(|p| p.ok())
    }
}

impl Study {
    /// Every run checked as Launch checks a run before Start, without running anything. A run
    /// that starts from an earlier run of the study is checked on the model that run starts
    /// from (its checkpoint does not exist yet, and has that model's shapes and tokenizer).
    pub fn check(&self) -> Vec<RunCheck> {
        let mut models: Vec<String> = Vec::with_capacity(self.runs.len());
        let mut out = Vec::with_capacity(self.runs.len());
        for (i, run) in self.runs.iter().enumerate() {
            let config = self.run_config(i, &|_| Some(1)).map(|(_, mut config)| {
                if let Some(from) = &run.init_from
                    && let Some(parent) = self.runs[..i].iter().position(|r| &r.key == from)
                {
                    config.model = models[parent].clone();
                    config.init_from = None;
                }
                config
            });
            models.push(config.as_ref().map(|c| c.model.clone()).unwrap_or_default());
            let preflight = config
                .as_ref()
                .ok()
                .map(|c| super::preflight::check(c, None));
            out.push(RunCheck {
                key: run.key.clone(),
                config,
                preflight,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
name = "s"
compare = ["eval/accuracy"]
[[runs]]
key = "sft"
[runs.config]
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
[[runs]]
key = "grpo"
init_from = "sft"
[runs.config]
algorithm = "grpo"
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
[[runs.config.rewards]]
kind = "accuracy"
"#;

    #[test]
    fn init_from_resolves_to_the_earlier_run() {
        let study = Study::from_toml(STUDY, "s.toml").expect("valid");
        let (text, config) = study
            .run_config(1, &|key| (key == "sft").then_some(7))
            .expect("config");
        assert_eq!(config.init_from.expect("init_from").run, 7);
        assert_eq!(config.name, "s: grpo");
        assert!(text.contains("algorithm = \"grpo\""));
    }

    #[test]
    fn bad_studies_name_the_setting() {
        let e = Study::from_toml(
            &STUDY.replace("init_from = \"sft\"", "init_from = \"warmup\""),
            "s.toml",
        )
        .expect_err("unknown key")
        .to_string();
        assert!(
            e.contains("runs[1].init_from") && e.contains("warmup"),
            "{e}"
        );
        let e = Study::from_toml(&STUDY.replace("key = \"grpo\"", "key = \"sft\""), "s.toml")
            .expect_err("duplicate")
            .to_string();
        assert!(e.contains("runs[1].key"), "{e}");
        let e = Study::from_toml(
            &STUDY.replace("kind = \"accuracy\"", "kind = \"luck\""),
            "s.toml",
        )
        .expect_err("bad run")
        .to_string();
        assert!(e.contains("run `grpo`") && e.contains("luck"), "{e}");
    }

    /// Every shipped preset is a valid study.
    #[test]
    fn shipped_presets_are_valid_studies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/presets");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("assets/presets") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("read");
                Study::from_toml(&text, &path.display().to_string()).expect("a valid study");
                checked += 1;
            }
        }
        assert!(checked >= 4, "only {checked} presets");
    }
}
