//! Runs from the command line: `train` registers a run and starts its worker process,
//! `worker` executes one, `runs` lists and shows them, `stop` and `resume` control them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine::store::{RunId, RunStatus, Workspace};
use engine::train::RunConfig;
use engine::train::checkpoint::{ModelSpec, open_model_spec};
use engine::train::run::{Hooks, Outcome, execute};
use serde_json::json;

pub fn open_workspace(dir: Option<&Path>) -> Result<Workspace> {
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(Workspace::default_dir);
    Workspace::open(&dir)
        .with_context(|| format!("could not open the workspace at {}", dir.display()))
}

/// The studio executable, which workers are started from.
pub(crate) fn studio_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the studio executable to start a worker")
}

pub(crate) fn spawn_worker(workspace: &Workspace, run: RunId) -> Result<std::process::Child> {
    Ok(engine::train::launch::spawn_worker(
        workspace,
        run,
        &studio_exe()?,
    )?)
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
pub fn check(workspace_dir: Option<&Path>, config_path: &Path) -> Result<()> {
    let (text, origin) = read_document(config_path, "run config")?;
    let config = RunConfig::from_toml(&text, &origin)?;
    // What the launcher checks without weights: roles, the checkpoint to start from, memory.
    // Only a run that starts from another run's checkpoint needs the workspace (opening it
    // would create it).
    let workspace = config
        .init_from
        .as_ref()
        .and_then(|_| open_workspace(workspace_dir).ok());
    let preflight = engine::train::preflight::check(&config, workspace.as_ref());
    if let Some(problem) = preflight.problems.first() {
        if problem.setting.is_empty() {
            bail!("{origin}: {}", problem.message);
        }
        bail!(
            "{origin}: setting `{}`: {}",
            problem.setting,
            problem.message
        );
    }
    let loaded =
        engine::formats::loader::load_model(&config.model, &engine::backend::Backend::cpu())
            .with_context(|| format!("{origin}: setting `model`"))?;
    if let Some(path) = &config.data.path {
        let dataset = engine::data::Dataset::open(Path::new(path), config.data.mapping.as_ref())
            .with_context(|| format!("{origin}: setting `data.path`"))?;
        if dataset.is_empty() {
            bail!("{origin}: setting `data.path`: {path} has no usable rows");
        }
        if config.algorithm == engine::train::config::Algorithm::Grpo
            && dataset.example(0)?.answer.is_none()
        {
            bail!(
                "{origin}: setting `data.path`: {path} has no answer column, which the rewards \
                 of a GRPO run check against; name it with `data.mapping = {{ answer = \"COLUMN\" }}`"
            );
        }
    }
    println!(
        "# {origin}: valid ({} run on {}, {} parameters, about {} of memory of {} available); \
         every setting with its default:",
        config.algorithm,
        loaded.name,
        loaded.model.config.num_parameters(),
        preflight
            .memory_bytes
            .map_or("?".into(), engine::train::preflight::human_bytes),
        preflight
            .available_bytes
            .map_or("?".into(), engine::train::preflight::human_bytes),
    );
    print!(
        "{}",
        toml::to_string(&config).context("could not print the config as TOML")?
    );
    Ok(())
}

/// Reads a TOML document named on the command line; `-` reads standard input. Returns its
/// text and how errors name it.
pub fn read_document(path: &Path, what: &str) -> Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .with_context(|| format!("could not read the {what} from standard input"))?;
        return Ok((text, format!("the {what} on standard input")));
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read the {what} {}", path.display()))?;
    Ok((text, path.display().to_string()))
}

