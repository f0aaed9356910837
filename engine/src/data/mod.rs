//! Datasets: opening JSONL, JSON, CSV/TSV and Parquet files, recognising their schema, mapping
//! columns to roles (prompt, reasoning, answer, messages, image), and the built-in procedural
//! tasks with exact verifiers.
//!
//! Large files are not read into memory: JSONL and CSV/TSV keep an index of byte offsets (one per
//! good row) built by one validating scan at open, and parse a row when it is asked for. A JSON
//! document is held as bytes with the same kind of index; Parquet reads its footer at open and
//! decodes one row group at a time. Bad rows never stop a load: they are skipped, counted and listed
//! with their 1-based line ([`Dataset::bad_rows`]).
//!
//! `data` is a leaf: it depends on nothing else in the engine.

pub mod answer;
pub mod builtin;
mod delimited;
mod json_doc;
mod jsonl;
mod parquet_file;
pub mod schema;
pub mod verdict;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

pub use builtin::{BuiltinTask, Problem};
pub use schema::{RoleMapping, Schema};
pub use verdict::{Reference, Verdict, judge};

use delimited::CsvSource;
use json_doc::{JsonSource, Opened};
use jsonl::JsonlSource;
use parquet_file::ParquetSource;

/// Why a dataset could not be opened or a row read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("could not read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}, line {line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}, line {line}: bad row: {message}", path.display())]
    Row {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{}: unreadable Parquet: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: row {index} is out of range (the dataset has {len} rows)", path.display())]
    RowOutOfRange {
        path: PathBuf,
        index: usize,
        len: usize,
    },
    #[error(
        "{}: the role mapping's `{setting}` names column `{column}`, which the file does not have (columns: {available})",
        path.display()
    )]
    MissingColumn {
        path: PathBuf,
        setting: &'static str,
        column: String,
        available: String,
    },
}

/// A row that was skipped at open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadRow {
    /// 1-based line where the row starts.
    pub line: u64,
    pub message: String,
}

/// The file's format. TSV reports `csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    Jsonl,
    Json,
    Csv,
    Parquet,
}

impl FileFormat {
    /// The lowercase name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Jsonl => "jsonl",
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// One training example in roles. `messages` is filled for chat schemas (role/content pairs,
/// ShareGPT's from/value normalized to user/assistant/system).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Example {
    pub prompt: String,
    pub reasoning: Option<String>,
    pub answer: Option<String>,
    pub messages: Vec<(String, String)>,
    /// A file path (relative paths resolved against the dataset's folder), a URL, or a
    /// `data:` URI for embedded bytes.
    pub image: Option<String>,
}

enum Source {
    Jsonl(JsonlSource),
    Json(JsonSource),
    Csv(CsvSource),
    Parquet(ParquetSource),
}

/// An opened dataset file: its index, schema and roles. Rows are read on demand; `Dataset` is
/// `Send + Sync` (file handles sit behind mutexes).
pub struct Dataset {
    path: PathBuf,
    format: FileFormat,
    source: Source,
    columns: Vec<String>,
    bad_rows: Vec<BadRow>,
    schema: Schema,
    roles: RoleMapping,
    /// Alpaca's `input`, appended to the prompt.
    input_column: Option<String>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("rows", &self.len())
            .field("bad_rows", &self.bad_rows.len())
            .field("schema", &self.schema)
            .field("roles", &self.roles)
            .finish()
    }
}

/// How many leading rows schema detection looks at.
const DETECTION_SAMPLE_ROWS: usize = 32;

