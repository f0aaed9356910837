//! Datasets opened in the window: the most recent first, each with the column → role mapping
//! the user chose for it (offered again when the file is reopened and to the run launcher).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreError, Workspace};

/// A dataset the workspace remembers. The store is a leaf layer: the mapping is kept as the
/// JSON of whatever the caller saved (the data layer's `RoleMapping`).
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRecord {
    pub path: String,
    pub mapping_json: Option<String>,
    /// Seconds since the Unix epoch.
    pub opened_at: f64,
}

impl DatasetRecord {
    /// The saved mapping as `T`; one this version cannot read is `None`.
    pub fn mapping<T: DeserializeOwned>(&self) -> Option<T> {
        self.mapping_json
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Workspace {
    /// Records that `path` was opened (keeps its mapping).
    pub fn touch_dataset(&self, path: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO datasets (path, opened_at) VALUES (?1, ?2)
                 ON CONFLICT(path) DO UPDATE SET opened_at = excluded.opened_at",
            )
            .and_then(|mut stmt| stmt.execute(params![path, now()]))
            .map_err(self.sql_err("record an opened dataset"))?;
        Ok(())
    }

    /// Saves (or with `None` forgets) the role mapping chosen for `path`.
    pub fn save_dataset_mapping<T: Serialize>(
        &self,
        path: &str,
        mapping: Option<&T>,
    ) -> Result<(), StoreError> {
        let json = mapping.map(|m| serde_json::to_string(m).expect("a mapping serializes"));
        self.conn()
            .prepare_cached(
                "INSERT INTO datasets (path, mapping_json, opened_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(path) DO UPDATE SET mapping_json = excluded.mapping_json",
            )
            .and_then(|mut stmt| stmt.execute(params![path, json, now()]))
            .map_err(self.sql_err("save a dataset's role mapping"))?;
        Ok(())
    }

    /// The dataset record of `path`, if it was opened here.
    pub fn dataset(&self, path: &str) -> Result<Option<DatasetRecord>, StoreError> {
        self.conn()
            .prepare_cached("SELECT path, mapping_json, opened_at FROM datasets WHERE path = ?1")
            .and_then(|mut stmt| stmt.query_row([path], record).optional())
            .map_err(self.sql_err("read a dataset record"))
    }

    /// Datasets opened here, the most recent first.
    pub fn datasets(&self) -> Result<Vec<DatasetRecord>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT path, mapping_json, opened_at FROM datasets ORDER BY opened_at DESC",
            )
            .and_then(|mut stmt| stmt.query_map([], record)?.collect())
            .map_err(self.sql_err("list datasets"))
    }
}

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<DatasetRecord> {
    Ok(DatasetRecord {
        path: row.get(0)?,
        mapping_json: row.get(1)?,
        opened_at: row.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::test_workspace as open_temp;

    #[test]
    fn mappings_are_remembered_per_file() {
        type Mapping = BTreeMap<String, String>;
        let (_dir, ws) = open_temp();
        ws.touch_dataset("/d/a.jsonl").expect("touch");
        let mapping: Mapping = [
            ("prompt".to_string(), "q".to_string()),
            ("answer".into(), "a".into()),
        ]
        .into();
        ws.save_dataset_mapping("/d/b.csv", Some(&mapping))
            .expect("save");
        let read = |path: &str| ws.dataset(path).expect("read").expect("present");
        assert_eq!(read("/d/b.csv").mapping::<Mapping>(), Some(mapping.clone()));
        assert_eq!(read("/d/a.jsonl").mapping_json, None);
        assert!(ws.dataset("/d/none").expect("read").is_none());
        // Touching keeps the mapping; saving None forgets it.
        ws.touch_dataset("/d/b.csv").expect("touch");
        assert_eq!(ws.datasets().expect("list")[0].path, "/d/b.csv");
        assert_eq!(read("/d/b.csv").mapping::<Mapping>(), Some(mapping));
        ws.save_dataset_mapping::<Mapping>("/d/b.csv", None)
            .expect("forget");
        assert!(read("/d/b.csv").mapping_json.is_none());
        assert_eq!(ws.datasets().expect("list").len(), 2);
    }
}
