//! `studio data` through the real binary: the exact `inspect --json` contract on a shared dataset
//! and on a broken JSONL, the error for a missing file, and built-in task samples that inspect
//! recognises.

mod common;

use serde_json::json;

use common::{shared_file, studio, studio_json};

const CONTRACT_KEYS: [&str; 7] = [
    "path", "format", "rows", "bad_rows", "columns", "schema", "roles",
];

fn assert_contract_keys(report: &serde_json::Value) {
    let keys: Vec<&str> = report
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = CONTRACT_KEYS.to_vec();
    expected.sort_unstable();
    let mut keys_sorted = keys.clone();
    keys_sorted.sort_unstable();
    assert_eq!(keys_sorted, expected, "exactly the contract's keys");
}

#[test]
fn inspect_json_on_a_shared_dataset() {
    let Some(path) = shared_file("datasets/reasoning-gym-gsm_symbolic.jsonl") else {
        return;
    };
    let report = studio_json([
        "data".as_ref(),
        "inspect".as_ref(),
        path.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_contract_keys(&report);
    assert_eq!(
        report,
        json!({
            "path": path.display().to_string(),
            "format": "jsonl",
            "rows": 200,
            "bad_rows": [],
            "columns": ["question", "answer", "cot"],
            "schema": "question_answer",
            "roles": {"prompt": "question", "reasoning": "cot", "answer": "answer", "messages": null, "image": null},
        })
    );
}

#[test]
fn inspect_json_on_easy_vqa_has_the_image_role() {
    let Some(path) = shared_file("datasets/easy-vqa/questions.jsonl") else {
        return;
    };
    let report = studio_json([
        "data".as_ref(),
        "inspect".as_ref(),
        path.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(report["rows"], 1470);
    assert_eq!(report["schema"], "question_answer");
    assert_eq!(
        report["roles"],
        json!({"prompt": "question", "reasoning": null, "answer": "answer", "messages": null, "image": "image"})
    );
}

#[test]
fn inspect_json_on_a_broken_jsonl_lists_the_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.jsonl");
    let text = [
        r#"{"instruction": "Add 2 and 3.", "output": "5"}"#,
        r#"{"instruction": "Add 1 and 1.", "output": "#,
        "",
        r#""just a string""#,
        r#"{"instruction": "Add 4 and 4.", "input": "", "output": "8"}"#,
    ]
    .join("\n");
    std::fs::write(&path, text).expect("write");
    let report = studio_json([
        "data".as_ref(),
        "inspect".as_ref(),
        path.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_contract_keys(&report);
    assert_eq!(report["path"], path.display().to_string());
    assert_eq!(report["format"], "jsonl");
    assert_eq!(report["rows"], 2);
    assert_eq!(report["columns"], json!(["instruction", "output", "input"]));
    assert_eq!(report["schema"], "alpaca");
    assert_eq!(
        report["roles"],
        json!({"prompt": "instruction", "reasoning": null, "answer": "output", "messages": null, "image": null})
    );
    let bad = report["bad_rows"].as_array().expect("bad_rows array");
    let lines: Vec<u64> = bad
        .iter()
        .map(|b| b["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, [2, 4]);
    for row in bad {
        assert_eq!(
            row.as_object().map(|o| o.len()),
            Some(2),
            "{{line, message}}"
        );
        assert!(!row["message"].as_str().expect("message").is_empty());
    }

    // The readable summary names the bad lines too.
    let out = studio(["data".as_ref(), "inspect".as_ref(), path.as_os_str()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("line 2:") && text.contains("line 4:"),
        "{text}"
    );
}

#[test]
fn inspect_a_missing_file_fails_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("no-such-data.jsonl");
    let out = studio([
        "data".as_ref(),
        "inspect".as_ref(),
        path.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-data.jsonl"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn builtin_tasks_list_and_sample() {
    let list = studio_json(["data", "builtin", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["arithmetic", "countdown", "linear_equation"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("countdown.jsonl");
    let args = |path: &std::path::Path| {
        vec![
            "data".into(),
            "builtin".into(),
            "--task".into(),
            "countdown".into(),
            "--count".into(),
            "25".into(),
            "--seed".into(),
            "7".into(),
            "--out".into(),
            path.as_os_str().to_owned(),
        ]
    };
    let out = studio(args(&out_path));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = studio_json([
        "data".as_ref(),
        "inspect".as_ref(),
        out_path.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(report["rows"], 25);
    assert_eq!(report["schema"], "question_answer");
    assert_eq!(report["roles"]["reasoning"], "cot");

    // The same seed writes the same file.
    let again = dir.path().join("again.jsonl");
    assert!(studio(args(&again)).status.success());
    assert_eq!(
        std::fs::read(&out_path).expect("read"),
        std::fs::read(&again).expect("read")
    );

    let out = studio(["data", "builtin", "--task", "sudoku"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sudoku"));
}