pub fn train(workspace_dir: Option<&Path>, config_path: &Path, detach: bool) -> Result<()> {
    let (text, origin) = read_document(config_path, "run config")?;
    let config = RunConfig::from_toml(&text, &origin)?;
    let workspace = open_workspace(workspace_dir)?;
    let run = workspace.create_run(&config.name, &text)?;
    let mut worker = spawn_worker(&workspace, run)?;
    println!(
        "run {run} started (worker pid {}, workspace {})",
        worker.id(),
        workspace.dir().display()
    );
    println!(
        "watch it: studio --workspace {} gui --view runs --run {run}",
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
    let config = RunConfig::from_toml(&record.config_toml, &format!("run {run} config"))?;
    let mut worker = engine::train::launch::resume_run(&workspace, run, &studio_exe()?)?;
    println!("run {run} resumed (worker pid {})", worker.id());
    if detach {
        return Ok(());
    }
    follow(&workspace, run, config.steps(), &mut worker)
}

pub fn stop(workspace_dir: Option<&Path>, run: RunId) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    if engine::train::launch::request_stop(&workspace, run)? {
        println!("stop requested for run {run}; the worker stops after its current step");
    } else {
        println!(
            "run {run} is already {}",
            workspace.run(run)?.status.as_str()
        );
    }
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
    let warnings = engine::train::health::run_warnings(
        &workspace.metric(run, "frac_reward_zero_std")?,
        &workspace.metric(run, "entropy")?,
    );
    if json_out {
        println!(
            "{}",
            json!({"run": record, "last_metrics": last, "checkpoints": checkpoints, "warnings": warnings})
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
    for w in &warnings {
        println!("warning: {}", w.message);
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

/// `studio compare`: one text scored under several checkpoints, token by token.
pub fn compare(
    workspace_dir: Option<&Path>,
    args: &crate::cli::CompareArgs,
    backend: engine::backend::BackendKind,
) -> Result<()> {
    let backend = super::backend_of(backend)?;
    if !(2..=4).contains(&args.checkpoints.len()) {
        bail!(
            "give --checkpoint 2 to 4 times (got {})",
            args.checkpoints.len()
        );
    }
    if !(args.rho > 0.0 && args.rho <= 1.0) {
        bail!("--rho {} must be in (0, 1]", args.rho);
    }
    // Only checkpoints are looked up in the workspace (opening it would create it).
    let names_checkpoint = args
        .checkpoints
        .iter()
        .any(|spec| ModelSpec::parse(spec).is_checkpoint());
    let workspace = names_checkpoint
        .then(|| open_workspace(workspace_dir))
        .transpose()?;
    let models: Vec<engine::formats::loader::LoadedModel> = args
        .checkpoints
        .iter()
        .map(|spec| {
            open_model_spec(workspace.as_ref(), spec, &backend)
                .map(|opened| opened.loaded)
                .with_context(|| format!("--checkpoint {spec}"))
        })
        .collect::<Result<_>>()?;
    let tok = &models[0].tokenizer;
    let ids = tok.encode(&args.text, true)?;
    let refs: Vec<&engine::models::CausalLm> = models.iter().map(|m| &m.model).collect();
    let tokens = engine::infer::compare(&refs, &ids)?;
    // Token 0 has no prediction, so no entropy: the forking tokens are among tokens 1...
    let entropies: Vec<Vec<f32>> = (0..models.len())
        .map(|m| tokens.iter().skip(1).filter_map(|t| t.entropy[m]).collect())
        .collect();
    let forking = engine::analysis::forking_overlap(&entropies, args.rho);
    if args.json {
        let tokens = tokens
            .iter()
            .map(|t| -> Result<serde_json::Value> {
                Ok(serde_json::json!({
                    "id": t.id,
                    "text": tok.token_text(t.id)?,
                    "logprob": t.logprob,
                    "entropy": t.entropy,
                    "kl": t.kl,
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        println!(
            "{}",
            serde_json::json!({
                "checkpoints": args.checkpoints,
                "tokens": tokens,
                "forking": {
                    "rho": args.rho,
                    // Token positions (token 0 is the first of the text).
                    "positions": forking.positions.iter()
                        .map(|p| p.iter().map(|i| i + 1).collect::<Vec<_>>())
                        .collect::<Vec<_>>(),
                    "shared_with_first": forking.shared_with_first,
                },
            })
        );
        return Ok(());
    }
    for (i, m) in models.iter().enumerate() {
        println!("[{}] {}", i + 1, m.name);
    }
    let fmt = |v: Option<f32>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    print!("{:>6}  {:<18}", "id", "token");
    for i in 0..models.len() {
        print!(
            " {:>9} {:>7}",
            format!("lp[{}]", i + 1),
            format!("H[{}]", i + 1)
        );
    }
    println!(" {:>9} {:>9}", "Δlp 2−1", "KL(1‖2)");
    for t in &tokens {
        print!(
            "{:>6}  {:<18}",
            t.id,
            format!("{:?}", tok.token_text(t.id)?)
        );
        for (lp, h) in t.logprob.iter().zip(&t.entropy) {
            print!(
                " {:>9} {:>7}",
                fmt(*lp),
                h.map_or("-".into(), |h| format!("{h:.3}"))
            );
        }
        let delta = t.logprob[0].zip(t.logprob[1]).map(|(a, b)| b - a);
        println!(
            " {:>9} {:>9}",
            fmt(delta),
            t.kl.map_or("-".into(), |k| format!("{k:.5}"))
        );
    }
    let mut ranked: Vec<&engine::infer::ComparedToken> =
        tokens.iter().filter(|t| t.kl.is_some()).collect();
    ranked.sort_by(|a, b| b.kl.unwrap_or(0.0).total_cmp(&a.kl.unwrap_or(0.0)));
    println!(
        "
where [1] and [2] disagree most (KL):"
    );
    for t in ranked.iter().take(args.top) {
        println!(
            "  {:<18} KL {:.5}",
            format!("{:?}", tok.token_text(t.id)?),
            t.kl.unwrap_or(0.0)
        );
    }
    println!(
        "
forking tokens (the top {:.0} % by entropy) of [1] that each shares:",
        args.rho * 100.0
    );
    for (i, share) in forking.shared_with_first.iter().enumerate().skip(1) {
        println!(
            "  [{}] {}",
            i + 1,
            share.map_or("-".into(), |s| format!("{:.0} %", s * 100.0))
        );
    }
    Ok(())
}

/// `studio import FILE`: a `trainer_state.json` becomes a read-only run.
pub fn import(workspace_dir: Option<&Path>, file: &Path) -> Result<()> {
    let workspace = open_workspace(workspace_dir)?;
    let imported = workspace.import_trainer_state(file)?;
    println!(
        "imported {} as run {} ({} points)",
        file.display(),
        imported.run,
        imported.points
    );
    if !imported.skipped.is_empty() {
        println!(
            "skipped log_history entries without a step: {:?}",
            imported.skipped
        );
    }
    Ok(())
}
