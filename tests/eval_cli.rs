//! `studio eval` end to end through the real binary: a short SFT run of the tiny reasoner, its
//! final checkpoint evaluated on the run's own built-in task (the same held-out problems,
//! answers and accuracy as the run's own evaluation), stored and listed, evaluated twice with
//! nothing flipped, flipped problems against the untrained model, a dataset file evaluated row
//! by row, and bad input named.

mod common;

use common::{json_stdout, studio_in, write_config};

use engine::store::{TraceKind, Workspace};
use serde_json::Value;

/// Two SFT steps of the trained tiny reasoner with a small learning rate (a few seconds), a
/// checkpoint after each, and the run's own evaluation of 16 held-out problems at the end. The
/// chat template stays on (the default), as the reasoner was trained, so it answers most
/// problems right.
const SHORT_RUN: &str = r#"
name = "eval-check"
model = "builtin:tiny-reasoner"
seed = 11
[data]
builtin = "arithmetic"
count = 64
[sft]
max_steps = 2
batch_size = 4
max_seq_len = 96
lr = 1e-5
[eval]
count = 16
max_new_tokens = 64
[checkpoint]
every = 1
"#;

fn items(evaluation: &Value) -> &Vec<Value> {
    evaluation["items"].as_array().expect("items")
}

fn as_str(value: &Value) -> &str {
    value.as_str().expect("a string")
}

