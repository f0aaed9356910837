//! `studio study FILE`: a study's runs, one after another through worker processes as `studio
//! train` starts them, then the comparison table of the metrics it names.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use engine::store::{RunId, Workspace};
use engine::train::study::{Study, mean_sd, windowed_mean};
use serde_json::{Map, Value, json};

use crate::cli::StudyArgs;

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

/// `studio study FILE [--seeds N] [--seed S] [--json]`: every run once per seed (each seed's
/// `init_from` naming that seed's parent run), then each compared metric per arm as mean ± sd
/// over the seeds and the effect's verdict.
pub fn run(workspace_dir: Option<&Path>, args: &StudyArgs) -> Result<()> {
    let (text, origin) = super::runs::read_document(&args.file, "study")?;
    let study = Study::from_toml(&text, &origin)?;
    if args.seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let seeds = seeds_of(&study, args.seed, args.seeds)?;
    let workspace = open_workspace(workspace_dir)?;
    // With --json, stdout carries the JSON alone; the progress goes to stderr.
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "study `{}`: {} runs × {} seed{}",
        study.name,
        study.runs.len(),
        seeds.len(),
        if seeds.len() == 1 { "" } else { "s" }
    ));
    if !study.description.is_empty() && !args.json {
        println!("{}", study.description.trim());
    }
    // runs[arm] = [(seed, run id)], in seed order.
    let mut runs: Vec<Vec<(u64, RunId)>> = vec![Vec::new(); study.runs.len()];
    for seed in &seeds {
        let mut ids: HashMap<String, RunId> = HashMap::new();
        for (i, spec) in study.runs.iter().enumerate() {
            let (config_text, config) =
                study.seeded_run_config(i, *seed, &|key| ids.get(key).copied())?;
            let run = workspace.create_run(&config.name, &config_text)?;
            let mut worker = spawn_worker(&workspace, run)?;
            say(format!(
                "run {run} (`{}`, seed {}) started",
                spec.key, config.seed
            ));
            follow(&workspace, run, config.steps(), &mut worker).with_context(|| {
                format!(
                    "study `{}`: run `{}` (seed {}) did not finish",
                    study.name, spec.key, config.seed
                )
            })?;
            ids.insert(spec.key.clone(), run);
            runs[i].push((config.seed, run));
        }
    }
    let results = StudyResults::read(&workspace, &study, &runs)?;
    let out = if args.json {
        format!("{}\n", results.json(&study))
    } else {
        format!(
            "{}(workspace {}; `studio metrics ID --json` for the curves)\n",
            results.table(&study),
            workspace.dir().display()
        )
    };
    super::emit(&out)
}

/// The seeds a study runs: `S, S+1, …` from `--seed`, the study's `seed`, or (for more than one
/// seed) the first run's own; one seed and none given: each run keeps its own (`None`).
fn seeds_of(study: &Study, seed: Option<u64>, count: usize) -> Result<Vec<Option<u64>>> {
    let first = match seed.or(study.seed) {
        Some(s) => s,
        None if count == 1 => return Ok(vec![None]),
        None => study.runs[0]
            .config
            .get("seed")
            .and_then(toml::Value::as_integer)
            .map_or(0, |s| s.max(0) as u64),
    };
    (0..count as u64)
        .map(|k| {
            first
                .checked_add(k)
                .with_context(|| format!("seed {first} + {k} overflows"))
                .map(Some)
        })
        .collect()
}

/// What a study's runs logged, summarized per arm.
struct StudyResults {
    /// The window each run's series is averaged over: the effect's, else the whole run.
    window: f64,
    /// The metrics shown: `compare`, then the effect's metric if it is not among them.
    metrics: Vec<String>,
    arms: Vec<ArmResult>,
    verdict: Option<engine::train::study::EffectVerdict>,
}

struct ArmResult {
    key: String,
    runs: Vec<(u64, RunId)>,
    /// Per metric: each seed's windowed mean (`None`: nothing logged in the window).
    values: Vec<Vec<Option<f64>>>,
}

impl StudyResults {
    fn read(workspace: &Workspace, study: &Study, runs: &[Vec<(u64, RunId)>]) -> Result<Self> {
        let window = study.effect.as_ref().map_or(1.0, |e| e.window);
        let mut metrics = study.compare.clone();
        if let Some(e) = &study.effect
            && !metrics.contains(&e.metric)
        {
            metrics.push(e.metric.clone());
        }
        let mut arms = Vec::with_capacity(runs.len());
        for (spec, runs) in study.runs.iter().zip(runs) {
            let mut values = Vec::with_capacity(metrics.len());
            for name in &metrics {
                let mut per_seed = Vec::with_capacity(runs.len());
                for &(_, run) in runs {
                    let points = workspace.metric(run, name)?;
                    per_seed.push(windowed_mean(&points, window));
                }
                values.push(per_seed);
            }
            arms.push(ArmResult {
                key: spec.key.clone(),
                runs: runs.clone(),
                values,
            });
        }
        let verdict = study.effect.as_ref().map(|e| {
            let column = metrics.iter().position(|m| m == &e.metric);
            let arm = arms.iter().find(|a| a.key == e.arm);
            let than = arms.iter().find(|a| a.key == e.than);
            let per_seed: Vec<(u64, Option<f64>, Option<f64>)> = match (column, arm, than) {
                (Some(c), Some(arm), Some(than)) => arm
                    .runs
                    .iter()
                    .zip(&arm.values[c])
                    .zip(&than.values[c])
                    .map(|((&(seed, _), &a), &b)| (seed, a, b))
                    .collect(),
                _ => Vec::new(),
            };
            e.verdict(&per_seed)
        });
        Ok(Self {
            window,
            metrics,
            arms,
            verdict,
        })
    }

