//! Helpers shared by the integration tests: finding `../shared` fixtures and the SmolLM2 GGUF
//! (through `engine::test_files`), and running the `studio` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use engine::store::{RunStatus, Workspace};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file under `../shared` (see `engine::test_files`: missing fails under `CI`, else skips).
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    engine::test_files::shared_file(relative)
}

/// The SmolLM2-135M-Instruct GGUF `scripts/test.sh` fetches (see `engine::test_files`).
pub fn smollm2_gguf() -> Option<PathBuf> {
    engine::test_files::smollm2_gguf()
}

/// Runs `studio` with `args`.
pub fn studio<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_studio"))
        .args(args)
        .env("STUDIO_NO_DIALOGS", "1")
        .output()
        .expect("studio binary runs")
}

/// Runs `studio` and parses its stdout as JSON, failing with stderr shown if it did not succeed.
pub fn studio_json<I, S>(args: I) -> serde_json::Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    json_stdout(&studio(args))
}

/// The stdout of a successful command, parsed as one JSON object.
pub fn json_stdout(out: &Output) -> serde_json::Value {
    assert_success(out);
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Copies a folder's files (not recursive) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Runs `studio --workspace WS ARGS` with extra environment variables.
pub fn studio_in(ws: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_studio"));
    cmd.arg("--workspace")
        .arg(ws)
        .args(args)
        .env("STUDIO_NO_DIALOGS", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("studio runs")
}

/// Fails the test, showing the command's stderr, unless it exited successfully.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes a run config `NAME.toml` into `dir`.
pub fn write_config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).expect("write config");
    path
}

/// Polls `f` every 50 ms until it gives a value, failing after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// All metric series of a run, by name, except the `timing` ones (they differ between runs).
pub fn all_metrics(ws: &Workspace, run: i64, timing: &[&str]) -> Vec<(String, Vec<(u64, f64)>)> {
    let mut names = ws.metric_names(run).expect("names");
    names.sort();
    names
        .into_iter()
        .filter(|n| !timing.contains(&n.as_str()))
        .map(|n| {
            let series = ws.metric(run, &n).expect("series");
            (n, series)
        })
        .collect()
}

/// The newest run of a workspace.
pub fn latest_run(ws: &Workspace) -> i64 {
    ws.runs()
        .expect("runs")
        .iter()
        .map(|r| r.id)
        .max()
        .expect("a run")
}

/// Runs `config` once uninterrupted, then again killed with SIGKILL after each of
/// `kill_after_steps` and resumed each time: the second run's metrics (all but `timing`) equal
/// the first's, step for step, none missing or duplicated.
pub fn kill_and_resume_matches(
    config: &str,
    kill_after_steps: &[u64],
    steps: usize,
    timing: &[&str],
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(dir.path(), "small", config);

    // The uninterrupted reference run.
    let out = studio_in(&ws_dir, &["train", &config.to_string_lossy()], &[]);
    assert_success(&out);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let reference_run = latest_run(&ws);
    let reference = all_metrics(&ws, reference_run, timing);
    assert_eq!(
        reference
            .iter()
            .find(|m| m.0 == "loss")
            .expect("loss")
            .1
            .len(),
        steps
    );

    // The same config, killed at several points and resumed each time.
    let out = studio_in(
        &ws_dir,
        &["train", "--detach", &config.to_string_lossy()],
        &[],
    );
    assert_success(&out);
    let run = latest_run(&ws);
    for &kill_after_step in kill_after_steps {
        let pid = wait_for(Duration::from_secs(300), || {
            let r = ws.run(run).ok()?;
            (r.last_step.unwrap_or(0) >= kill_after_step)
                .then_some(r.worker_pid)
                .flatten()
        });
        let status = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        wait_for(Duration::from_secs(30), || {
            (!Path::new(&format!("/proc/{pid}")).exists()).then_some(())
        });
        let out = studio_in(&ws_dir, &["resume", &run.to_string(), "--detach"], &[]);
        assert_success(&out);
    }
    wait_for(Duration::from_secs(300), || {
        let r = ws.run(run).ok()?;
        matches!(r.status, RunStatus::Completed | RunStatus::Failed).then_some(())
    });
    assert_eq!(
        ws.run(run).expect("run").status,
        RunStatus::Completed,
        "{:?}",
        ws.run(run).expect("run").message
    );

    let resumed = all_metrics(&ws, run, timing);
    assert_eq!(
        reference.iter().map(|m| &m.0).collect::<Vec<_>>(),
        resumed.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in reference.iter().zip(&resumed) {
        let steps_a: Vec<u64> = a.iter().map(|p| p.0).collect();
        let steps_b: Vec<u64> = b.iter().map(|p| p.0).collect();
        assert_eq!(
            steps_a, steps_b,
            "{name}: same steps, none missing or duplicated"
        );
        for ((s, x), (_, y)) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                "{name} at step {s}: {x} vs {y}"
            );
        }
    }
    assert_eq!(ws.integrity_check().expect("check"), "ok");
}
