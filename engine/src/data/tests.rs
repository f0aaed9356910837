//! Tests for opening datasets: every format, every schema, bad rows, and the shared real datasets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::*;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write fixture");
    path
}

fn open(path: &Path) -> Dataset {
    Dataset::open(path, None).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn roles(
    prompt: Option<&str>,
    reasoning: Option<&str>,
    answer: Option<&str>,
    messages: Option<&str>,
    image: Option<&str>,
) -> RoleMapping {
    let s = |v: Option<&str>| v.map(str::to_string);
    RoleMapping {
        prompt: s(prompt),
        reasoning: s(reasoning),
        answer: s(answer),
        messages: s(messages),
        image: s(image),
    }
}

#[test]
fn jsonl_of_every_schema_is_recognised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = [
        (
            "gsm8k",
            json!({"question": "Tom has 3 apples and buys 2. How many?", "answer": "3+2=5\n#### 5"}),
            Schema::Gsm8k,
        ),
        (
            "math",
            json!({"problem": "What is 1/2 + 1/2?", "solution": "It is $\\boxed{1}$.", "level": "Level 1"}),
            Schema::Math,
        ),
        (
            "messages",
            json!({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}),
            Schema::Messages,
        ),
        (
            "sharegpt",
            json!({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}),
            Schema::Sharegpt,
        ),
        (
            "alpaca",
            json!({"instruction": "Add.", "input": "2 and 3", "output": "5"}),
            Schema::Alpaca,
        ),
        (
            "qa",
            json!({"question": "2+3?", "answer": "5", "cot": "2+3=5"}),
            Schema::QuestionAnswer,
        ),
        (
            "preference",
            json!({"prompt": "2+3?", "chosen": "5", "rejected": "6"}),
            Schema::Preference,
        ),
        ("unknown", json!({"text": "hello"}), Schema::Unknown),
    ];
    for (name, row, schema) in rows {
        let path = write(
            dir.path(),
            &format!("{name}.jsonl"),
            &format!("{row}\n{row}\n"),
        );
        let ds = open(&path);
        assert_eq!(ds.schema(), schema, "{name}");
        assert_eq!(ds.format(), FileFormat::Jsonl);
        assert_eq!(ds.len(), 2, "{name}");
        assert!(ds.bad_rows().is_empty());
        let example = ds.example(1).expect("example");
        match schema {
            Schema::Gsm8k => {
                assert_eq!(example.reasoning.as_deref(), Some("3+2=5"));
                assert_eq!(example.answer.as_deref(), Some("5"));
            }
            Schema::Math => {
                assert_eq!(example.reasoning.as_deref(), Some("It is $\\boxed{1}$."));
                assert_eq!(example.answer.as_deref(), Some("1"));
            }
            Schema::Messages => {
                assert_eq!(example.messages.len(), 3);
                assert_eq!(example.prompt, "2+2?");
                assert_eq!(example.answer.as_deref(), Some("4"));
            }
            Schema::Sharegpt => {
                assert_eq!(
                    example.messages,
                    vec![
                        ("user".to_string(), "Hi".to_string()),
                        ("assistant".to_string(), "Hello".to_string())
                    ]
                );
                assert_eq!(example.prompt, "Hi");
            }
            Schema::Alpaca => {
                assert_eq!(example.prompt, "Add.\n\n2 and 3");
                assert_eq!(example.answer.as_deref(), Some("5"));
            }
            Schema::QuestionAnswer => {
                assert_eq!(example.prompt, "2+3?");
                assert_eq!(example.reasoning.as_deref(), Some("2+3=5"));
            }
            Schema::Preference => {
                assert_eq!(example.prompt, "2+3?");
                assert_eq!(example.answer.as_deref(), Some("5"));
            }
            Schema::Unknown => {
                assert_eq!(ds.roles(), &RoleMapping::default());
                assert_eq!(example.prompt, "");
            }
        }
    }
}

