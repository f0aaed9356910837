//! Runs from the command line: `train` registers a run and starts its worker process,
//! `worker` executes one, `runs` lists and shows them, `stop` and `resume` control them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine::store::{RunId, RunStatus, Workspace};
use engine::train::RunConfig;
use engine::train::run::{Hooks, Outcome, execute};
use serde_json::json;

pub fn open_workspace(dir: Option<&Path>) -> Result<Workspace> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(Workspace::default_dir);
    Workspace::open(&dir)
        .with_context(|| format!("could not open the workspace at {}", dir.display()))
}

pub(crate) fn spawn_worker(workspace: &Workspace, run: RunId) -> Result<std::process::Child> {
    let exe =
        std::env::current_exe().context("cannot find the studio executable to start a worker")?;
    let log_path = workspace.run_artifacts_dir(run).join("worker.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("could not open {}", log_path.display()))?;
    let child = Command::new(exe)
        .arg("--workspace")
        .arg(workspace.dir())
        .args(["worker", "--run", &run.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("could not start the worker process")?;
    workspace.set_worker_pid(run, Some(child.id()))?;
    Ok(child)
}

fn is_terminal_status(s: RunStatus) -> bool {
    matches!(
        s,
        RunStatus::Completed | RunStatus::Failed | RunStatus::Stopped
    )
}

/// Follows a run in the workspace until it ends, printing progress; errors if it failed or if
/// its worker process died without recording an end (the run can then be resumed).
pub(crate) fn follow(
    workspace: &Workspace,
    run: RunId,
    max_steps: u64,
    worker: &mut std::process::Child,
) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last_printed = 0u64;
    loop {
        let record = workspace.run(run)?;
        let step = record.last_step.unwrap_or(0);
        if step != last_printed {
            let loss = workspace.metric(run, "loss")?.last().map(|p| p.1);
            let acc = workspace.metric(run, "eval/accuracy")?.last().map(|p| p.1);
            let width = 30usize;
            let filled = (step as usize * width / max_steps.max(1) as usize).min(width);
            let line = format!(
                "run {run} [{}{}] step {step}/{max_steps} loss {}{}",
                "#".repeat(filled),
                "-".repeat(width - filled),
                loss.map_or("-".into(), |l| format!("{l:.4}")),
                acc.map_or(String::new(), |a| format!(" eval/accuracy {a:.3}")),
            );
            let mut err = std::io::stderr();
            if tty {
                let _ = write!(err, "\r{line}");
            } else {
                let _ = writeln!(err, "{line}");
            }
            last_printed = step;
        }
        if is_terminal_status(record.status) {
            if tty {
                eprintln!();
            }
            return match record.status {
                RunStatus::Failed => bail!(
                    "run {run} failed: {}",
                    record
                        .message
                        .unwrap_or_else(|| "see `studio runs show`".into())
                ),
                status => {
                    eprintln!("run {run} {}", status.as_str());
                    Ok(())
                }
            };
        }
        if let Some(exit) = worker.try_wait()? {
            // The worker records its own end; give the database a moment, then look again.
            std::thread::sleep(Duration::from_millis(300));
            let record = workspace.run(run)?;
            if !is_terminal_status(record.status) {
                let message =
                    format!("the worker process exited ({exit}) without finishing the run");
                workspace.set_status(run, RunStatus::Failed, Some(&message))?;
                bail!(
                    "run {run}: {message}; its log is {}; continue it with `studio resume {run}`",
                    workspace
                        .run_artifacts_dir(run)
                        .join("worker.log")
                        .display()
                );
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `studio train CONFIG --check`: the config parses and validates, its model and dataset open,
/// a GRPO run's dataset has answers; prints the config with every default filled in.
pub fn check(config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("could not read the run config {}", config_path.display()))?;
    let origin = config_path.display().to_string();
    let config = RunConfig::from_toml(&text, &origin)?;
    let loaded =
        engine::formats::loader::load_model(&config.model, &engine::backend::Backend::cpu())
            .with_context(|| format!("{origin}: setting `model`"))?;
    if let Some(path) = &config.data.path {
        let dataset = engine::data::Dataset::open(Path::new(path), config.data.mapping.as_ref())
            .with_context(|| format!("{origin}: setting `data.path`"))?;
        if dataset.is_empty() {
            bail!("{origin}: setting `data.path`: {path} has no usable rows");
        }
        if config.algorithm == "grpo" && dataset.example(0)?.answer.is_none() {
            bail!(
                "{origin}: setting `data.path`: {path} has no answer column, which the rewards \
                 of a GRPO run check against; name it with `data.mapping = {{ answer = \"COLUMN\" }}`"
            );
        }
    }
    println!(
        "# {origin}: valid ({} run on {}, {} parameters); every setting with its default:",
        config.algorithm,
        loaded.name,
        loaded.model.config.num_parameters()
    );
    print!(
        "{}",
        toml::to_string(&config).context("could not print the config as TOML")?
    );
    Ok(())
}

pub fn train(workspace_dir: Option<&Path>, config_path: &Path, detach: bool) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("could not read the run config {}", config_path.display()))?;
    let config = RunConfig::from_toml(&text, &config_path.display().to_string())?;
    let workspace = open_workspace(workspace_dir)?;
    let run = workspace.create_run(&config.name, &text)?;
    let mut worker = spawn_worker(&workspace, run)?;
    println!(
        "run {run} started (worker pid {}, workspace {})",
        worker.id(),
        workspace.dir().display()
    );
    if detach {
        return Ok(());
    }
    follow(&workspace, run, config.steps(), &mut worker)
}

pub fn resume(workspace_dir: Option<&Path>, run: RunId, detach: bool) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let record = workspace.run(run)?;
    if matches!(record.status, RunStatus::Running | RunStatus::Stopping)
        && record.worker_pid.is_some_and(process_alive)
    {
        bail!(
            "run {run} is still running (worker pid {:?}); stop it first",
            record.worker_pid
        );
    }
    if record.status == RunStatus::Completed {
        bail!("run {run} already completed");
    }
    let config = RunConfig::from_toml(&record.config_toml, &format!("run {run} config"))?;
    workspace.clear_stop(run)?;
    workspace.set_status(run, RunStatus::Queued, None)?;
    let mut worker = spawn_worker(&workspace, run)?;
    println!("run {run} resumed (worker pid {})", worker.id());
    if detach {
        return Ok(());
    }
    follow(&workspace, run, config.steps(), &mut worker)
}

fn process_alive(pid: u32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

pub fn stop(workspace_dir: Option<&Path>, run: RunId) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let record = workspace.run(run)?;
    if is_terminal_status(record.status) {
        println!("run {run} is already {}", record.status.as_str());
        return Ok(());
    }
    workspace.request_stop(run)?;
    workspace.set_status(run, RunStatus::Stopping, None)?;
    println!("stop requested for run {run}; the worker stops after its current step");
    Ok(())
}

/// The worker process: executes one run, recording its status.
pub fn worker(workspace_dir: Option<&Path>, run: RunId) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    workspace.set_worker_pid(run, Some(std::process::id()))?;
    workspace.set_status(run, RunStatus::Running, None)?;
    let stop_ws = open_workspace(Some(workspace.dir()))?;
    let should_stop = || stop_ws.stop_requested(run);
    let mut on_step = |step: u64, max: u64, metrics: &[(&str, f64)]| {
        let loss = metrics
            .iter()
            .find(|m| m.0 == "loss")
            .map_or(f64::NAN, |m| m.1);
        tracing::info!(step, max, loss, "step");
    };
    // A bug must not leave the run marked as running: turn a panic into a failed run.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        execute(
            &workspace,
            run,
            Hooks {
                should_stop: &should_stop,
                on_step: &mut on_step,
                test: engine::train::run::TestHooks::from_env(),
            },
        )
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown".into());
        Err(engine::train::TrainError::Internal { panic: what })
    });
    workspace.set_worker_pid(run, None)?;
    match result {
        Ok(Outcome::Completed { step }) => {
            workspace.set_status(
                run,
                RunStatus::Completed,
                Some(&format!("completed at step {step}")),
            )?;
            Ok(())
        }
        Ok(Outcome::Stopped { step }) => {
            workspace.clear_stop(run)?;
            workspace.set_status(
                run,
                RunStatus::Stopped,
                Some(&format!("stopped at step {step}")),
            )?;
            Ok(())
        }
        Err(e) => {
            let message = e.to_string();
            workspace.set_status(run, RunStatus::Failed, Some(&message))?;
            workspace.append_log(run, "error", &message)?;
            Err(e.into())
        }
    }
}

