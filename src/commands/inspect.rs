//! `studio metrics` and `studio traces`: a run's series and its rollouts, as tables or in the
//! JSON contracts other tools read.

use std::path::Path;

use anyhow::{Context, Result, bail};
use engine::store::{RunId, TraceKind};
use engine::train::RunConfig;
use serde_json::{Value, json};

use super::emit;
use super::runs::open_workspace;

/// Every series of a run (or those named), as JSON `{"run", "series": {NAME: [[STEP, VALUE|null]]}}`,
/// CSV `step,name,value`, or a table of the latest values.
pub fn metrics(
    workspace_dir: Option<&Path>,
    run: RunId,
    names: &[String],
    json_out: bool,
    csv_out: bool,
) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    workspace.run(run)?;
    let all = workspace.metric_names(run)?;
    if let Some(missing) = names.iter().find(|n| !all.contains(n)) {
        bail!(
            "run {run} has no metric `{missing}`; it has: {}",
            all.join(", ")
        );
    }
    let chosen: Vec<&String> = if names.is_empty() {
        all.iter().collect()
    } else {
        names.iter().collect()
    };
    let mut series = serde_json::Map::new();
    let mut rows = Vec::new();
    for name in chosen {
        let points = workspace.metric(run, name)?;
        if csv_out {
            rows.extend(points.iter().map(|&(s, v)| (s, name.clone(), v)));
        }
        let values: Vec<Value> = points
            .iter()
            .map(|&(step, v)| json!([step, if v.is_finite() { json!(v) } else { Value::Null }]))
            .collect();
        series.insert(name.clone(), Value::Array(values));
    }
    let mut out = String::new();
    if json_out {
        out = format!("{}\n", json!({ "run": run, "series": series }));
    } else if csv_out {
        rows.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        out.push_str("step,name,value\n");
        for (step, name, value) in rows {
            let value = if value.is_finite() {
                value.to_string()
            } else {
                String::new()
            };
            out.push_str(&format!("{step},{name},{value}\n"));
        }
    } else {
        for (name, points) in &series {
            let points = points.as_array().map_or(&[][..], Vec::as_slice);
            match points.last() {
                Some(last) => {
                    out.push_str(&format!("{name:32} {} points, last {last}\n", points.len()))
                }
                None => out.push_str(&format!("{name:32} no points\n")),
            }
        }
    }
    emit(&out)
}