#[test]
fn broken_jsonl_lines_are_reported_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = [
        r#"{"question": "a", "answer": "1"}"#,
        r#"{"question": "b", "answer": "2""#, // 2: unterminated object
        "",                                   // 3: blank, skipped silently
        r#"[1, 2, 3]"#,                       // 4: not an object
        r#"{"question": "c", "answer": "3"}"#,
        "   ",                                          // 6: blank
        r#"not json at all"#,                           // 7
        r#"{"question": "d", "answer": "4"} trailing"#, // 8
        r#"{"question": "e", "answer": "5"}"#,
    ]
    .join("\n");
    let path = write(dir.path(), "broken.jsonl", &text);
    let ds = open(&path);
    let lines: Vec<u64> = ds.bad_rows().iter().map(|b| b.line).collect();
    assert_eq!(lines, vec![2, 4, 7, 8]);
    assert!(ds.bad_rows()[1].message.contains("not a JSON object"));
    assert_eq!(ds.len(), 3);
    let prompts: Vec<String> = (0..ds.len())
        .map(|i| ds.example(i).expect("example").prompt)
        .collect();
    assert_eq!(prompts, ["a", "c", "e"]);
    assert_eq!(ds.schema(), Schema::QuestionAnswer);
    assert!(matches!(
        ds.row(3),
        Err(DataError::RowOutOfRange {
            index: 3,
            len: 3,
            ..
        })
    ));
}

#[test]
fn jsonl_with_crlf_bom_and_no_final_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "\u{feff}{\"question\": \"q1\", \"answer\": \"1\"}\r\n{\"question\": \"q2\", \"answer\": \"2\", \"extra\": true}";
    let path = write(dir.path(), "crlf.jsonl", text);
    let ds = open(&path);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.columns(), ["question", "answer", "extra"]);
    assert_eq!(ds.row(1).expect("row")["extra"], json!(true));
    assert_eq!(ds.example(0).expect("example").prompt, "q1");
}

#[test]
fn json_array_and_keyed_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let array = write(
        dir.path(),
        "array.json",
        "[\n  {\"problem\": \"p1\", \"solution\": \"\\\\boxed{2}\"},\n  {\"problem\": \"p2\", \"solution\": \"x \\\\boxed{3}\"},\n  7\n]\n",
    );
    let ds = open(&array);
    assert_eq!(ds.format(), FileFormat::Json);
    assert_eq!(ds.schema(), Schema::Math);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.bad_rows().len(), 1);
    assert_eq!(ds.bad_rows()[0].line, 4);
    assert_eq!(ds.example(1).expect("example").answer.as_deref(), Some("3"));

    let splits = write(
        dir.path(),
        "splits.json",
        r#"{"train": [{"instruction": "i1", "output": "o1"}, {"instruction": "i2", "output": "o2"}],
 "test": [{"instruction": "i3", "output": "o3"}]}"#,
    );
    let ds = open(&splits);
    assert_eq!(ds.schema(), Schema::Alpaca);
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.example(2).expect("example").prompt, "i3");

    let by_id = write(
        dir.path(),
        "by_id.json",
        r#"{"a1": {"prompt": "p", "chosen": "c", "rejected": "r"}, "a2": {"prompt": "p2", "chosen": "c2", "rejected": "r2"}, "version": 3}"#,
    );
    let ds = open(&by_id);
    assert_eq!(ds.schema(), Schema::Preference);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.bad_rows().len(), 1);
    assert_eq!(
        ds.example(1).expect("example").answer.as_deref(),
        Some("c2")
    );

    // JSON Lines under a .json name reads as JSONL.
    let lines = write(
        dir.path(),
        "lines.json",
        "{\"question\": \"q\", \"answer\": \"a\"}\n{\"question\": \"q\", \"answer\": \"b\"}\n",
    );
    let ds = open(&lines);
    assert_eq!(ds.format(), FileFormat::Jsonl);
    assert_eq!(ds.len(), 2);

    // A broken structure fails with its line.
    let broken = write(dir.path(), "broken.json", "[\n{\"a\": 1}\n{\"a\": 2}\n]");
    let err = Dataset::open(&broken, None).expect_err("missing comma");
    assert!(matches!(err, DataError::Syntax { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("broken.json"));
}

#[test]
fn csv_and_tsv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv_path = write(
        dir.path(),
        "qa.csv",
        "question,answer,cot\n\"What is 2+3, really?\",5,\"2+3=5\"\nq2,6\n\n\"multi\nline\",7,s\n",
    );
    let ds = open(&csv_path);
    assert_eq!(ds.format(), FileFormat::Csv);
    assert_eq!(ds.schema(), Schema::QuestionAnswer);
    assert_eq!(ds.columns(), ["question", "answer", "cot"]);
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.bad_rows().len(), 1);
    assert_eq!(ds.bad_rows()[0].line, 3);
    let e = ds.example(0).expect("example");
    assert_eq!(e.prompt, "What is 2+3, really?");
    assert_eq!(e.reasoning.as_deref(), Some("2+3=5"));
    assert_eq!(ds.example(1).expect("example").prompt, "multi\nline");

    let tsv_path = write(
        dir.path(),
        "chat.tsv",
        "messages\tid\n[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]\t1\n",
    );
    let ds = open(&tsv_path);
    assert_eq!(ds.format(), FileFormat::Csv);
    assert_eq!(ds.schema(), Schema::Messages);
    let e = ds.example(0).expect("example");
    assert_eq!(e.messages.len(), 2);
    assert_eq!(e.answer.as_deref(), Some("yo"));
}

