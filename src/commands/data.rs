//! `studio data`: inspect a dataset file, list the built-in tasks or write a sample of one.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use engine::data::{BadRow, BuiltinTask, Dataset, RoleMapping, builtin};
use serde_json::json;

#[derive(Debug, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub what: DataWhat,
}

#[derive(Debug, Subcommand)]
pub enum DataWhat {
    /// Open a dataset (JSONL, JSON, CSV/TSV, Parquet): rows, bad rows, columns, schema and roles.
    Inspect {
        /// The dataset file.
        file: PathBuf,
        /// Print one JSON object: {"path", "format", "rows", "bad_rows": [{"line", "message"}],
        /// "columns", "schema", "roles": {"prompt", "reasoning", "answer", "messages", "image"}}.
        #[arg(long)]
        json: bool,
    },
    /// List the built-in tasks, or with --task write a sample as JSONL (question/answer/cot).
    Builtin {
        /// The task to sample (arithmetic, countdown, linear_equation).
        #[arg(long)]
        task: Option<String>,
        /// Problems to write.
        #[arg(long, default_value_t = 100)]
        count: u64,
        /// Seed: the same seed gives the same problems.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Difficulty from 0 (easiest) to 3.
        #[arg(long, default_value_t = builtin::DEFAULT_DIFFICULTY)]
        difficulty: u8,
        /// Output JSONL file (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// List the tasks as a JSON array of {"name", "description"}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: &DataArgs) -> Result<()> {
    match &args.what {
        DataWhat::Inspect { file, json } => inspect(file, *json),
        DataWhat::Builtin {
            task: None, json, ..
        } => list_builtin(*json),
        DataWhat::Builtin {
            task: Some(name),
            count,
            seed,
            difficulty,
            out,
            ..
        } => write_builtin(name, *count, *seed, *difficulty, out.as_deref()),
    }
}

/// `inspect --json`, fields in the contract's order.
#[derive(serde::Serialize)]
struct InspectReport<'a> {
    path: String,
    format: &'static str,
    rows: usize,
    bad_rows: &'a [BadRow],
    columns: &'a [String],
    schema: &'static str,
    roles: &'a RoleMapping,
}

fn inspect(file: &Path, as_json: bool) -> Result<()> {
    // The error names the file (and line); its own message is the whole paragraph.
    let dataset = Dataset::open(file, None).map_err(|e| anyhow!("{e}"))?;
    if as_json {
        let report = InspectReport {
            path: file.display().to_string(),
            format: dataset.format().name(),
            rows: dataset.len(),
            bad_rows: dataset.bad_rows(),
            columns: dataset.columns(),
            schema: dataset.schema().name(),
            roles: dataset.roles(),
        };
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    let roles = dataset.roles();
    let role = |r: &Option<String>| r.as_deref().unwrap_or("-").to_string();
    println!("{}", file.display());
    println!("  format   {}", dataset.format().name());
    println!("  rows     {}", dataset.len());
    println!("  columns  {}", dataset.columns().join(", "));
    println!("  schema   {}", dataset.schema().name());
    println!(
        "  roles    prompt={} reasoning={} answer={} messages={} image={}",
        role(&roles.prompt),
        role(&roles.reasoning),
        role(&roles.answer),
        role(&roles.messages),
        role(&roles.image)
    );
    let bad = dataset.bad_rows();
    println!("  bad rows {}", bad.len());
    const SHOWN_BAD_ROWS: usize = 20;
    for row in bad.iter().take(SHOWN_BAD_ROWS) {
        println!("    line {}: {}", row.line, row.message);
    }
    if bad.len() > SHOWN_BAD_ROWS {
        println!("    … and {} more", bad.len() - SHOWN_BAD_ROWS);
    }
    if !dataset.is_empty() {
        let example = dataset.example(0)?;
        println!("  first example");
        let show = |label: &str, text: &str| println!("    {label:<10}{}", one_line(text));
        show("prompt", &example.prompt);
        if let Some(reasoning) = &example.reasoning {
            show("reasoning", reasoning);
        }
        if let Some(answer) = &example.answer {
            show("answer", answer);
        }
        if !example.messages.is_empty() {
            show("messages", &format!("{} turns", example.messages.len()));
        }
        if let Some(image) = &example.image {
            show("image", image);
        }
    }
    Ok(())
}

/// The first 100 characters on one line.
fn one_line(text: &str) -> String {
    const SHOWN_CHARS: usize = 100;
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > SHOWN_CHARS {
        format!("{}…", flat.chars().take(SHOWN_CHARS).collect::<String>())
    } else {
        flat
    }
}

fn list_builtin(as_json: bool) -> Result<()> {
    if as_json {
        let tasks: Vec<_> = BuiltinTask::ALL
            .iter()
            .map(|t| json!({"name": t.name(), "description": t.description()}))
            .collect();
        println!("{}", serde_json::Value::Array(tasks));
    } else {
        for task in BuiltinTask::ALL {
            println!("{:<16} {}", task.name(), task.description());
        }
    }
    Ok(())
}

fn write_builtin(
    name: &str,
    count: u64,
    seed: u64,
    difficulty: u8,
    out: Option<&Path>,
) -> Result<()> {
    let Some(task) = BuiltinTask::from_name(name) else {
        let known: Vec<&str> = BuiltinTask::ALL.iter().map(|t| t.name()).collect();
        bail!(
            "unknown built-in task `{name}` (--task): known tasks are {}",
            known.join(", ")
        );
    };
    let mut writer: Box<dyn Write> = match out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("could not create {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    for index in 0..count {
        let problem = task.problem_with(seed, index, difficulty);
        let line =
            json!({"question": problem.prompt, "answer": problem.answer, "cot": problem.reasoning});
        writeln!(writer, "{line}").context("could not write the sample")?;
    }
    writer.flush().context("could not write the sample")?;
    if let Some(path) = out {
        eprintln!(
            "wrote {count} {} problems to {}",
            task.name(),
            path.display()
        );
    }
    Ok(())
}
