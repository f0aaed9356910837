//! Runs from the command line, end to end through the real binary and worker processes: the
//! tiny reasoner learns a built-in task, a worker killed with SIGKILL resumes to exactly the
//! uninterrupted run's metrics, a NaN loss stops the run and keeps the last good checkpoint,
//! bad configs name the setting.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use engine::store::{RunStatus, Workspace};

fn studio_in(ws: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
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

fn write_config(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).expect("write config");
    path
}

const SMALL_RUN: &str = r#"
name = "resume-check"
model = "builtin:tiny-reasoner"
seed = 7
[data]
builtin = "arithmetic"
count = 512
[sft]
max_steps = 8
batch_size = 4
max_seq_len = 96
lr = 3e-3
warmup_steps = 2
chat_template = false
[checkpoint]
every = 2
"#;

/// All metric series of a run, by name.
fn all_metrics(ws: &Workspace, run: i64) -> Vec<(String, Vec<(u64, f64)>)> {
    let mut names = ws.metric_names(run).expect("names");
    names.sort();
    names
        .into_iter()
        .filter(|n| !matches!(n.as_str(), "step_time" | "tokens_per_s"))
        .map(|n| {
            let series = ws.metric(run, &n).expect("series");
            (n, series)
        })
        .collect()
}

fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_worker_resumes_to_the_same_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(dir.path(), "small", SMALL_RUN);

    // The uninterrupted reference run.
    let out = studio_in(&ws_dir, &["train", &config.to_string_lossy()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let reference_run = ws
        .runs()
        .expect("runs")
        .iter()
        .map(|r| r.id)
        .max()
        .expect("a run");
    let reference = all_metrics(&ws, reference_run);
    assert_eq!(
        reference
            .iter()
            .find(|m| m.0 == "loss")
            .expect("loss")
            .1
            .len(),
        8
    );

    // The same config, killed at several points and resumed each time.
    let out = studio_in(
        &ws_dir,
        &["train", "--detach", &config.to_string_lossy()],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = ws
        .runs()
        .expect("runs")
        .iter()
        .map(|r| r.id)
        .max()
        .expect("a run");
    for kill_after_step in [3u64, 6] {
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
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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

    let resumed = all_metrics(&ws, run);
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

#[test]
fn nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(dir.path(), "nan", SMALL_RUN);
    let out = studio_in(
        &ws_dir,
        &["train", &config.to_string_lossy()],
        &[("STUDIO_TEST_NAN_AT_STEP", "5")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("NaN") && stderr.contains("step 5") && stderr.contains("step 4"),
        "{stderr}"
    );
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = ws.runs().expect("runs")[0].clone();
    assert_eq!(run.status, RunStatus::Failed);
    let loss: Vec<u64> = ws
        .metric(run.id, "loss")
        .expect("loss")
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(
        loss,
        vec![1, 2, 3, 4],
        "metrics up to the last good step are kept"
    );
    let last = ws
        .latest_checkpoint(run.id)
        .expect("query")
        .expect("a checkpoint");
    assert_eq!(last.step, 4);
    assert!(last.path.join("weights.safetensors").is_file());
}

#[test]
fn bad_config_names_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "bad",
        "model = \"builtin:tiny-reasoner\"\n[data]\nbuiltin = \"arithmetic\"\n[sft]\nbatch_size = 0\n",
    );
    let out = studio_in(
        &dir.path().join("ws"),
        &["train", &config.to_string_lossy()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sft.batch_size") && stderr.contains("bad.toml"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}