fn write_parquet(path: &Path, compression: parquet::basic::Compression) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    let schema = Arc::new(
        parse_message_type(
            "message schema { REQUIRED BYTE_ARRAY question (UTF8); REQUIRED BYTE_ARRAY answer (UTF8); }",
        )
        .expect("schema"),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let file = std::fs::File::create(path).expect("create");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    // Two row groups of 3 and 2 rows.
    for group in [0..3, 3..5] {
        let questions: Vec<ByteArray> = group
            .clone()
            .map(|i| ByteArray::from(format!("Janet has {i} ducks.").as_str()))
            .collect();
        let answers: Vec<ByteArray> = group
            .map(|i| ByteArray::from(format!("{i}*2={}\n#### {}", i * 2, i * 2).as_str()))
            .collect();
        let mut row_group = writer.next_row_group().expect("row group");
        for values in [&questions, &answers] {
            let mut column = row_group.next_column().expect("column").expect("present");
            column
                .typed::<ByteArrayType>()
                .write_batch(values, None, None)
                .expect("write");
            column.close().expect("close column");
        }
        row_group.close().expect("close group");
    }
    writer.close().expect("close");
}

#[test]
fn parquet_with_snappy_and_zstd() {
    use parquet::basic::{Compression, ZstdLevel};
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, compression) in [
        ("snappy.parquet", Compression::SNAPPY),
        ("zstd.parquet", Compression::ZSTD(ZstdLevel::default())),
    ] {
        let path = dir.path().join(name);
        write_parquet(&path, compression);
        let ds = open(&path);
        assert_eq!(ds.format(), FileFormat::Parquet);
        assert_eq!(ds.columns(), ["question", "answer"]);
        assert_eq!(ds.len(), 5);
        assert_eq!(ds.schema(), Schema::Gsm8k, "{name}");
        // Out of order across row groups.
        for i in [4, 0, 3, 2] {
            let e = ds.example(i).expect("example");
            assert_eq!(e.prompt, format!("Janet has {i} ducks."));
            assert_eq!(e.answer, Some((i * 2).to_string()));
            assert_eq!(e.reasoning, Some(format!("{i}*2={}", i * 2)));
        }
    }
    let not_parquet = write(dir.path(), "fake.parquet", "PAR1 not really");
    let err = Dataset::open(&not_parquet, None).expect_err("corrupt");
    assert!(err.to_string().contains("fake.parquet"), "{err}");
}

#[test]
fn explicit_mapping_maps_an_unknown_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "custom.jsonl",
        "{\"q\": \"2+2?\", \"why\": \"2+2=4\", \"final\": 4, \"pic\": \"img/a.png\"}\n",
    );
    assert_eq!(open(&path).schema(), Schema::Unknown);
    let mapping = roles(Some("q"), Some("why"), Some("final"), None, Some("pic"));
    let ds = Dataset::open(&path, Some(&mapping)).expect("open");
    assert_eq!(ds.roles(), &mapping);
    let e = ds.example(0).expect("example");
    assert_eq!(e.prompt, "2+2?");
    assert_eq!(e.reasoning.as_deref(), Some("2+2=4"));
    assert_eq!(e.answer.as_deref(), Some("4"));
    assert_eq!(
        e.image.map(PathBuf::from),
        Some(dir.path().join("img/a.png"))
    );

    let wrong = roles(Some("question"), None, None, None, None);
    let err = Dataset::open(&path, Some(&wrong)).expect_err("missing column");
    assert!(matches!(
        &err,
        DataError::MissingColumn {
            setting: "prompt",
            ..
        }
    ));
    assert!(err.to_string().contains("custom.jsonl"));
    let mapping: RoleMapping =
        serde_json::from_value(json!({"prompt": "q"})).expect("partial mapping deserializes");
    assert_eq!(mapping.prompt.as_deref(), Some("q"));
}

