//! Runs from the command line, end to end through the real binary and worker processes: the
//! tiny reasoner learns a built-in task, a worker killed with SIGKILL resumes to exactly the
//! uninterrupted run's metrics, a NaN loss stops the run and keeps the last good checkpoint,
//! bad configs name the setting.

mod common;

use common::{studio_in, wait_for, write_config};

use std::process::Command;
use std::time::Duration;

use engine::store::{RunStatus, Workspace};

const SMALL_RUN: &str = r#"
name = "resume-check"
model = "builtin:tiny-reasoner-init"
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

#[test]
fn killed_worker_resumes_to_the_same_metrics() {
    common::kill_and_resume_matches(SMALL_RUN, &[3, 6], 8, &["step_time", "tokens_per_s"]);
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
        "model = \"builtin:tiny-reasoner-init\"\n[data]\nbuiltin = \"arithmetic\"\n[sft]\nbatch_size = 0\n",
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

/// Held-out accuracy of the run, by step.
fn eval_accuracy(ws: &Workspace, run: i64) -> Vec<(u64, f64)> {
    ws.metric(run, "eval/accuracy").expect("eval/accuracy")
}

/// Home's Try it, exactly as shipped: held-out accuracy climbs from about 0 to at least 0.5 by
/// its last step (the file's header states the spread over six seeds: 0.66 at worst).
#[test]
fn the_try_it_run_reaches_half_accuracy_by_its_last_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = common::repo_root().join("assets/runs/try-it.toml");
    let out = studio_in(&ws_dir, &["train", &config.to_string_lossy()], &[]);
    common::assert_success(&out);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let acc = eval_accuracy(&ws, 1);
    let steps: Vec<u64> = acc.iter().map(|p| p.0).collect();
    assert_eq!(steps, [0, 50, 100, 150, 200, 250, 300]);
    eprintln!("Try it's held-out accuracy by step: {acc:?}");
    let (first, last) = (acc[0].1, acc[acc.len() - 1].1);
    assert!(first <= 0.05, "the untrained model solves {first}");
    assert!(last >= 0.5, "Try it ends at {last}, below 0.5: {acc:?}");
}

#[test]
fn tiny_reasoner_learns_arithmetic_from_scratch() {
    // 200 steps of 16 × 128 tokens: about a minute on two cores.
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(
        dir.path(),
        "learn",
        r#"
name = "tiny learns arithmetic"
model = "builtin:tiny-reasoner-init"
seed = 3
[data]
builtin = "arithmetic"
difficulty = 0
count = 20000
[sft]
max_steps = 200
batch_size = 16
max_seq_len = 128
lr = 3e-3
warmup_steps = 20
chat_template = false
[eval]
every = 200
count = 64
max_new_tokens = 40
[checkpoint]
every = 0
"#,
    );
    let out = studio_in(&ws_dir, &["train", &config.to_string_lossy()], &[]);
    common::assert_success(&out);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let acc = eval_accuracy(&ws, 1);
    assert_eq!(acc.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 200]);
    let (before, after) = (acc[0].1, acc[1].1);
    eprintln!("held-out accuracy on 64 problems: {before:.3} at step 0 → {after:.3} at step 200");
    assert!(
        before <= 0.05,
        "an untrained model should not solve these: {before}"
    );
    assert!(
        after >= 0.25,
        "after 200 steps the model should solve a quarter or more: {after}"
    );
    let loss = ws.metric(1, "loss").expect("loss");
    assert!(
        loss.last().expect("last").1 < loss[0].1 * 0.3,
        "loss falls: {loss:?}"
    );
}