#[test]
fn eval_of_a_checkpoint_matches_its_run_is_stored_and_lists_flipped_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let config = write_config(dir.path(), "short", SHORT_RUN);
    let out = studio_in(&ws_dir, &["train", &config.to_string_lossy()], &[]);
    common::assert_success(&out);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = common::latest_run(&ws);
    let spec = format!("{run}:2");

    let eval = |extra: &[&str]| -> Value {
        let mut args = vec!["eval", "--checkpoint", &spec, "--builtin", "arithmetic"];
        args.extend_from_slice(extra);
        args.push("--json");
        json_stdout(&studio_in(&ws_dir, &args, &[]))
    };
    let first = eval(&["--count", "16"]);
    assert_eq!(first["checkpoint"], spec.as_str());
    assert_eq!(first["source"], "builtin:arithmetic");
    assert_eq!(first["count"], 16);
    let first_items = items(&first);
    assert_eq!(first_items.len(), 16);

    // The accuracy is the share of correct items, and each verdict agrees with comparing the
    // extracted answer with the reference as integers.
    let correct = first_items
        .iter()
        .filter(|i| i["correct"].as_bool().expect("correct"))
        .count();
    assert_eq!(
        first["accuracy"].as_f64().expect("accuracy"),
        correct as f64 / 16.0
    );
    // Some right, so the comparisons with the run below are not of zeros.
    assert!(correct > 0, "{first}");
    for (index, item) in first_items.iter().enumerate() {
        assert_eq!(item["index"], index);
        let reference: i64 = as_str(&item["answer"]).parse().expect("integer answer");
        let extracted = as_str(&item["extracted"]).trim().parse::<i64>().ok();
        assert_eq!(
            item["correct"].as_bool(),
            Some(extracted == Some(reference)),
            "{item}"
        );
        assert!(
            ["eos", "length"].contains(&as_str(&item["finish_reason"])),
            "{item}"
        );
    }

    // The run's own final evaluation answered the same held-out problems the same way.
    let run_accuracy = common::studio_json([
        "--workspace",
        &ws_dir.to_string_lossy(),
        "metrics",
        &run.to_string(),
        "--name",
        "eval/accuracy",
        "--json",
    ]);
    let series = run_accuracy["series"]["eval/accuracy"]
        .as_array()
        .expect("series");
    let last = series.last().expect("a point");
    assert_eq!(last[0], 2);
    assert_eq!(last[1].as_f64(), first["accuracy"].as_f64());
    let traces = ws.traces(run, 2, TraceKind::Eval).expect("eval traces");
    assert_eq!(traces.len(), 16);
    for (trace, item) in traces.iter().zip(first_items) {
        assert_eq!(trace.prompt, as_str(&item["prompt"]));
        assert_eq!(trace.completion, as_str(&item["completion"]));
        assert_eq!(trace.correct, item["correct"].as_bool());
    }

    // Again, with the count taken from the run's [eval] table: the same items, greedy.
    let second = eval(&[]);
    assert_eq!(second["count"], 16);
    assert_ne!(second["evaluation"], first["evaluation"]);
    assert_eq!(items(&second), first_items);

    // Both are stored.
    let listed = common::studio_json([
        "--workspace",
        &ws_dir.to_string_lossy(),
        "eval",
        "--list",
        "--json",
    ]);
    let listed = listed["evaluations"].as_array().expect("evaluations");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], first["evaluation"]);
    assert_eq!(listed[1]["id"], second["evaluation"]);
    for row in listed {
        assert_eq!(row["checkpoint"], spec.as_str());
        assert_eq!(row["run_id"], run);
        assert_eq!(row["step"], 2);
        assert_eq!(row["seed"], 11);
        assert_eq!(row["accuracy"], first["accuracy"]);
    }

    // Nothing flipped between two identical evaluations.
    let (a, b) = (
        first["evaluation"].to_string(),
        second["evaluation"].to_string(),
    );
    let flipped = common::studio_json([
        "--workspace",
        &ws_dir.to_string_lossy(),
        "eval",
        "--flipped",
        &a,
        &b,
        "--json",
    ]);
    for list in ["right_to_wrong", "wrong_to_right", "only_in_a", "only_in_b"] {
        assert_eq!(flipped[list], serde_json::json!([]), "{list}: {flipped}");
    }

    // Against the untrained model on the same problems (the run's seed and difficulty given by
    // hand): the flipped lists are the items whose verdicts differ, read off both outputs.
    let untrained = json_stdout(&studio_in(
        &ws_dir,
        &[
            "eval",
            "--checkpoint",
            "builtin:tiny-reasoner-init",
            "--builtin",
            "arithmetic",
            "--count",
            "16",
            "--seed",
            "11",
            "--difficulty",
            "1",
            "--json",
        ],
        &[],
    ));
    let verdicts = |e: &Value| -> Vec<bool> {
        items(e)
            .iter()
            .map(|i| i["correct"].as_bool().expect("correct"))
            .collect()
    };
    let (before, after) = (verdicts(&first), verdicts(&untrained));
    let expected = |from: bool| -> Vec<usize> {
        (0..16)
            .filter(|&i| before[i] == from && after[i] != from)
            .collect()
    };
    let flipped = common::studio_json([
        "--workspace",
        &ws_dir.to_string_lossy(),
        "eval",
        "--flipped",
        &a,
        &untrained["evaluation"].to_string(),
        "--json",
    ]);
    let indices = |list: &str| -> Vec<usize> {
        flipped[list]
            .as_array()
            .expect("list")
            .iter()
            .map(|f| {
                assert_eq!(f["index"], f["index_b"], "same problem, same index");
                f["index"].as_u64().expect("index") as usize
            })
            .collect()
    };
    assert_eq!(indices("right_to_wrong"), expected(true));
    assert_eq!(indices("wrong_to_right"), expected(false));
    assert!(!expected(true).is_empty(), "the untrained model loses some");

    // A dataset file: its rows in order, with their reference answers.
    let file = dir.path().join("sums.jsonl");
    let rows = [("2+3=", "5"), ("(4+4)*2=", "16"), ("9-7=", "2")];
    let text: String = rows
        .iter()
        .map(|(q, a)| format!("{}\n", serde_json::json!({"question": q, "answer": a})))
        .collect();
    std::fs::write(&file, text).expect("write dataset");
    let on_file = json_stdout(&studio_in(
        &ws_dir,
        &[
            "eval",
            "--checkpoint",
            &spec,
            "--data",
            &file.to_string_lossy(),
            "--json",
        ],
        &[],
    ));
    assert_eq!(on_file["count"], 3);
    let file_items = items(&on_file);
    for ((question, answer), item) in rows.iter().zip(file_items) {
        assert_eq!(item["prompt"], *question);
        assert_eq!(item["answer"], *answer);
    }

    // Bad input names what is wrong.
    let failure = |args: &[&str]| -> String {
        let out = studio_in(&ws_dir, args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let stderr = failure(&["eval", "--checkpoint", &spec, "--builtin", "sudoku"]);
    assert!(
        stderr.contains("builtin") && stderr.contains("sudoku") && stderr.contains("countdown"),
        "{stderr}"
    );
    let missing = dir.path().join("missing.jsonl");
    let stderr = failure(&[
        "eval",
        "--checkpoint",
        &spec,
        "--data",
        &missing.to_string_lossy(),
    ]);
    assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");
    let stderr = failure(&[
        "eval",
        "--checkpoint",
        &format!("{run}:7"),
        "--builtin",
        "arithmetic",
    ]);
    assert!(
        stderr.contains(&format!("run {run} has no checkpoint at step 7"))
            && stderr.contains("1, 2"),
        "{stderr}"
    );
    let stderr = failure(&["eval", "--flipped", &a, &on_file["evaluation"].to_string()]);
    assert!(
        stderr.contains("different problems") && stderr.contains("builtin:arithmetic"),
        "{stderr}"
    );
    // A failed evaluation stores nothing.
    assert_eq!(ws.evaluations(None).expect("list").len(), 4);
}