/// The format a file's name says, or failing that its first bytes.
fn detect_format(path: &Path) -> Result<(FileFormat, u8), DataError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jsonl" | "ndjson") => return Ok((FileFormat::Jsonl, 0)),
        Some("json") => return Ok((FileFormat::Json, 0)),
        Some("csv") => return Ok((FileFormat::Csv, b',')),
        Some("tsv" | "tab") => return Ok((FileFormat::Csv, b'\t')),
        Some("parquet" | "pq") => return Ok((FileFormat::Parquet, 0)),
        _ => {}
    }
    use std::io::Read;
    let mut head = [0u8; 512];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let head = &head[..read];
    if head.starts_with(b"PAR1") {
        return Ok((FileFormat::Parquet, 0));
    }
    match head.trim_ascii_start().first() {
        Some(b'[') => Ok((FileFormat::Json, 0)),
        Some(b'{') => Ok((FileFormat::Jsonl, 0)),
        _ => {
            let first_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            let tabs = first_line.iter().filter(|&&b| b == b'\t').count();
            let commas = first_line.iter().filter(|&&b| b == b',').count();
            Ok((FileFormat::Csv, if tabs > commas { b'\t' } else { b',' }))
        }
    }
}

impl Dataset {
    /// Opens `path`, indexes its rows, detects the schema, and takes the roles from `mapping`
    /// when given (every column it names must exist) or from detection.
    pub fn open(path: &Path, mapping: Option<&RoleMapping>) -> Result<Self, DataError> {
        if !path.is_file() {
            // Give the OS's own reason (not found, permission, a directory).
            std::fs::File::open(path)
                .and_then(|f| {
                    if f.metadata()?.is_dir() {
                        Err(std::io::Error::other("it is a folder, not a file"))
                    } else {
                        Ok(())
                    }
                })
                .map_err(|source| DataError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
        }
        let (mut format, delimiter) = detect_format(path)?;
        let source = match format {
            FileFormat::Jsonl => Source::Jsonl(JsonlSource::open(path)?),
            FileFormat::Json => match JsonSource::open(path)? {
                Opened::Document(source) => Source::Json(source),
                Opened::LooksLikeJsonl => {
                    format = FileFormat::Jsonl;
                    Source::Jsonl(JsonlSource::open(path)?)
                }
            },
            FileFormat::Csv => Source::Csv(CsvSource::open(path, delimiter)?),
            FileFormat::Parquet => Source::Parquet(ParquetSource::open(path)?),
        };
        let mut dataset = Self {
            path: path.to_path_buf(),
            format,
            source,
            columns: Vec::new(),
            bad_rows: Vec::new(),
            schema: Schema::Unknown,
            roles: RoleMapping::default(),
            input_column: None,
        };
        (dataset.columns, dataset.bad_rows) = match &mut dataset.source {
            Source::Jsonl(s) => (
                std::mem::take(&mut s.columns),
                std::mem::take(&mut s.bad_rows),
            ),
            Source::Json(s) => (
                std::mem::take(&mut s.columns),
                std::mem::take(&mut s.bad_rows),
            ),
            // CSV rows are built from the header, so the source keeps its copy.
            Source::Csv(s) => (s.columns.clone(), std::mem::take(&mut s.bad_rows)),
            Source::Parquet(s) => (std::mem::take(&mut s.columns), Vec::new()),
        };
        let samples: Vec<_> = (0..dataset.len().min(DETECTION_SAMPLE_ROWS))
            .filter_map(|i| dataset.row(i).ok())
            .collect();
        let detected = schema::detect(&dataset.columns, &samples);
        dataset.schema = detected.schema;
        match mapping {
            Some(mapping) => {
                dataset.check_mapping(mapping)?;
                if mapping.prompt == detected.roles.prompt {
                    dataset.input_column = detected.input_column;
                }
                dataset.roles = mapping.clone();
            }
            None => {
                dataset.roles = detected.roles;
                dataset.input_column = detected.input_column;
            }
        }
        tracing::debug!(
            path = %path.display(),
            rows = dataset.len(),
            bad_rows = dataset.bad_rows.len(),
            schema = dataset.schema.name(),
            "opened dataset"
        );
        Ok(dataset)
    }

    fn check_mapping(&self, mapping: &RoleMapping) -> Result<(), DataError> {
        let settings = [
            ("prompt", &mapping.prompt),
            ("reasoning", &mapping.reasoning),
            ("answer", &mapping.answer),
            ("messages", &mapping.messages),
            ("image", &mapping.image),
        ];
        for (setting, column) in settings {
            if let Some(column) = column
                && !self.columns.contains(column)
            {
                return Err(DataError::MissingColumn {
                    path: self.path.clone(),
                    setting,
                    column: column.clone(),
                    available: self.columns.join(", "),
                });
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Good rows (bad rows are not counted).
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Jsonl(s) => s.rows.len(),
            Source::Json(s) => s.len(),
            Source::Csv(s) => s.rows.len(),
            Source::Parquet(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The 1-based line where good row `i` starts (JSONL, JSON, CSV/TSV), or its 1-based row
    /// number in a Parquet file, for messages about the row.
    pub fn line_of(&self, i: usize) -> u64 {
        let line = match &self.source {
            Source::Jsonl(s) => s.rows.get(i).map(|r| r.line),
            Source::Json(s) => s.line_of(i),
            Source::Csv(s) => s.rows.get(i).map(|r| r.line),
            Source::Parquet(_) => None,
        };
        line.unwrap_or(i as u64 + 1)
    }

    /// Column names: the header, the Parquet schema's top-level fields, or for JSON the keys of
    /// all rows in order of first appearance.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// The roles in use: detected, or the mapping given to [`Dataset::open`].
    pub fn roles(&self) -> &RoleMapping {
        &self.roles
    }

    pub fn bad_rows(&self) -> &[BadRow] {
        &self.bad_rows
    }

    /// Good row `i` (0-based) as a JSON object. CSV values are strings.
    pub fn row(&self, i: usize) -> Result<Map<String, Value>, DataError> {
        if i >= self.len() {
            return Err(DataError::RowOutOfRange {
                path: self.path.clone(),
                index: i,
                len: self.len(),
            });
        }
        match &self.source {
            Source::Jsonl(s) => s.row(&self.path, i),
            Source::Json(s) => s.row(&self.path, i),
            Source::Csv(s) => s.row(&self.path, i),
            Source::Parquet(s) => s.row(&self.path, i),
        }
    }

    /// Good row `i` in roles. GSM8K-style text (reasoning and answer from one column) is split at
    /// the last `####`; with reasoning but no answer column (MATH) the answer is the last
    /// `\boxed{}`; chat rows give the prompt (last user turn before the final reply) and the
    /// answer (the final assistant turn) when no column does.
    pub fn example(&self, i: usize) -> Result<Example, DataError> {
        let row = self.row(i)?;
        Ok(self.example_from_row(&row))
    }

    fn example_from_row(&self, row: &Map<String, Value>) -> Example {
        let roles = &self.roles;
        let cell = |column: &Option<String>| column.as_deref().and_then(|c| row.get(c));
        let text = |column: &Option<String>| cell(column).and_then(value_text);

        let messages = cell(&roles.messages)
            .map(messages_from_value)
            .unwrap_or_default();
        let mut prompt = text(&roles.prompt);
        if let Some(input) = text(&self.input_column).filter(|s| !s.trim().is_empty()) {
            prompt = Some(match prompt {
                Some(p) => format!("{p}\n\n{input}"),
                None => input,
            });
        }
        let mut reasoning = text(&roles.reasoning);
        let mut answer = text(&roles.answer);
        if roles.reasoning.is_some() && roles.reasoning == roles.answer {
            match answer.as_deref().and_then(split_final_answer) {
                Some((steps, last)) => {
                    reasoning = Some(steps);
                    answer = Some(last);
                }
                None => reasoning = None,
            }
        }
        if answer.is_none()
            && let Some(steps) = &reasoning
        {
            answer = answer::last_boxed(steps);
        }
        if !messages.is_empty() {
            let last_assistant = messages.iter().rposition(|(role, _)| role == "assistant");
            if prompt.is_none() {
                let before = last_assistant.unwrap_or(messages.len());
                prompt = messages[..before]
                    .iter()
                    .rev()
                    .find(|(role, _)| role == "user")
                    .map(|(_, content)| content.clone());
            }
            if answer.is_none() {
                answer = last_assistant
                    .filter(|&i| i + 1 == messages.len())
                    .map(|i| messages[i].1.clone());
            }
        }
        let image = cell(&roles.image).and_then(|v| self.image_from_value(v));
        Example {
            prompt: prompt.unwrap_or_default(),
            reasoning,
            answer,
            messages,
            image,
        }
    }

    fn image_from_value(&self, value: &Value) -> Option<String> {
        match value {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(self.image_from_text(s)),
            Value::Array(items) => items.iter().find_map(|v| self.image_from_value(v)),
            Value::Object(map) => {
                if let Some(Value::String(bytes)) = map.get("bytes")
                    && !bytes.is_empty()
                {
                    return Some(data_uri(bytes));
                }
                map.get("path").and_then(|v| self.image_from_value(v))
            }
            _ => None,
        }
    }

    fn image_from_text(&self, text: &str) -> String {
        const LONGEST_PATH: usize = 1024;
        if text.starts_with("data:") || text.starts_with("http://") || text.starts_with("https://")
        {
            return text.to_string();
        }
        if text.len() > LONGEST_PATH {
            return data_uri(text);
        }
        let path = Path::new(text);
        if path.is_absolute() {
            return text.to_string();
        }
        let folder = self.path.parent().unwrap_or(Path::new(""));
        folder.join(path).to_string_lossy().into_owned()
    }
}

/// A `data:` URI for base64 image bytes, with the type sniffed from the first bytes.
fn data_uri(base64: &str) -> String {
    let mime = if base64.starts_with("iVBOR") {
        "image/png"
    } else if base64.starts_with("/9j/") {
        "image/jpeg"
    } else if base64.starts_with("R0lGOD") {
        "image/gif"
    } else if base64.starts_with("UklGR") {
        "image/webp"
    } else {
        "application/octet-stream"
    };
    format!("data:{mime};base64,{base64}")
}

/// Splits GSM8K text at the last `####`: (reasoning, final answer), both trimmed.
fn split_final_answer(text: &str) -> Option<(String, String)> {
    let at = text.rfind("####")?;
    Some((
        text[..at].trim().to_string(),
        text[at + 4..].trim().to_string(),
    ))
}

/// A cell as text: strings as they are, numbers and booleans printed, a list of chat messages as
/// its last message's content, anything else as compact JSON; null is no text.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(value.to_string()),
        Value::Array(_) => {
            let messages = messages_from_value(value);
            match messages.last() {
                Some((_, content)) => Some(content.clone()),
                None => Some(value.to_string()),
            }
        }
        Value::Object(_) => Some(value.to_string()),
    }
}

/// Chat messages from `[{role, content}]` or ShareGPT's `[{from, value}]` (also a JSON string of
/// either, as CSV stores it). Roles are normalized: human → user, gpt/model/chatgpt/bot →
/// assistant. Content given as parts (`[{type: text, text}]`) is joined.
fn messages_from_value(value: &Value) -> Vec<(String, String)> {
    let parsed;
    let value = match value {
        Value::String(s) if s.trim_start().starts_with('[') => {
            match serde_json::from_str::<Value>(s) {
                Ok(v) => {
                    parsed = v;
                    &parsed
                }
                Err(_) => return Vec::new(),
            }
        }
        v => v,
    };
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let item = item.as_object()?;
            let role = item
                .get("role")
                .or_else(|| item.get("from"))
                .and_then(Value::as_str)?;
            let content = item.get("content").or_else(|| item.get("value"))?;
            Some((normalize_role(role), content_text(content)))
        })
        .collect()
}

fn normalize_role(role: &str) -> String {
    match role.to_ascii_lowercase().as_str() {
        "human" | "user" => "user".to_string(),
        "gpt" | "assistant" | "model" | "chatgpt" | "bot" | "bard" => "assistant".to_string(),
        "system" => "system".to_string(),
        other => other.to_string(),
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(s) => Some(s.as_str()),
                Value::Object(p) => p.get("text").and_then(Value::as_str),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(""),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