#[test]
fn missing_and_empty_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.jsonl");
    let err = Dataset::open(&missing, None).expect_err("missing");
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("nope.jsonl"));
    let err = Dataset::open(dir.path(), None).expect_err("a folder");
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    let empty = write(dir.path(), "empty.jsonl", "");
    let ds = open(&empty);
    assert!(ds.is_empty());
    assert_eq!(ds.schema(), Schema::Unknown);
}

#[test]
fn jsonl_index_opens_many_rows_and_reads_any() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::new();
    for i in 0..20_000 {
        text.push_str(&format!(
            "{{\"question\": \"q{i}\", \"answer\": \"{i}\"}}\n"
        ));
    }
    let path = write(dir.path(), "many.jsonl", &text);
    let ds = open(&path);
    assert_eq!(ds.len(), 20_000);
    assert_eq!(ds.example(12_345).expect("example").prompt, "q12345");
}

/// `../shared/datasets/<name>` (see [`crate::test_files`]).
fn shared_dataset(name: &str) -> Option<PathBuf> {
    crate::test_files::shared_file(&format!("datasets/{name}"))
}

#[test]
fn shared_reasoning_gym_files_are_question_answer() {
    let tasks = [
        "basic_arithmetic",
        "chain_sum",
        "countdown",
        "fraction_simplification",
        "gsm_symbolic",
        "knights_knaves",
        "prime_factorization",
        "simple_equations",
    ];
    for task in tasks {
        let Some(path) = shared_dataset(&format!("reasoning-gym-{task}.jsonl")) else {
            return;
        };
        let ds = open(&path);
        assert_eq!(ds.schema(), Schema::QuestionAnswer, "{task}");
        assert_eq!(ds.len(), 200, "{task}");
        assert!(ds.bad_rows().is_empty(), "{task}");
        let has_cot = task == "gsm_symbolic";
        assert_eq!(
            ds.roles(),
            &roles(
                Some("question"),
                has_cot.then_some("cot"),
                Some("answer"),
                None,
                None
            ),
            "{task}"
        );
        let e = ds.example(199).expect("example");
        assert!(!e.prompt.is_empty());
        assert!(e.answer.is_some());
        assert_eq!(e.reasoning.is_some(), has_cot);
    }
}

#[test]
fn shared_easy_vqa_has_an_image_role() {
    let Some(path) = shared_dataset("easy-vqa/questions.jsonl") else {
        return;
    };
    let ds = open(&path);
    assert_eq!(ds.schema(), Schema::QuestionAnswer);
    assert_eq!(ds.len(), 1470);
    assert_eq!(
        ds.roles(),
        &roles(Some("question"), None, Some("answer"), None, Some("image"))
    );
    let image = ds.example(0).expect("example").image.expect("image");
    assert!(Path::new(&image).is_file(), "{image} resolves to a file");
}

#[test]
fn countdown_answers_in_shared_data_verify() {
    let Some(path) = shared_dataset("reasoning-gym-countdown.jsonl") else {
        return;
    };
    let ds = open(&path);
    for i in 0..ds.len() {
        let e = ds.example(i).expect("example");
        // "Find a way to make 169 using all of these numbers: 83, 94, 74, 90, 40." or
        // "Using all the numbers 98, 89, 42, 88, create an expression that equals 121."
        let first_line = e.prompt.lines().next().unwrap_or_default();
        let mut numbers: Vec<i64> = first_line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|w| w.parse().ok())
            .collect();
        let target = if first_line.starts_with("Using") {
            numbers.pop()
        } else {
            Some(numbers.remove(0))
        }
        .expect("target");
        let answer = e.answer.expect("answer");
        assert_eq!(
            builtin::countdown_check(&answer, &numbers, target),
            Ok(target),
            "{answer}"
        );
    }
}
