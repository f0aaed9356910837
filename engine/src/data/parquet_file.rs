//! Parquet through the parquet crate's row API (no arrow). Opening reads only the footer (schema,
//! row groups, row counts); a row is read by decoding its whole row group, which is kept (one
//! group at a time) so reading rows in order decodes each group once. Memory is therefore about
//! one decoded row group. Values become JSON: byte arrays as base64 strings, nested groups
//! (Hugging Face's `{bytes, path}` images) as objects, lists as arrays.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{Map, Value};

use super::DataError;

/// A decoded row group: its index and rows.
type DecodedGroup = (usize, Vec<Map<String, Value>>);

pub(crate) struct ParquetSource {
    reader: SerializedFileReader<File>,
    /// First row index of each row group, plus the total at the end.
    group_starts: Vec<usize>,
    pub columns: Vec<String>,
    cached: Mutex<Option<DecodedGroup>>,
}

impl std::fmt::Debug for ParquetSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSource")
            .field("group_starts", &self.group_starts)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl ParquetSource {
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = SerializedFileReader::new(file).map_err(|e| parquet_err(path, e))?;
        let metadata = reader.metadata();
        let columns = metadata
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|field| field.name().to_string())
            .collect();
        let mut group_starts = vec![0usize];
        let mut total = 0usize;
        for group in metadata.row_groups() {
            total += usize::try_from(group.num_rows().max(0)).unwrap_or(0);
            group_starts.push(total);
        }
        Ok(Self {
            reader,
            group_starts,
            columns,
            cached: Mutex::new(None),
        })
    }

    pub fn len(&self) -> usize {
        self.group_starts.last().copied().unwrap_or(0)
    }

    pub fn row(&self, path: &Path, i: usize) -> Result<Map<String, Value>, DataError> {
        // The group holding row i: the last start <= i.
        let group = self.group_starts.partition_point(|&start| start <= i) - 1;
        let within = i - self.group_starts[group];
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cached.as_ref().is_none_or(|(g, _)| *g != group) {
            *cached = Some((group, self.decode_group(path, group)?));
        }
        let rows = cached.as_ref().map(|(_, rows)| rows);
        rows.and_then(|rows| rows.get(within))
            .cloned()
            .ok_or_else(|| {
                parquet_err(
                    path,
                    format!("row group {group} has fewer rows than its metadata says"),
                )
            })
    }

    fn decode_group(
        &self,
        path: &Path,
        group: usize,
    ) -> Result<Vec<Map<String, Value>>, DataError> {
        let reader = self
            .reader
            .get_row_group(group)
            .map_err(|e| parquet_err(path, format!("row group {group}: {e}")))?;
        let rows = reader
            .get_row_iter(None)
            .map_err(|e| parquet_err(path, format!("row group {group}: {e}")))?;
        rows.map(|row| {
            let row = row.map_err(|e| parquet_err(path, format!("row group {group}: {e}")))?;
            match row.to_json_value() {
                Value::Object(map) => Ok(map),
                _ => Err(parquet_err(path, "a row is not a record")),
            }
        })
        .collect()
    }
}
