//! CSV and TSV with a header row. Opening reads every record once (as bytes, without building
//! rows) and keeps the byte span of each good record; rows are re-parsed from their span on demand.
//! Every value is a string; a cell holding a JSON list or object (a `messages` column written to
//! CSV) is turned back into JSON when a role needs it.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Map, Value};

use super::jsonl::{RowSpan, read_span};
use super::{BadRow, DataError};

#[derive(Debug)]
pub(crate) struct CsvSource {
    file: Mutex<File>,
    delimiter: u8,
    pub rows: Vec<RowSpan>,
    pub columns: Vec<String>,
    pub bad_rows: Vec<BadRow>,
}

impl CsvSource {
    pub fn open(path: &Path, delimiter: u8) -> Result<Self, DataError> {
        let io_err = |source| DataError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .from_reader(std::io::BufReader::with_capacity(
                1 << 16,
                file.try_clone().map_err(io_err)?,
            ));
        let csv_err = |e: csv::Error| {
            let line = e.position().map_or(1, csv::Position::line);
            match e.into_kind() {
                csv::ErrorKind::Io(source) => DataError::Io {
                    path: path.to_path_buf(),
                    source,
                },
                kind => DataError::Syntax {
                    path: path.to_path_buf(),
                    line,
                    message: format!("{kind:?}"),
                },
            }
        };
        let header = reader.byte_headers().map_err(csv_err)?.clone();
        let mut columns = Vec::with_capacity(header.len());
        for (i, name) in header.iter().enumerate() {
            let mut name = String::from_utf8_lossy(name).into_owned();
            if i == 0 && name.starts_with('\u{feff}') {
                name.remove(0);
            }
            columns.push(name);
        }
        let mut rows = Vec::new();
        let mut bad_rows = Vec::new();
        let mut record = csv::ByteRecord::new();
        loop {
            let start = reader.position().clone();
            let read = reader.read_byte_record(&mut record);
            let end = reader.position().byte();
            let (offset, line) = record
                .position()
                .map_or((start.byte(), start.line()), |p| (p.byte(), p.line()));
            match read {
                Ok(false) => break,
                Ok(true) => match record.iter().position(|f| std::str::from_utf8(f).is_err()) {
                    None => rows.push(RowSpan {
                        offset,
                        len: end.saturating_sub(offset),
                        line,
                    }),
                    Some(field) => bad_rows.push(BadRow {
                        line,
                        message: format!("invalid UTF-8 in column {}", field + 1),
                    }),
                },
                Err(e) => {
                    let line = e.position().map_or(line, csv::Position::line);
                    match e.into_kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => bad_rows.push(BadRow {
                            line,
                            message: format!("{len} fields where the header has {expected_len}"),
                        }),
                        csv::ErrorKind::Io(source) => return Err(io_err(source)),
                        kind => bad_rows.push(BadRow {
                            line,
                            message: format!("{kind:?}"),
                        }),
                    }
                }
            }
        }
        Ok(Self {
            file: Mutex::new(file),
            delimiter,
            rows,
            columns,
            bad_rows,
        })
    }

    pub fn row(&self, path: &Path, i: usize) -> Result<Map<String, Value>, DataError> {
        let span = self.rows[i];
        let bytes = read_span(&self.file, span, path)?;
        let bad = |message: String| DataError::Row {
            path: path.to_path_buf(),
            line: span.line,
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes.as_slice());
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Err(bad("the record is gone (was the file changed?)".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
        if record.len() != self.columns.len() {
            return Err(bad(format!(
                "{} fields where the header has {}",
                record.len(),
                self.columns.len()
            )));
        }
        Ok(self
            .columns
            .iter()
            .zip(record.iter())
            .map(|(name, value)| (name.clone(), Value::String(value.to_string())))
            .collect())
    }
}
