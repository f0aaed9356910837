//! `studio rewards --config RUN.toml --completions FILE`: completions scored by a run's
//! [[rewards]] as its training scores them (`engine::train::reward_check`).

use std::path::Path;

use anyhow::{Context, Result};
use engine::train::RunConfig;
use engine::train::reward_check::{ScoredFile, score_file};
use serde_json::{Map, Value, json};

use crate::cli::RewardsArgs;

pub fn run(args: &RewardsArgs) -> Result<()> {
    let (text, origin) = super::runs::read_document(&args.config, "run config")?;
    let config = RunConfig::from_toml(&text, &origin)?;
    let file = score_file(&config, &origin, &args.completions)
        .with_context(|| format!("could not score {}", args.completions.display()))?;
    let out = if args.json {
        rewards_json(&file)
    } else {
        rewards_table(&file, &args.completions)
    };
    super::emit(&out)
}

/// `{"rows": [{"line", "reward", "rewards": {NAME: V}, "correct"}], "bad_rows": [...]}`.
fn rewards_json(file: &ScoredFile) -> String {
    let rows: Vec<Value> = file
        .rows
        .iter()
        .map(|r| {
            let parts: Map<String, Value> = r
                .scored
                .parts
                .iter()
                .map(|(name, v)| (name.clone(), json!(v)))
                .collect();
            json!({
                "line": r.line,
                "reward": r.scored.total,
                "rewards": parts,
                "correct": r.scored.correct,
            })
        })
        .collect();
    let bad: Vec<Value> = file
        .bad_rows
        .iter()
        .map(|b| json!({"line": b.line, "message": b.message}))
        .collect();
    format!("{}\n", json!({"rows": rows, "bad_rows": bad}))
}

fn rewards_table(file: &ScoredFile, path: &Path) -> String {
    let mut out = format!("{:>6}  {:>8}  {:<7}", "line", "reward", "correct");
    for name in &file.names {
        out.push_str(&format!("  {name:>10}"));
    }
    out.push_str("  completion\n");
    for r in &file.rows {
        let correct = match r.scored.correct {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        out.push_str(&format!(
            "{:>6}  {:>8.4}  {correct:<7}",
            r.line, r.scored.total
        ));
        for (name, (_, v)) in file.names.iter().zip(&r.scored.parts) {
            out.push_str(&format!("  {v:>w$.4}", w = name.len().max(10)));
        }
        let completion: String = r
            .case
            .completion
            .replace('\n', " ")
            .chars()
            .take(48)
            .collect();
        out.push_str(&format!("  {completion}\n"));
    }
    for b in &file.bad_rows {
        out.push_str(&format!(
            "{}, line {}: skipped: {}\n",
            path.display(),
            b.line,
            b.message
        ));
    }
    let correct = file
        .rows
        .iter()
        .filter(|r| r.scored.correct == Some(true))
        .count();
    out.push_str(&format!(
        "{} rows scored, {correct} correct, {} skipped\n",
        file.rows.len(),
        file.bad_rows.len()
    ));
    out
}
