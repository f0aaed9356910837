//! `studio eval`: a checkpoint's (or a model's) greedy answers on a built-in task or a dataset
//! file, stored in the workspace; the stored evaluations; the problems that flipped between two.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::path::Path;

use anyhow::{Context, Result, bail};
use engine::data::answer;
use engine::store::{EvaluationId, EvaluationItem, EvaluationRecord};
use engine::train::evaluation::{
    self, EvalData, EvalOptions, EvalProgress, evaluated_model, problem_set,
};
use serde_json::{Value, json};

use super::emit;
use super::runs::open_workspace;
use crate::cli::EvalArgs;

pub fn run(
    workspace_dir: Option<&Path>,
    args: &EvalArgs,
    backend: engine::backend::BackendKind,
) -> Result<()> {
    if args.list {
        return list(workspace_dir, args.json);
    }
    if let Some(pair) = &args.flipped
        && let [a, b] = pair[..]
    {
        return flipped(workspace_dir, a, b, args.json);
    }
    let Some(spec) = &args.checkpoint else {
        bail!(
            "give --checkpoint CHECKPOINT with --builtin TASK or --data FILE, --list, or --flipped A B"
        );
    };
    let data = match (&args.builtin, &args.data) {
        (Some(task), _) => EvalData::Builtin(task.clone()),
        (None, Some(file)) => EvalData::File(file.clone()),
        (None, None) => {
            bail!("--checkpoint {spec}: give the problems with --builtin TASK or --data FILE")
        }
    };
    let workspace = open_workspace(workspace_dir)?;
    let options = EvalOptions {
        count: args.count,
        seed: args.seed,
        difficulty: args.difficulty,
        backend,
    };
    let (record, items) =
        evaluation::evaluate_with(&workspace, spec, &data, &options, &mut progress_line(spec))
            .with_context(|| format!("could not evaluate --checkpoint {spec}"))?;
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    emit(&if args.json {
        evaluation_json(&record, &items)
    } else {
        evaluation_table(&record, &items)
    })
}

/// Progress on standard error: one line rewritten on a terminal, a line per tenth otherwise.
fn progress_line(spec: &str) -> impl FnMut(EvalProgress) -> ControlFlow<()> + '_ {
    let tty = std::io::stderr().is_terminal();
    let mut last_tenth = None;
    move |progress| {
        let (answered, total) = match progress {
            EvalProgress::Opening { total } => {
                eprint!(
                    "{}opening {spec} for {total} problems",
                    if tty { "\r" } else { "" }
                );
                if !tty {
                    eprintln!();
                }
                return ControlFlow::Continue(());
            }
            EvalProgress::Answering { answered, total } => (answered, total),
        };
        let tenth = answered * 10 / total.max(1);
        if tty {
            let width = 30;
            let filled = answered * width / total.max(1);
            eprint!(
                "\r{spec} [{}{}] {answered}/{total} answered",
                "#".repeat(filled),
                "-".repeat(width - filled)
            );
        } else if last_tenth != Some(tenth) {
            eprintln!("{spec}: {answered}/{total} answered");
            last_tenth = Some(tenth);
        }
        ControlFlow::Continue(())
    }
}

/// `{"evaluation", "checkpoint", "source", "count", "accuracy", "items": [...]}` and a newline.
fn evaluation_json(record: &EvaluationRecord, items: &[EvaluationItem]) -> String {
    let s = &record.summary;
    let items: Vec<Value> = items
        .iter()
        .map(|i| {
            json!({
                "index": i.index,
                "prompt": i.prompt,
                "answer": i.answer,
                "completion": i.completion,
                "extracted": answer::extract(&i.completion),
                "correct": i.correct,
                "finish_reason": i.finish_reason,
            })
        })
        .collect();
    format!(
        "{}\n",
        json!({
            "evaluation": record.id,
            "checkpoint": evaluated_model(s),
            "checkpoint_id": s.checkpoint_id,
            "model": s.model,
            "source": s.source,
            "seed": s.seed,
            "difficulty": s.difficulty,
            "count": s.count,
            "accuracy": s.accuracy,
            "items": items,
        })
    )
}

