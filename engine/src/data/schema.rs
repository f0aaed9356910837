//! Recognising a dataset's layout from its column names (and a few sample rows) and mapping its
//! columns to training roles: prompt, reasoning, answer, messages, image.

use serde_json::{Map, Value};

/// Which column plays which role; every field is a column name. Detected for known schemas,
/// given by the run configuration (and saved by the GUI) for unknown ones.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RoleMapping {
    /// The question or instruction shown to the model.
    pub prompt: Option<String>,
    /// Worked steps / chain of thought. May name the same column as `answer` (GSM8K's `####`).
    pub reasoning: Option<String>,
    /// The final answer. For preference data, the chosen completion.
    pub answer: Option<String>,
    /// A list of chat messages (`{role, content}` or ShareGPT's `{from, value}`).
    pub messages: Option<String>,
    /// An image: a path relative to the file, a `{bytes, path}` struct, or base64.
    pub image: Option<String>,
}

/// The layouts the studio recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    /// `question` + `answer` whose answer ends in `#### <final answer>`.
    Gsm8k,
    /// `problem` + `solution` with the final answer in `\boxed{}`.
    Math,
    /// A `messages` column of `{role, content}` lists.
    Messages,
    /// A `conversations` column of `{from, value}` lists.
    Sharegpt,
    /// `instruction` (+ optional `input`) + `output`.
    Alpaca,
    /// `question` + `answer`, optional `cot` (reasoning) and `image`.
    QuestionAnswer,
    /// `prompt` + `chosen` + `rejected` (the chosen completion is the answer role).
    Preference,
    /// Nothing recognised: roles come from an explicit [`RoleMapping`].
    Unknown,
}

impl Schema {
    /// The snake_case name used in JSON and configs.
    pub fn name(self) -> &'static str {
        match self {
            Schema::Gsm8k => "gsm8k",
            Schema::Math => "math",
            Schema::Messages => "messages",
            Schema::Sharegpt => "sharegpt",
            Schema::Alpaca => "alpaca",
            Schema::QuestionAnswer => "question_answer",
            Schema::Preference => "preference",
            Schema::Unknown => "unknown",
        }
    }
}

/// What detection found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Detected {
    pub schema: Schema,
    pub roles: RoleMapping,
    /// Alpaca's optional `input` column, appended to the prompt.
    pub input_column: Option<String>,
}

/// Columns that hold worked reasoning beside `question`/`answer`, in order of preference.
const REASONING_COLUMNS: [&str; 4] = ["cot", "reasoning", "rationale", "explanation"];
/// Columns that hold an image, in order of preference.
const IMAGE_COLUMNS: [&str; 3] = ["image", "image_path", "img"];

/// Detects the schema from the column names and up to a few sample rows.
pub(crate) fn detect(columns: &[String], samples: &[Map<String, Value>]) -> Detected {
    let has = |name: &str| columns.iter().any(|c| c == name);
    let col = |name: &str| has(name).then(|| name.to_string());
    let first_of = |names: &[&str]| names.iter().find(|n| has(n)).map(|n| n.to_string());
    let detected = |schema, roles| Detected {
        schema,
        roles,
        input_column: None,
    };

    if has("messages") {
        return detected(
            Schema::Messages,
            RoleMapping {
                messages: col("messages"),
                image: first_of(&IMAGE_COLUMNS).or_else(|| col("images")),
                ..RoleMapping::default()
            },
        );
    }
    if has("conversations") {
        return detected(
            Schema::Sharegpt,
            RoleMapping {
                messages: col("conversations"),
                image: first_of(&IMAGE_COLUMNS).or_else(|| col("images")),
                ..RoleMapping::default()
            },
        );
    }
    if has("chosen") && has("rejected") {
        return detected(
            Schema::Preference,
            RoleMapping {
                prompt: col("prompt"),
                answer: col("chosen"),
                ..RoleMapping::default()
            },
        );
    }
    if has("problem") && has("solution") {
        return detected(
            Schema::Math,
            RoleMapping {
                prompt: col("problem"),
                reasoning: col("solution"),
                answer: col("answer"),
                image: first_of(&IMAGE_COLUMNS),
                ..RoleMapping::default()
            },
        );
    }
    if has("instruction") && has("output") {
        return Detected {
            schema: Schema::Alpaca,
            roles: RoleMapping {
                prompt: col("instruction"),
                answer: col("output"),
                ..RoleMapping::default()
            },
            input_column: col("input"),
        };
    }
    if has("question") && has("answer") {
        let answers: Vec<&str> = samples
            .iter()
            .filter_map(|row| row.get("answer").and_then(Value::as_str))
            .collect();
        let with_marker = answers.iter().filter(|a| a.contains("####")).count();
        if !answers.is_empty() && with_marker * 2 >= answers.len() {
            return detected(
                Schema::Gsm8k,
                RoleMapping {
                    prompt: col("question"),
                    reasoning: col("answer"),
                    answer: col("answer"),
                    image: first_of(&IMAGE_COLUMNS),
                    ..RoleMapping::default()
                },
            );
        }
        return detected(
            Schema::QuestionAnswer,
            RoleMapping {
                prompt: col("question"),
                reasoning: first_of(&REASONING_COLUMNS),
                answer: col("answer"),
                image: first_of(&IMAGE_COLUMNS),
                ..RoleMapping::default()
            },
        );
    }
    detected(Schema::Unknown, RoleMapping::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn detects_every_schema_from_columns() {
        let cases: Vec<(&[&str], Schema)> = vec![
            (&["messages"], Schema::Messages),
            (&["id", "conversations"], Schema::Sharegpt),
            (&["prompt", "chosen", "rejected"], Schema::Preference),
            (&["problem", "solution", "level"], Schema::Math),
            (&["instruction", "input", "output"], Schema::Alpaca),
            (&["question", "answer"], Schema::QuestionAnswer),
            (&["text"], Schema::Unknown),
        ];
        for (names, schema) in cases {
            assert_eq!(detect(&cols(names), &[]).schema, schema, "{names:?}");
        }
    }

    #[test]
    fn gsm8k_needs_the_marker_in_sample_answers() {
        let columns = cols(&["question", "answer"]);
        let gsm = [row(json!({"question": "q", "answer": "2+2=4\n#### 4"}))];
        let d = detect(&columns, &gsm);
        assert_eq!(d.schema, Schema::Gsm8k);
        assert_eq!(d.roles.reasoning.as_deref(), Some("answer"));
        let plain = [row(json!({"question": "q", "answer": "4"}))];
        assert_eq!(detect(&columns, &plain).schema, Schema::QuestionAnswer);
    }

    #[test]
    fn question_answer_roles_pick_cot_and_image() {
        let d = detect(&cols(&["question", "answer", "cot", "image"]), &[]);
        assert_eq!(
            d.roles,
            RoleMapping {
                prompt: Some("question".into()),
                reasoning: Some("cot".into()),
                answer: Some("answer".into()),
                messages: None,
                image: Some("image".into()),
            }
        );
    }

    #[test]
    fn alpaca_keeps_its_input_column() {
        let d = detect(&cols(&["instruction", "input", "output"]), &[]);
        assert_eq!(d.input_column.as_deref(), Some("input"));
        assert_eq!(d.roles.prompt.as_deref(), Some("instruction"));
        assert_eq!(d.roles.answer.as_deref(), Some("output"));
    }
}