/// The steps with rollouts, or one step's rollouts token by token.
pub fn traces(
    workspace_dir: Option<&Path>,
    run: RunId,
    step: Option<u64>,
    kind: TraceKind,
    json_out: bool,
) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let record = workspace.run(run)?;
    let what = match kind {
        TraceKind::Rollout => "rollouts",
        TraceKind::Eval => "evaluation answers",
    };
    let Some(step) = step else {
        let steps = workspace.trace_steps(run, kind)?;
        let mut out = String::new();
        if json_out {
            let steps: Vec<Value> = steps
                .iter()
                .map(|(s, n)| json!({"step": s, "rollouts": n}))
                .collect();
            out = format!(
                "{}\n",
                json!({ "run": run, "kind": kind.as_str(), "steps": steps })
            );
        } else if steps.is_empty() {
            out = match kind {
                TraceKind::Rollout => {
                    format!("run {run} has no rollouts stored (only GRPO runs sample them)\n")
                }
                TraceKind::Eval => format!(
                    "run {run} has no evaluation answers stored (runs evaluate at the end and \
                     every [eval] every steps)\n"
                ),
            };
        } else {
            for (s, n) in steps {
                out.push_str(&format!("step {s:>6}: {n} {what}\n"));
            }
        }
        return emit(&out);
    };
    let traces = workspace.traces(run, step, kind)?;
    if traces.is_empty() {
        let have = workspace.trace_steps(run, kind)?;
        bail!(
            "run {run} has no {what} at step {step} (steps with {what}: {})",
            match (have.first(), have.last()) {
                (Some(a), Some(b)) => format!("{} to {}", a.0, b.0),
                _ => "none".into(),
            }
        );
    }
    let config = RunConfig::from_toml(&record.config_toml, &format!("run {run} config"))?;
    let (tokenizer, _) = engine::formats::loader::open_tokenizer(&config.model)
        .with_context(|| format!("could not open run {run}'s tokenizer to decode its tokens"))?;
    let text = |id: u32| tokenizer.token_text(id);
    if json_out {
        let rollouts = traces
            .iter()
            .map(|t| -> Result<Value> {
                let tokens = t
                    .tokens
                    .iter()
                    .map(|x| -> Result<Value> {
                        let top = x
                            .top
                            .iter()
                            .map(|&(id, lp)| {
                                Ok(json!({"id": id, "text": text(id)?, "logprob": lp}))
                            })
                            .collect::<Result<Vec<_>>>()?;
                        Ok(
                            json!({"id": x.id, "text": text(x.id)?, "logprob": x.logprob,
                                  "entropy": x.entropy, "top": top}),
                        )
                    })
                    .collect::<Result<Vec<_>>>()?;
                let rewards: serde_json::Map<String, Value> = t
                    .rewards
                    .iter()
                    .map(|(n, v)| (n.clone(), json!(v)))
                    .collect();
                Ok(json!({
                    "prompt_index": t.prompt_index,
                    "sample_index": t.sample_index,
                    "prompt": t.prompt,
                    "completion": t.completion,
                    "reward": t.reward,
                    "rewards": rewards,
                    "advantage": t.advantage,
                    "correct": t.correct,
                    "finish_reason": t.finish_reason,
                    "tokens": tokens,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        emit(&format!(
            "{}\n",
            json!({ "run": run, "kind": kind.as_str(), "step": step, "rollouts": rollouts })
        ))
    } else {
        let mut out = String::new();
        for t in &traces {
            let mean_entropy = t.tokens.iter().map(|x| f64::from(x.entropy)).sum::<f64>()
                / t.tokens.len().max(1) as f64;
            out.push_str(&format!(
                "prompt {} sample {} · reward {:.3} · advantage {:+.3} · {} tokens ({}) · mean entropy {:.2}\n",
                t.prompt_index,
                t.sample_index,
                t.reward,
                t.advantage,
                t.tokens.len(),
                t.finish_reason,
                mean_entropy
            ));
            out.push_str(&format!("  {:?} → {:?}\n", t.prompt, t.completion));
        }
        emit(&out)
    }
}

/// `studio analyze`: the entropy analytics of a run's rollouts (or evaluation answers), as a
/// table per step or as JSON.
pub fn analyze(workspace_dir: Option<&Path>, args: &crate::cli::AnalyzeArgs) -> Result<()> {
    use engine::analysis::{AnalysisOptions, analyse_stored};
    if !(args.rho > 0.0 && args.rho <= 1.0) {
        bail!("--rho must be in (0, 1], not {}", args.rho);
    }
    let workspace = open_workspace(workspace_dir)?;
    let run = args.run;
    let record = workspace.run(run)?;
    let kind = if args.eval {
        TraceKind::Eval
    } else {
        TraceKind::Rollout
    };
    let steps = workspace.trace_steps(run, kind)?;
    if steps.is_empty() {
        bail!(
            "run {run} has no {} stored{}",
            if args.eval {
                "evaluation answers"
            } else {
                "rollouts"
            },
            if args.eval {
                ""
            } else {
                " (only GRPO runs sample them; --eval analyses the evaluation answers every run keeps)"
            }
        );
    }
    let config = RunConfig::from_toml(&record.config_toml, &format!("run {run} config"))?;
    let (tokenizer, _) = engine::formats::loader::open_tokenizer(&config.model)
        .with_context(|| format!("could not open run {run}'s tokenizer to name its tokens"))?;
    let mut options = AnalysisOptions {
        threshold: args.threshold,
        rho: args.rho,
        top_forking: args.top,
        ..AnalysisOptions::default()
    };
    if !args.reflection.is_empty() {
        options.reflection_words = args.reflection.clone();
    }
    let mut text = |id: u32| {
        tokenizer
            .token_text(id)
            .unwrap_or_else(|_| format!("<id {id}>"))
    };
    let (_, analysis) = analyse_stored(&workspace, run, kind, &options, &mut text)?;
    if args.json {
        let mut value = serde_json::to_value(&analysis)?;
        value["run"] = json!(run);
        value["kind"] = json!(kind.as_str());
        value["threshold"] = json!(options.threshold);
        value["rho"] = json!(options.rho);
        // serde_json writes NaN (a step without tokens) as null.
        return emit(&format!("{value}\n"));
    }
    let mut out = format!(
        "run {run} · {} steps with {} · high entropy above {} nats · forking tokens: each step's top {:.0} %\n\n",
        analysis.steps.len(),
        kind.as_str(),
        options.threshold,
        options.rho * 100.0
    );
    out.push_str(
        "  step  rollouts  mean H  >thresh  reward  accuracy  len ok  len wrong  reflection/rollout\n",
    );
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for s in &analysis.steps {
        out.push_str(&format!(
            "{:>6}  {:>8}  {:>6.3}  {:>7.3}  {:>6.3}  {:>8}  {:>6}  {:>9}  {:>18.3}\n",
            s.step,
            s.rollouts,
            s.mean_entropy,
            s.high_entropy_share,
            s.mean_reward,
            opt(s.accuracy, 3),
            opt(s.mean_length_correct, 1),
            opt(s.mean_length_wrong, 1),
            s.reflection_per_rollout
        ));
    }
    out.push_str("\nforking tokens (text: times among a step's top entropy)\n");
    for f in &analysis.forking_tokens {
        out.push_str(&format!("  {:<16} {}\n", format!("{:?}", f.text), f.total));
    }
    let totals: Vec<usize> = (0..options.reflection_words.len())
        .map(|i| analysis.steps.iter().map(|s| s.reflection[i]).sum())
        .collect();
    out.push_str("\nreflection words (occurrences over the run)\n");
    for (word, n) in options.reflection_words.iter().zip(totals) {
        out.push_str(&format!("  {word:<18} {n}\n"));
    }
    match analysis.fit {
        Some(f) => out.push_str(&format!(
            "\nreward against entropy: R = -{:.4}·exp(H) + {:.4} (R² {:.3}, {} steps)\n",
            f.a, f.b, f.r2, f.points
        )),
        None => out.push_str(
            "\nreward against entropy: no fit (it needs three steps whose entropy differs)\n",
        ),
    }
    emit(&out)
}