    fn cell(values: &[Option<f64>]) -> String {
        let finite: Vec<f64> = values.iter().flatten().copied().collect();
        if finite.is_empty() {
            return "–".into();
        }
        let (mean, sd) = mean_sd(&finite);
        format!("{mean:.4} ± {sd:.4}")
    }

    fn table(&self, study: &Study) -> String {
        let seeds = self.arms.first().map_or(0, |a| a.runs.len());
        let widths: Vec<usize> = self.metrics.iter().map(|n| n.len().max(17)).collect();
        let mut out = format!(
            "\neach cell: mean ± sd over {seeds} seed{} of the metric averaged over {}\n",
            if seeds == 1 { "" } else { "s" },
            if self.window >= 1.0 {
                "the whole run".to_string()
            } else {
                format!("the last {:.0} % of steps", self.window * 100.0)
            }
        );
        let mut header = format!("{:<16} {:>11}", "run", "ids");
        for (name, w) in self.metrics.iter().zip(&widths) {
            header.push_str(&format!(" | {name:>w$}"));
        }
        out.push_str(&header);
        out.push('\n');
        for arm in &self.arms {
            let ids: Vec<String> = arm.runs.iter().map(|r| r.1.to_string()).collect();
            let mut line = format!("{:<16} {:>11}", arm.key, ids.join(","));
            for (values, w) in arm.values.iter().zip(&widths) {
                line.push_str(&format!(" | {:>w$}", Self::cell(values)));
            }
            out.push_str(&line);
            out.push('\n');
        }
        if let (Some(e), Some(v)) = (&study.effect, &self.verdict) {
            out.push_str(&format!("\neffect: {}\n", e.statement.trim()));
            let per_seed: Vec<String> = v
                .seeds
                .iter()
                .map(|s| {
                    format!(
                        "seed {}: {:+.4}{}",
                        s.seed,
                        s.difference,
                        if s.holds { "" } else { " (no)" }
                    )
                })
                .collect();
            out.push_str(&format!(
                "  {} of `{}` {} `{}`{}: difference {:+.4}, ratio {:.3}; holds on {} of {} seeds ({})\n",
                e.metric,
                e.arm,
                match e.expect {
                    engine::train::study::Expect::Higher => "above",
                    engine::train::study::Expect::Lower => "below",
                    engine::train::study::Expect::AtLeast => "at least",
                },
                e.than,
                if e.margin > 0.0 { format!(" by margin {}", e.margin) } else { String::new() },
                v.difference,
                v.ratio,
                v.seeds_holding,
                v.seeds.len(),
                per_seed.join(", ")
            ));
            out.push_str(if v.holds {
                "  verdict: the effect HOLDS on every seed\n"
            } else {
                "  verdict: the effect does NOT hold on every seed\n"
            });
        }
        out
    }

    fn json(&self, study: &Study) -> Value {
        let number = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
        let arms: Vec<Value> = self
            .arms
            .iter()
            .map(|arm| {
                let metrics: Map<String, Value> = self
                    .metrics
                    .iter()
                    .zip(&arm.values)
                    .map(|(name, values)| {
                        let finite: Vec<f64> = values.iter().flatten().copied().collect();
                        let (mean, sd) = mean_sd(&finite);
                        let per_seed: Vec<Value> =
                            values.iter().map(|v| v.map_or(Value::Null, number)).collect();
                        (
                            name.clone(),
                            json!({"mean": number(mean), "sd": number(sd), "values": per_seed}),
                        )
                    })
                    .collect();
                json!({
                    "key": arm.key,
                    "runs": arm.runs.iter().map(|(seed, run)| json!({"seed": seed, "run": run})).collect::<Vec<_>>(),
                    "metrics": metrics,
                })
            })
            .collect();
        let effect = match (&study.effect, &self.verdict) {
            (Some(e), Some(v)) => json!({
                "statement": e.statement,
                "metric": e.metric,
                "arm": e.arm,
                "than": e.than,
                "expect": e.expect.name(),
                "window": e.window,
                "margin": e.margin,
                "holds": v.holds,
                "difference": number(v.difference),
                "ratio": number(v.ratio),
                "seeds_holding": v.seeds_holding,
                "seeds": v.seeds.iter().map(|s| json!({
                    "seed": s.seed,
                    "arm": number(s.arm),
                    "than": number(s.than),
                    "difference": number(s.difference),
                    "holds": s.holds,
                })).collect::<Vec<_>>(),
            }),
            _ => Value::Null,
        };
        json!({"study": study.name, "window": self.window, "effect": effect, "arms": arms})
    }
}
