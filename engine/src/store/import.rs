//! Importing a run made elsewhere: the `trainer_state.json` that Hugging Face transformers'
//! Trainer (and TRL's trainers, built on it) saves, whose `log_history` becomes the metric
//! series of a read-only run, so its curves overlay the studio's own.
//!
//! Names are kept as logged, except `eval_X` → `eval/X` so Trainer's evaluations group with
//! the studio's. Each entry's numeric fields are logged at its `step`.

use std::path::{Path, PathBuf};

use super::{RunId, RunStatus, StoreError, Workspace};

/// Why a file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("could not read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a trainer_state.json: {problem}")]
    Format { path: PathBuf, problem: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was imported.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub run: RunId,
    /// Points stored.
    pub points: usize,
    /// `log_history` entries skipped (no integer `step`), by index.
    pub skipped: Vec<usize>,
}

/// The metric name a Trainer log key is stored under.
pub fn metric_name(key: &str) -> String {
    match key.strip_prefix("eval_") {
        Some(rest) => format!("eval/{rest}"),
        None => key.to_string(),
    }
}

impl Workspace {
    /// Imports `path` (a `trainer_state.json`) as a completed, read-only run named after its
    /// folder. Its config records where it came from (`imported_from`).
    pub fn import_trainer_state(&self, path: &Path) -> Result<Imported, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let format = |problem: String| ImportError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        let history = json
            .get("log_history")
            .and_then(|h| h.as_array())
            .ok_or_else(|| format("it has no `log_history` list".into()))?;
        let mut rows: Vec<(u64, String, f64)> = Vec::new();
        let mut skipped = Vec::new();
        let mut rewards = false;
        for (i, entry) in history.iter().enumerate() {
            let Some(step) = entry.get("step").and_then(|s| s.as_u64()) else {
                skipped.push(i);
                continue;
            };
            let Some(fields) = entry.as_object() else {
                skipped.push(i);
                continue;
            };
            for (key, value) in fields {
                if key == "step" {
                    continue;
                }
                if let Some(v) = value.as_f64() {
                    rewards |= key.starts_with("reward");
                    rows.push((step, metric_name(key), v));
                }
            }
        }
        if rows.is_empty() {
            return Err(format("its `log_history` has no numeric values".into()));
        }
        let folder = path.parent().and_then(|p| p.file_name()).map_or_else(
            || "trainer".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let name = format!("imported: {folder}");
        let mut config = toml::Table::new();
        config.insert("name".into(), name.clone().into());
        config.insert(
            "algorithm".into(),
            if rewards { "grpo" } else { "sft" }.into(),
        );
        config.insert("imported_from".into(), path.display().to_string().into());
        if let Some(model) = json.get("model_name").and_then(|m| m.as_str()) {
            config.insert("model".into(), model.into());
        }
        let config_toml = toml::to_string(&config).map_err(|e| format(e.to_string()))?;
        let run = self.create_run(&name, &config_toml)?;
        let borrowed: Vec<(u64, &str, f64)> =
            rows.iter().map(|(s, n, v)| (*s, n.as_str(), *v)).collect();
        self.log_metric_rows(run, &borrowed)?;
        self.set_status(
            run,
            RunStatus::Completed,
            Some(&format!("imported from {}", path.display())),
        )?;
        Ok(Imported {
            run,
            points: rows.len(),
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace;

    #[test]
    fn bad_files_name_the_problem() {
        let (dir, ws) = test_workspace();
        let path = dir.path().join("trainer_state.json");
        std::fs::write(&path, r#"{"global_step": 3}"#).expect("write");
        let e = ws
            .import_trainer_state(&path)
            .expect_err("no history")
            .to_string();
        assert!(
            e.contains("trainer_state.json") && e.contains("log_history"),
            "{e}"
        );
        std::fs::write(&path, "{not json").expect("write");
        assert!(ws.import_trainer_state(&path).is_err());
        assert!(ws.runs().expect("runs").is_empty(), "nothing half-imported");
    }
}
