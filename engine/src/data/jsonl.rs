//! JSON Lines: one object per line. Opening scans the file once, validating each line without
//! building it (keys are collected, values skipped) and keeping the byte offset of every good line;
//! rows are read and parsed on demand.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::{BadRow, DataError};

/// Column names in order of first appearance.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    pub names: Vec<String>,
    seen: HashSet<String>,
}

impl Columns {
    fn add(&mut self, name: &str) {
        if !self.seen.contains(name) {
            self.seen.insert(name.to_string());
            self.names.push(name.to_string());
        }
    }
}

/// Where a good row's bytes lie in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowSpan {
    pub offset: u64,
    pub len: u64,
    /// 1-based line where the row starts.
    pub line: u64,
}

/// Checks that `bytes` hold exactly one JSON object, adding its top-level keys to `columns`.
/// Returns a readable message (no position; the caller names the line) when they do not.
pub(crate) fn check_object(bytes: &[u8], columns: &mut Columns) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = KeysSeed(columns)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    result.map_err(|e| describe_json_error(&e))
}

/// A serde_json error's message without its " at line L column C" suffix, plus the column.
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text
        .rfind(" at line ")
        .map_or(text.as_str(), |at| &text[..at]);
    match e.classify() {
        serde_json::error::Category::Data => format!("not a JSON object: {message}"),
        _ => format!("invalid JSON at column {}: {message}", e.column()),
    }
}

struct KeysSeed<'a>(&'a mut Columns);

impl<'de> DeserializeSeed<'de> for KeysSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeysSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(KeySeed(self.0))?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct KeySeed<'a>(&'a mut Columns);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        self.0.add(key);
        Ok(())
    }
}

/// Parses one row's bytes into an object.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".to_string()),
        Err(e) => Err(describe_json_error(&e)),
    }
}

/// An indexed JSONL file.
#[derive(Debug)]
pub(crate) struct JsonlSource {
    file: Mutex<File>,
    pub rows: Vec<RowSpan>,
    pub columns: Vec<String>,
    pub bad_rows: Vec<BadRow>,
}

impl JsonlSource {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let io_err = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let mut reader = BufReader::with_capacity(1 << 16, file.try_clone().map_err(io_err)?);
        let mut rows = Vec::new();
        let mut bad_rows = Vec::new();
        let mut columns = Columns::default();
        let mut buf = Vec::new();
        let mut offset = 0u64;
        let mut line = 0u64;
        loop {
            buf.clear();
            let read = reader.read_until(b'\n', &mut buf).map_err(io_err)?;
            if read == 0 {
                break;
            }
            line += 1;
            let start = offset;
            offset += read as u64;
            let mut content: &[u8] = &buf;
            let mut skip = 0u64;
            if line == 1 && content.starts_with(b"\xEF\xBB\xBF") {
                content = &content[3..];
                skip = 3;
            }
            let content = content.trim_ascii();
            if content.is_empty() {
                continue;
            }
            let checked = std::str::from_utf8(content)
                .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
                .and_then(|_| check_object(content, &mut columns));
            match checked {
                Ok(()) => rows.push(RowSpan {
                    offset: start + skip,
                    len: read as u64 - skip,
                    line,
                }),
                Err(message) => bad_rows.push(BadRow { line, message }),
            }
        }
        Ok(Self {
            file: Mutex::new(file),
            rows,
            columns: columns.names,
            bad_rows,
        })
    }

    pub fn row(&self, path: &Path, i: usize) -> Result<Map<String, Value>, DataError> {
        let span = self.rows[i];
        let bytes = read_span(&self.file, span, path)?;
        parse_object(&bytes).map_err(|message| DataError::Row {
            path: path.to_path_buf(),
            line: span.line,
            message,
        })
    }
}

/// Reads a span of a shared file.
/// The bytes of one indexed row of `path`.
pub(crate) fn read_span(
    file: &Mutex<File>,
    span: RowSpan,
    path: &Path,
) -> Result<Vec<u8>, DataError> {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        file.seek(SeekFrom::Start(span.offset))?;
        let mut bytes = Vec::with_capacity(span.len as usize);
        (&mut *file).take(span.len).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    read().map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}
