//! Starting, resuming and watching worker processes: what `studio train`, `studio resume`, the
//! studies and the app's launcher share. A worker is `studio worker --run ID` started from the
//! studio executable; it records its pid, status and metrics in the workspace, so any process
//! that opens the workspace can follow it, and a run whose pid is gone is known to be dead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::store::{RunId, RunRecord, RunStatus, StoreError, Workspace};

use super::{RunConfig, TrainError};

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] TrainError),
    #[error("could not write {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not start the worker process {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    #[error("run {run} is still running (worker pid {pid}); stop it first")]
    StillRunning { run: RunId, pid: u32 },
    #[error("run {run} already completed")]
    Completed { run: RunId },
}

/// Starts `exe worker --run RUN` on `workspace`, its stderr appended to the run's
/// `worker.log`, and records its pid.
pub fn spawn_worker(workspace: &Workspace, run: RunId, exe: &Path) -> Result<Child, LaunchError> {
    let log_path = workspace.run_artifacts_dir(run).join("worker.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| LaunchError::Log {
            path: log_path.clone(),
            source,
        })?;
    let child = Command::new(exe)
        .arg("--workspace")
        .arg(workspace.dir())
        .args(["worker", "--run", &run.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
    workspace.set_worker_pid(run, Some(child.id()))?;
    Ok(child)
}

/// Registers a run from a config's TOML text (validated first; `origin` names it in errors)
/// and starts its worker. Returns the run, its parsed config and the worker.
pub fn start_run(
    workspace: &Workspace,
    config_toml: &str,
    origin: &str,
    exe: &Path,
) -> Result<(RunId, RunConfig, Child), LaunchError> {
    let config = RunConfig::from_toml(config_toml, origin)?;
    let run = workspace.create_run(&config.name, config_toml)?;
    let child = spawn_worker(workspace, run, exe)?;
    Ok((run, config, child))
}

/// Starts `exe study FILE` for a study document (validated first): the study's TOML is kept
/// under the workspace's `studies/` folder with the study's log beside it, and its runs appear
/// in the workspace one after another as `studio study` starts them.
pub fn spawn_study(
    workspace: &Workspace,
    study_toml: &str,
    exe: &Path,
) -> Result<Child, LaunchError> {
    super::study::Study::from_toml(study_toml, "the study")?;
    let dir = workspace.dir().join("studies");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let file = dir.join(format!("study-{stamp}.toml"));
    let log_path = file.with_extension("log");
    let write = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, study_toml));
    write.map_err(|source| LaunchError::Log {
        path: file.clone(),
        source,
    })?;
    let log = std::fs::File::create(&log_path).map_err(|source| LaunchError::Log {
        path: log_path.clone(),
        source,
    })?;
    let err = log.try_clone().map_err(|source| LaunchError::Log {
        path: log_path.clone(),
        source,
    })?;
    Command::new(exe)
        .arg("--workspace")
        .arg(workspace.dir())
        .arg("study")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })
}

/// Continues a stopped, failed or dead run from its last checkpoint in a new worker.
pub fn resume_run(workspace: &Workspace, run: RunId, exe: &Path) -> Result<Child, LaunchError> {
    let record = workspace.run(run)?;
    if record.status == RunStatus::Completed {
        return Err(LaunchError::Completed { run });
    }
    if let Some(pid) = record.worker_pid.filter(|&pid| process_alive(pid))
        && matches!(record.status, RunStatus::Running | RunStatus::Stopping)
    {
        return Err(LaunchError::StillRunning { run, pid });
    }
    RunConfig::from_toml(&record.config_toml, &format!("run {run} config"))?;
    workspace.clear_stop(run)?;
    workspace.set_status(run, RunStatus::Queued, None)?;
    spawn_worker(workspace, run, exe)
}

/// Asks a run's worker to stop after its current step (it checkpoints first). Returns false
/// when the run had already ended.
pub fn request_stop(workspace: &Workspace, run: RunId) -> Result<bool, StoreError> {
    let record = workspace.run(run)?;
    if record.status.is_finished() {
        return Ok(false);
    }
    workspace.request_stop(run)?;
    workspace.set_status(run, RunStatus::Stopping, None)?;
    Ok(true)
}

/// Whether process `pid` exists and is not a zombie (a dead child not yet waited for).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S …": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Whether a run says it is queued, running or stopping but its worker process is gone: it
/// died without recording an end (killed, out of memory, power loss) and can be resumed.
pub fn worker_died(record: &RunRecord) -> bool {
    match record.status {
        RunStatus::Running | RunStatus::Stopping => !record.worker_pid.is_some_and(process_alive),
        // A run just registered has no pid until its worker starts.
        RunStatus::Queued => record.worker_pid.is_some_and(|pid| !process_alive(pid)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reaped_child_is_dead_and_a_zombie_is_dead_too() {
        assert!(process_alive(std::process::id()));
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let pid = child.id();
        assert!(process_alive(pid));
        child.kill().expect("kill");
        // Not waited for yet: a zombie, which /proc still lists.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert!(!process_alive(pid), "a zombie is not alive");
        child.wait().expect("reap");
        assert!(!process_alive(pid));
    }

    #[test]
    fn a_running_run_without_a_live_pid_is_dead() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::open(dir.path()).expect("workspace");
        let run = ws.create_run("r", "").expect("run");
        ws.set_status(run, RunStatus::Running, None)
            .expect("status");
        ws.set_worker_pid(run, Some(std::process::id()))
            .expect("pid");
        assert!(!worker_died(&ws.run(run).expect("run")));
        ws.set_worker_pid(run, None).expect("pid");
        assert!(worker_died(&ws.run(run).expect("run")));
        ws.set_status(run, RunStatus::Completed, None)
            .expect("status");
        assert!(!worker_died(&ws.run(run).expect("run")));
    }
}