pub fn list(workspace_dir: Option<&Path>, json_out: bool) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let runs = workspace.runs()?;
    if json_out {
        println!("{}", serde_json::to_string(&runs)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<24} {:<10} {:>6}  created",
        "id", "name", "status", "step"
    );
    for r in runs {
        println!(
            "{:>4}  {:<24} {:<10} {:>6}  {}",
            r.id,
            r.name,
            r.status.as_str(),
            r.last_step.map_or("-".into(), |s| s.to_string()),
            r.created_at
        );
    }
    Ok(())
}

pub fn show(workspace_dir: Option<&Path>, run: RunId, json_out: bool) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let record = workspace.run(run)?;
    let mut last = serde_json::Map::new();
    for name in workspace.metric_names(run)? {
        if let Some((step, value)) = workspace.metric(run, &name)?.last() {
            last.insert(name, json!({"step": step, "value": value}));
        }
    }
    let checkpoints = workspace.checkpoints(run)?;
    if json_out {
        println!(
            "{}",
            json!({"run": record, "last_metrics": last, "checkpoints": checkpoints})
        );
        return Ok(());
    }
    println!(
        "run {} · {} · {}",
        record.id,
        record.name,
        record.status.as_str()
    );
    if let Some(m) = &record.message {
        println!("message: {m}");
    }
    for (name, v) in &last {
        println!("  {name:<24} {} (step {})", v["value"], v["step"]);
    }
    for c in &checkpoints {
        println!(
            "  checkpoint {} at step {} ({}) {}",
            c.id,
            c.step,
            c.kind,
            c.path.display()
        );
    }
    println!("config:\n{}", record.config_toml);
    Ok(())
}

