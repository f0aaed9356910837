//! `studio study FILE`: a study's runs, one after another through worker processes as `studio
//! train` starts them, then the comparison table of the metrics it names.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use engine::store::RunId;
use engine::train::study::Study;

use super::runs::{follow, open_workspace, spawn_worker};

/// `studio study FILE --check`: every run checked as Launch checks it, nothing run.
pub fn check(file: &Path) -> Result<()> {
    let (text, origin) = super::runs::read_document(file, "study")?;
    let study = Study::from_toml(&text, &origin)?;
    let mut failed = 0;
    for run in study.check() {
        let problems: Vec<String> = match (&run.config, &run.preflight) {
            (Err(e), _) => vec![e.to_string()],
            (Ok(_), Some(p)) => p
                .problems
                .iter()
                .map(|p| match p.setting.as_str() {
                    "" => p.message.clone(),
                    setting => format!("setting `{setting}`: {}", p.message),
                })
                .collect(),
            (Ok(_), None) => Vec::new(),
        };
        if problems.is_empty() {
            let (algorithm, steps) = run
                .config
                .as_ref()
                .map(|c| (c.algorithm.to_string(), c.steps()))
                .unwrap_or_default();
            let memory = run
                .preflight
                .as_ref()
                .and_then(|p| p.memory_bytes)
                .map_or("?".into(), engine::train::preflight::human_bytes);
            println!(
                "run `{}`: ok ({algorithm}, {steps} steps, about {memory})",
                run.key
            );
        } else {
            failed += 1;
            for p in problems {
                println!("run `{}`: {p}", run.key);
            }
        }
    }
    if failed > 0 {
        bail!(
            "{origin}: {failed} of {} runs would not start",
            study.runs.len()
        );
    }
    println!("{origin}: valid ({} runs)", study.runs.len());
    Ok(())
}

pub fn run(workspace_dir: Option<&Path>, file: &Path) -> Result<()> {
    let (text, origin) = super::runs::read_document(file, "study")?;
    let study = Study::from_toml(&text, &origin)?;
    let workspace = open_workspace(workspace_dir)?;
    println!("study `{}`: {} runs", study.name, study.runs.len());
    if !study.description.is_empty() {
        println!("{}", study.description.trim());
    }
    let mut ids: HashMap<String, RunId> = HashMap::new();
    for (i, spec) in study.runs.iter().enumerate() {
        let (config_text, config) = study.run_config(i, &|key| ids.get(key).copied())?;
        let run = workspace.create_run(&config.name, &config_text)?;
        let mut worker = spawn_worker(&workspace, run)?;
        println!("run {run} (`{}`) started", spec.key);
        follow(&workspace, run, config.steps(), &mut worker).with_context(|| {
            format!("study `{}`: run `{}` did not finish", study.name, spec.key)
        })?;
        ids.insert(spec.key.clone(), run);
    }

    // The comparison: each metric's last value and its mean over the run.
    let widths: Vec<usize> = study.compare.iter().map(|n| n.len().max(15)).collect();
    let mut header = format!("{:<16} {:>5}", "run", "id");
    for (name, w) in study.compare.iter().zip(&widths) {
        header.push_str(&format!(" | {name:>w$}"));
    }
    println!("\n{header}");
    println!(
        "{:<16} {:>5}{}",
        "",
        "",
        widths
            .iter()
            .map(|w| format!(" | {:>w$}", "last / mean"))
            .collect::<String>()
    );
    for spec in &study.runs {
        let id = ids[&spec.key];
        let mut line = format!("{:<16} {id:>5}", spec.key);
        for (name, w) in study.compare.iter().zip(&widths) {
            let points = workspace.metric(id, name)?;
            let finite: Vec<f64> = points
                .iter()
                .map(|p| p.1)
                .filter(|v| v.is_finite())
                .collect();
            let cell = match (points.last(), finite.is_empty()) {
                (Some(&(_, last)), false) => {
                    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
                    format!("{last:.3} / {mean:.3}")
                }
                _ => "–".to_string(),
            };
            line.push_str(&format!(" | {cell:>w$}"));
        }
        println!("{line}");
    }
    println!(
        "(workspace {}; `studio metrics ID --json` for the curves)",
        workspace.dir().display()
    );
    Ok(())
}
