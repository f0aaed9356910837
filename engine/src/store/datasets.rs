//! Datasets opened in the window: the most recent first, each with the column → role mapping
//! the user chose for it (offered again when the file is reopened and to the run launcher).

use rusqlite::{OptionalExtension, params};

use super::{StoreError, Workspace};
use crate::data::RoleMapping;

/// A dataset the workspace remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetRecord {
    pub path: String,
    pub mapping: Option<RoleMapping>,
    /// Seconds since the Unix epoch.
    pub opened_at: f64,
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
    pub fn save_dataset_mapping(
        &self,
        path: &str,
        mapping: Option<&RoleMapping>,
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
    let json: Option<String> = row.get(1)?;
    Ok(DatasetRecord {
        path: row.get(0)?,
        // A mapping this version cannot read is dropped rather than failing the list.
        mapping: json.and_then(|j| serde_json::from_str(&j).ok()),
        opened_at: row.get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace as open_temp;
    use crate::data::RoleMapping;

    #[test]
    fn mappings_are_remembered_per_file() {
        let (_dir, ws) = open_temp();
        ws.touch_dataset("/d/a.jsonl").expect("touch");
        let mapping = RoleMapping {
            prompt: Some("q".into()),
            answer: Some("a".into()),
            ..RoleMapping::default()
        };
        ws.save_dataset_mapping("/d/b.csv", Some(&mapping))
            .expect("save");
        let b = ws.dataset("/d/b.csv").expect("read").expect("present");
        assert_eq!(b.mapping.as_ref(), Some(&mapping));
        assert_eq!(
            ws.dataset("/d/a.jsonl")
                .expect("read")
                .expect("present")
                .mapping,
            None
        );
        assert!(ws.dataset("/d/none").expect("read").is_none());
        // Touching keeps the mapping; saving None forgets it.
        ws.touch_dataset("/d/b.csv").expect("touch");
        assert_eq!(ws.datasets().expect("list")[0].path, "/d/b.csv");
        assert!(
            ws.dataset("/d/b.csv")
                .expect("read")
                .expect("present")
                .mapping
                .is_some()
        );
        ws.save_dataset_mapping("/d/b.csv", None).expect("forget");
        assert!(
            ws.dataset("/d/b.csv")
                .expect("read")
                .expect("present")
                .mapping
                .is_none()
        );
        assert_eq!(ws.datasets().expect("list").len(), 2);
    }
}