/// `text` on one line, cut to `width` characters.
fn cell(text: &str, width: usize) -> String {
    let line = text.replace(['\n', '\r', '\t'], " ");
    if line.chars().count() <= width {
        return line;
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn evaluation_table(record: &EvaluationRecord, items: &[EvaluationItem]) -> String {
    let s = &record.summary;
    let correct = items.iter().filter(|i| i.correct).count();
    let mut out = format!(
        "{} on {}: accuracy {:.4} ({correct}/{})\n{:>6}  {:<7} {:<20} {:<20} finish\n",
        evaluated_model(s),
        problem_set(s),
        s.accuracy,
        s.count,
        "index",
        "correct",
        "answer",
        "extracted"
    );
    for i in items {
        out.push_str(&format!(
            "{:>6}  {:<7} {:<20} {:<20} {}\n",
            i.index,
            if i.correct { "yes" } else { "no" },
            cell(i.answer.as_deref().unwrap_or("-"), 20),
            cell(&answer::extract(&i.completion), 20),
            i.finish_reason
        ));
    }
    out.push_str(&format!("stored as evaluation {}\n", record.id));
    out
}

fn list(workspace_dir: Option<&Path>, json_out: bool) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let evaluations = workspace.evaluations(None)?;
    if json_out {
        let rows = evaluations
            .iter()
            .map(|e| {
                let mut row = serde_json::to_value(e)?;
                if let Some(object) = row.as_object_mut() {
                    object.insert("checkpoint".into(), evaluated_model(&e.summary).into());
                }
                Ok(row)
            })
            .collect::<Result<Vec<Value>>>()?;
        return emit(&format!("{}\n", json!({ "evaluations": rows })));
    }
    if evaluations.is_empty() {
        return emit("no evaluations stored (make one with studio eval --checkpoint …)\n");
    }
    let mut out = format!(
        "{:>4}  {:<24} {:<40} {:>6} {:>9}  created\n",
        "id", "checkpoint", "problems", "count", "accuracy"
    );
    for e in &evaluations {
        out.push_str(&format!(
            "{:>4}  {:<24} {:<40} {:>6} {:>9.4}  {}\n",
            e.id,
            cell(&evaluated_model(&e.summary), 24),
            cell(&problem_set(&e.summary), 40),
            e.summary.count,
            e.summary.accuracy,
            e.created_at
        ));
    }
    emit(&out)
}

fn flipped(
    workspace_dir: Option<&Path>,
    a: EvaluationId,
    b: EvaluationId,
    json_out: bool,
) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let compared = evaluation::compare_evaluations(&workspace, a, b)
        .with_context(|| format!("--flipped {a} {b}"))?;
    let item = |items: &[EvaluationItem], index: usize| -> Result<EvaluationItem> {
        items
            .iter()
            .find(|i| i.index == index)
            .cloned()
            .with_context(|| format!("no item {index}"))
    };
    let pairs = |list: &[(usize, usize)]| -> Result<Vec<(EvaluationItem, EvaluationItem)>> {
        list.iter()
            .map(|&(ia, ib)| Ok((item(&compared.a.1, ia)?, item(&compared.b.1, ib)?)))
            .collect()
    };
    let right_to_wrong = pairs(&compared.flipped.right_to_wrong)?;
    let wrong_to_right = pairs(&compared.flipped.wrong_to_right)?;
    let f = &compared.flipped;
    if json_out {
        let rows = |list: &[(EvaluationItem, EvaluationItem)]| -> Vec<Value> {
            list.iter()
                .map(|(x, y)| {
                    json!({
                        "index": x.index,
                        "index_b": y.index,
                        "prompt": x.prompt,
                        "answer": x.answer,
                        "completion_a": x.completion,
                        "completion_b": y.completion,
                    })
                })
                .collect()
        };
        return emit(&format!(
            "{}\n",
            json!({
                "a": a,
                "b": b,
                "source": problem_set(&compared.a.0.summary),
                "right_to_wrong": rows(&right_to_wrong),
                "wrong_to_right": rows(&wrong_to_right),
                "only_in_a": f.only_in_a,
                "only_in_b": f.only_in_b,
            })
        ));
    }
    let mut out = format!(
        "evaluation {a} ({}, accuracy {:.4}) → evaluation {b} ({}, accuracy {:.4}) on {}\n",
        evaluated_model(&compared.a.0.summary),
        compared.a.0.summary.accuracy,
        evaluated_model(&compared.b.0.summary),
        compared.b.0.summary.accuracy,
        problem_set(&compared.a.0.summary)
    );
    for (title, list) in [
        ("right → wrong", &right_to_wrong),
        ("wrong → right", &wrong_to_right),
    ] {
        out.push_str(&format!("{title}: {}\n", list.len()));
        for (x, y) in list {
            out.push_str(&format!(
                "  {:>5}  {:<28} answer {:<12} A {:<16} B {}\n",
                x.index,
                cell(&x.prompt, 28),
                cell(x.answer.as_deref().unwrap_or("-"), 12),
                cell(&answer::extract(&x.completion), 16),
                cell(&answer::extract(&y.completion), 16)
            ));
        }
    }
    if !f.only_in_a.is_empty() || !f.only_in_b.is_empty() {
        out.push_str(&format!(
            "not compared: {} problems only in {a}, {} only in {b}\n",
            f.only_in_a.len(),
            f.only_in_b.len()
        ));
    }
    emit(&out)
}