/// The model of a checkpoint: the run's base model with the checkpoint's weights (and its LoRA
/// settings when it is a LoRA run), on the CPU for inference and export.
pub fn load_checkpoint(
    workspace_dir: Option<&Path>,
    id: i64,
) -> Result<(
    engine::formats::loader::LoadedModel,
    Option<engine::models::lora::LoraConfig>,
)> {
    let workspace = open_workspace(workspace_dir)?;
    let ckpt = workspace.checkpoint(id)?;
    let record = workspace.run(ckpt.run_id)?;
    let config = RunConfig::from_toml(&record.config_toml, &format!("run {} config", record.id))?;
    let mut loaded =
        engine::formats::loader::load_model(&config.model, &engine::backend::Backend::cpu())
            .with_context(|| format!("could not load the run's base model `{}`", config.model))?;
    // A GRPO run's adapter sits in `[grpo.lora]`, an SFT run's in `[sft.lora]`.
    let lora = config.lora().1.cloned();
    if let Some(l) = &lora {
        loaded.model = loaded.model.attach_lora(l).map_err(anyhow::Error::msg)?;
    }
    let saved = engine::train::checkpoint::load(&ckpt.path)?;
    loaded.model.transformer = engine::train::checkpoint::restore_module(
        loaded.model.transformer,
        &saved.weights,
        &ckpt.path,
    )?;
    loaded.name = format!(
        "{} (run {} checkpoint {} at step {})",
        loaded.name, record.id, id, ckpt.step
    );
    Ok((loaded, lora))
}