#[test]
fn lora_on_smollm2_lowers_the_loss_and_exports_peft_and_hf() {
    let Some(gguf) = common::smollm2_gguf() else {
        return;
    };
    let Some(data) = common::shared_file("datasets/reasoning-gym-gsm_symbolic.jsonl") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(
        dir.path(),
        "lora",
        &format!(
            r#"
name = "smollm2 lora gsm"
model = "{}"
[data]
path = "{}"
holdout = 4
[sft]
max_steps = 6
batch_size = 2
max_seq_len = 256
lr = 2e-3
[sft.lora]
rank = 16
alpha = 32
[eval]
count = 2
max_new_tokens = 8
[checkpoint]
every = 0
"#,
            gguf.display(),
            data.display()
        ),
    );
    let out = studio_in(&ws_dir, &["train", &config.to_string_lossy()], &[]);
    common::assert_success(&out);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let loss: Vec<f64> = ws
        .metric(1, "loss")
        .expect("loss")
        .iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(loss.len(), 6);
    let first: f64 = loss[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = loss[3..].iter().sum::<f64>() / 3.0;
    eprintln!("LoRA r16 loss by step: {loss:?}");
    assert!(last < first, "the loss falls over the run: {loss:?}");
    let ckpt = ws
        .latest_checkpoint(1)
        .expect("query")
        .expect("final checkpoint");
    assert_eq!((ckpt.step, ckpt.kind.as_str()), (6, "lora"));

    let peft = dir.path().join("peft");
    let hf = dir.path().join("hf");
    for (format, out_dir) in [("peft", &peft), ("hf", &hf)] {
        let out = studio_in(
            &ws_dir,
            &[
                "export",
                "--checkpoint",
                &ckpt.id.to_string(),
                "--format",
                format,
                "--out",
                &out_dir.to_string_lossy(),
            ],
            &[],
        );
        common::assert_success(&out);
    }
    let adapter: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(peft.join("adapter_config.json")).expect("read"),
    )
    .expect("json");
    assert_eq!(adapter["peft_type"], "LORA");
    assert_eq!(adapter["r"], 16);
    let names = engine::formats::safetensors::SafetensorsWeights::open_file(
        &peft.join("adapter_model.safetensors"),
    )
    .expect("adapter weights")
    .summary();
    let (shape_a, shape_b) = (
        &names["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].1,
        &names["base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight"].1,
    );
    assert_eq!(
        (shape_a.as_slice(), shape_b.as_slice()),
        (&[16, 576][..], &[192, 16][..])
    );
    assert_eq!(names.len(), 30 * 4 * 2);

    let text = "Question: Ana has 3 apples and buys 4 more. How many? Answer: 7";
    let scores = |args: &[&str]| -> Vec<f64> {
        let mut all = vec!["score", "--text", text, "--json"];
        all.extend_from_slice(args);
        common::studio_json(all)["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .skip(1)
            .map(|t| t["logprob"].as_f64().expect("logprob"))
            .collect()
    };
    let gguf_s = gguf.to_string_lossy().into_owned();
    let with_adapter = scores(&["--model", &gguf_s, "--adapter", &peft.to_string_lossy()]);
    let merged = scores(&["--model", &hf.to_string_lossy()]);
    let base = scores(&["--model", &gguf_s]);
    let max_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    assert!(
        max_diff(&with_adapter, &merged) < 1e-4,
        "PEFT adapter and merged HF folder agree"
    );
    assert!(
        max_diff(&with_adapter, &base) > 1e-2,
        "the adapter changes the model"
    );
}

#[test]
fn following_a_run_whose_worker_dies_reports_it_and_the_run_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(dir.path(), "dies", SMALL_RUN);
    let follower = Command::new(env!("CARGO_BIN_EXE_studio"))
        .arg("--workspace")
        .arg(&ws_dir)
        .args(["train", &config.to_string_lossy()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("studio train starts");
    let ws = wait_for(Duration::from_secs(60), || {
        Workspace::open(&ws_dir)
            .ok()
            .filter(|w| !w.runs().unwrap_or_default().is_empty())
    });
    let pid = wait_for(Duration::from_secs(300), || {
        let r = ws.run(1).ok()?;
        (r.last_step.unwrap_or(0) >= 1)
            .then_some(r.worker_pid)
            .flatten()
    });
    assert!(
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let out = follower.wait_with_output().expect("follower ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("exited") && stderr.contains("studio resume 1"),
        "{stderr}"
    );
    assert_eq!(ws.run(1).expect("run").status, RunStatus::Failed);
    let out = studio_in(&ws_dir, &["resume", "1"], &[]);
    common::assert_success(&out);
    assert_eq!(ws.run(1).expect("run").status, RunStatus::Completed);
    let steps: Vec<u64> = ws
        .metric(1, "loss")
        .expect("loss")
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
}
