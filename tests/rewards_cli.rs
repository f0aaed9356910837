//! One verdict everywhere: `studio rewards` scores completions from a file as training scores
//! rollouts (the same rewards, parts and verdict as a GRPO step stored for them), and over
//! every rollout of a GRPO step the trace's `correct` is the accuracy reward being positive.

mod common;

use common::{json_stdout, latest_run, studio_in, write_config};
use engine::store::Workspace;

/// The trained tiny reasoner sampling arithmetic: right and wrong answers in one step.
const GRPO_ON_TRAINED: &str = r#"
name = "verdict-check"
algorithm = "grpo"
model = "builtin:tiny-reasoner"
seed = 3
[data]
builtin = "arithmetic"
count = 64
[grpo]
max_steps = 1
prompts_per_step = 4
num_generations = 4
max_completion_length = 64
temperature = 1.0
lr = 1e-4
chat_template = true
[[rewards]]
kind = "accuracy"
[[rewards]]
name = "format"
kind = "format"
pattern = '(?s)<think>.*</think>\s*<answer>.*</answer>'
weight = 0.5
[eval]
count = 2
[checkpoint]
every = 0
"#;

#[test]
fn a_grpo_steps_verdicts_are_its_accuracy_rewards_and_studio_rewards_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(dir.path(), "grpo", GRPO_ON_TRAINED);
    common::assert_success(&studio_in(
        &ws_dir,
        &["train", &config.to_string_lossy()],
        &[],
    ));
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = latest_run(&ws).to_string();
    let step = json_stdout(&studio_in(
        &ws_dir,
        &["traces", &run, "--step", "1", "--json"],
        &[],
    ));
    let rollouts = step["rollouts"].as_array().expect("rollouts");
    assert_eq!(rollouts.len(), 16);
    let mut lines = String::new();
    for r in rollouts {
        let accuracy = r["rewards"]["accuracy"].as_f64().expect("accuracy");
        assert_eq!(
            r["correct"].as_bool(),
            Some(accuracy > 0.0),
            "verdict and accuracy reward disagree on {r}"
        );
        lines.push_str(
            &serde_json::json!({"prompt": r["prompt"], "completion": r["completion"]}).to_string(),
        );
        lines.push('\n');
    }
    let right = rollouts.iter().filter(|r| r["correct"] == true).count();
    assert!(right > 0, "the trained reasoner got none of 16 right");

    // The same completions from a file: the same parts, total and verdict, in file order.
    let completions = dir.path().join("completions.jsonl");
    std::fs::write(&completions, lines).expect("write completions");
    let scored = json_stdout(&studio_in(
        &ws_dir,
        &[
            "rewards",
            "--config",
            &config.to_string_lossy(),
            "--completions",
            &completions.to_string_lossy(),
            "--json",
        ],
        &[],
    ));
    let rows = scored["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), rollouts.len());
    assert_eq!(scored["bad_rows"].as_array().map(Vec::len), Some(0));
    for (i, (row, r)) in rows.iter().zip(rollouts).enumerate() {
        assert_eq!(row["line"], i + 1);
        assert_eq!(row["correct"], r["correct"], "line {}", i + 1);
        assert_eq!(row["rewards"], r["rewards"], "line {}", i + 1);
        let total = row["reward"].as_f64().expect("reward");
        assert!((total - r["reward"].as_f64().expect("reward")).abs() < 1e-12);
    }
}

#[test]
fn studio_rewards_judges_dataset_answers_by_value_and_reports_bad_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(
        dir.path(),
        "run",
        r#"
model = "builtin:tiny-reasoner-init"
algorithm = "grpo"
[data]
path = "train.jsonl"
mapping = { prompt = "question", answer = "gold" }
[grpo]
max_completion_length = 32
[[rewards]]
kind = "accuracy"
[[rewards]]
kind = "length"
weight = 0.5
"#,
    );
    let completions = dir.path().join("completions.jsonl");
    std::fs::write(
        &completions,
        concat!(
            r#"{"prompt": "half?", "completion": "<answer>1/2</answer>", "gold": "0.5"}"#,
            "\n",
            "{\"prompt\": \"sum?\", \"completion\": \"so 1,000 in all\", \"gold\": \"#### 1000\"}",
            "\n",
            r#"{"prompt": "a third?", "completion": "<answer>0.333</answer>", "gold": "1/3"}"#,
            "\n",
            "{broken\n",
            r#"{"prompt": "city?", "completion": "\\boxed{ paris }", "gold": "Paris"}"#,
            "\n",
        ),
    )
    .expect("write completions");
    let args = [
        "rewards",
        "--config",
        &config.to_string_lossy(),
        "--completions",
        &completions.to_string_lossy(),
    ];
    let scored = json_stdout(&studio_in(&ws_dir, &[&args[..], &["--json"]].concat(), &[]));
    let rows = scored["rows"].as_array().expect("rows");
    let verdicts: Vec<(u64, bool)> = rows
        .iter()
        .map(|r| (r["line"].as_u64().expect("line"), r["correct"] == true))
        .collect();
    assert_eq!(verdicts, [(1, true), (2, true), (3, false), (5, true)]);
    for r in rows {
        let accuracy = r["rewards"]["accuracy"].as_f64().expect("accuracy");
        let length = r["rewards"]["length"].as_f64().expect("length");
        assert_eq!(accuracy, if r["correct"] == true { 1.0 } else { 0.0 });
        assert!((-1.0..0.0).contains(&length), "{r}");
        let total = r["reward"].as_f64().expect("reward");
        assert!((total - (accuracy + 0.5 * length)).abs() < 1e-12, "{r}");
    }
    let bad = scored["bad_rows"].as_array().expect("bad rows");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["line"], 4);

    // The table names the skipped line and the file.
    let out = studio_in(&ws_dir, &args, &[]);
    common::assert_success(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("line 4: skipped"), "{table}");
    assert!(
        table.contains("4 rows scored, 3 correct, 1 skipped"),
        "{table}"
    );

    // A config without rewards says which setting is missing.
    let sft = write_config(
        dir.path(),
        "sft",
        "model = \"builtin:tiny-reasoner-init\"\n[data]\nbuiltin = \"arithmetic\"\n",
    );
    let out = studio_in(
        &ws_dir,
        &[
            "rewards",
            "--config",
            &sft.to_string_lossy(),
            "--completions",
            &completions.to_string_lossy(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rewards"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
