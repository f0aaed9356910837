//! Checkpoints: the folder of each saved step of a run, stored relative to the workspace when
//! inside it.

use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{CheckpointId, RunId, StoreError, Workspace, now_sql};

/// One saved checkpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointRecord {
    pub id: CheckpointId,
    pub run_id: RunId,
    pub step: u64,
    /// Absolute (stored relative to the workspace folder when inside it).
    pub path: PathBuf,
    /// `"lora"` or `"full"`.
    pub kind: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl Workspace {
    /// Records a checkpoint saved at `path`. A path inside the workspace folder is stored relative
    /// to it, so a moved workspace keeps working. Saving `(run, step, kind)` again updates the
    /// existing record and keeps its id.
    pub fn add_checkpoint(
        &self,
        run: RunId,
        step: u64,
        path: &Path,
        kind: &str,
    ) -> Result<CheckpointId, StoreError> {
        let step = self.step_to_sql(step)?;
        let stored = self.path_to_stored(path);
        let stored = stored.to_str().ok_or_else(|| StoreError::NonUtf8Path {
            path: self.db_path.clone(),
            checkpoint: path.to_path_buf(),
        })?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("begin a write transaction"))?;
        self.ensure_run(&tx, run)?;
        let id = tx
            .prepare_cached(concat!(
                "INSERT INTO checkpoints (run_id, step, path, kind) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (run_id, step, kind) DO UPDATE
                 SET path = excluded.path, created_at = ",
                now_sql!(),
                " RETURNING id"
            ))
            .and_then(|mut stmt| stmt.query_row(params![run, step, stored, kind], |row| row.get(0)))
            .map_err(self.sql_err("add a checkpoint"))?;
        tx.commit().map_err(self.sql_err("commit a checkpoint"))?;
        Ok(id)
    }

    /// The run's checkpoints, by step.
    pub fn checkpoints(&self, run: RunId) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows = self
            .conn()
            .prepare_cached(
                "SELECT id, run_id, step, path, kind, created_at FROM checkpoints
                 WHERE run_id = ?1 ORDER BY step, id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([run], RawCheckpoint::from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("list checkpoints"))?;
        rows.into_iter()
            .map(|row| self.checkpoint_record(row))
            .collect()
    }

    pub fn checkpoint(&self, id: CheckpointId) -> Result<CheckpointRecord, StoreError> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT id, run_id, step, path, kind, created_at FROM checkpoints WHERE id = ?1",
            )
            .and_then(|mut stmt| stmt.query_row([id], RawCheckpoint::from_row).optional())
            .map_err(self.sql_err("read a checkpoint"))?
            .ok_or_else(|| StoreError::CheckpointNotFound {
                path: self.db_path.clone(),
                id,
            })?;
        self.checkpoint_record(row)
    }

    /// Run `run`'s checkpoint at `step`; an error that lists the run's checkpoint steps when it
    /// has none there (and [`StoreError::RunNotFound`] when there is no such run).
    pub fn checkpoint_at(&self, run: RunId, step: u64) -> Result<CheckpointRecord, StoreError> {
        self.ensure_run(&self.conn(), run)?;
        let checkpoints = self.checkpoints(run)?;
        if let Some(found) = checkpoints.iter().find(|c| c.step == step) {
            return Ok(found.clone());
        }
        let steps: Vec<String> = checkpoints.iter().map(|c| c.step.to_string()).collect();
        Err(StoreError::NoCheckpointAtStep {
            path: self.db_path.clone(),
            run,
            step,
            steps: if steps.is_empty() {
                "none".into()
            } else {
                steps.join(", ")
            },
        })
    }

    /// The checkpoint with the largest step (the newest one among equals).
    pub fn latest_checkpoint(&self, run: RunId) -> Result<Option<CheckpointRecord>, StoreError> {
        let row = self
            .conn()
            .prepare_cached(
                "SELECT id, run_id, step, path, kind, created_at FROM checkpoints
                 WHERE run_id = ?1 ORDER BY step DESC, id DESC LIMIT 1",
            )
            .and_then(|mut stmt| stmt.query_row([run], RawCheckpoint::from_row).optional())
            .map_err(self.sql_err("read the latest checkpoint"))?;
        row.map(|row| self.checkpoint_record(row)).transpose()
    }

    fn checkpoint_record(&self, raw: RawCheckpoint) -> Result<CheckpointRecord, StoreError> {
        let stored = PathBuf::from(raw.path);
        let path = if stored.is_absolute() {
            stored
        } else {
            self.dir.join(stored)
        };
        Ok(CheckpointRecord {
            id: raw.id,
            run_id: raw.run_id,
            step: self.step_from_sql(raw.step)?,
            path,
            kind: raw.kind,
            created_at: raw.created_at,
        })
    }

    /// `path` relative to the workspace folder when inside it, else absolute.
    fn path_to_stored(&self, path: &Path) -> PathBuf {
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
        };
        if let Ok(relative) = absolute.strip_prefix(&self.dir) {
            return relative.to_path_buf();
        }
        // The same folder reached through a symlink.
        if let (Ok(canonical_path), Ok(canonical_dir)) = (
            std::fs::canonicalize(&absolute),
            std::fs::canonicalize(&self.dir),
        ) && let Ok(relative) = canonical_path.strip_prefix(&canonical_dir)
        {
            return relative.to_path_buf();
        }
        absolute
    }
}

struct RawCheckpoint {
    id: CheckpointId,
    run_id: RunId,
    step: i64,
    path: String,
    kind: String,
    created_at: String,
}

impl RawCheckpoint {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            run_id: row.get(1)?,
            step: row.get(2)?,
            path: row.get(3)?,
            kind: row.get(4)?,
            created_at: row.get(5)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace as open_temp;
    use super::*;

    #[test]
    fn checkpoints_round_trip() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("create");
        assert!(ws.latest_checkpoint(run).expect("latest").is_none());

        let inside = ws.run_artifacts_dir(run).join("step-20");
        let outside_dir = tempfile::tempdir().expect("temp dir");
        let outside = outside_dir.path().join("step-10");
        let later = ws.add_checkpoint(run, 20, &inside, "lora").expect("add");
        let earlier = ws.add_checkpoint(run, 10, &outside, "full").expect("add");

        let stored: String = ws
            .conn()
            .query_row(
                "SELECT path FROM checkpoints WHERE id = ?1",
                [later],
                |row| row.get(0),
            )
            .expect("stored path");
        assert_eq!(
            Path::new(&stored),
            Path::new("artifacts")
                .join(format!("run-{run}"))
                .join("step-20")
        );

        let listed = ws.checkpoints(run).expect("list");
        assert_eq!(
            listed.iter().map(|c| c.step).collect::<Vec<_>>(),
            vec![10, 20]
        );
        assert_eq!(listed[0].path, outside);
        assert_eq!(listed[0].kind, "full");
        assert_eq!(listed[1].path, inside);
        assert!(listed[1].path.is_absolute());

        let latest = ws.latest_checkpoint(run).expect("latest").expect("some");
        assert_eq!(latest.id, later);
        assert_eq!(latest.kind, "lora");
        let by_id = ws.checkpoint(earlier).expect("by id");
        assert_eq!((by_id.run_id, by_id.step), (run, 10));

        assert_eq!(ws.checkpoint_at(run, 20).expect("at 20").id, later);
        let error = ws.checkpoint_at(run, 15).expect_err("no step 15");
        assert!(
            matches!(error, StoreError::NoCheckpointAtStep { step: 15, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("run {run} has no checkpoint at step 15"))
                && message.contains("steps: 10, 20"),
            "{message}"
        );
        assert!(matches!(
            ws.checkpoint_at(run + 1, 10),
            Err(StoreError::RunNotFound { .. })
        ));
        let empty = ws.create_run("empty", "").expect("create");
        let message = ws.checkpoint_at(empty, 1).expect_err("none").to_string();
        assert!(message.contains("steps: none"), "{message}");

        // Saving the same step again updates the record in place.
        let again = ws.add_checkpoint(run, 20, &inside, "lora").expect("again");
        assert_eq!(again, later);
        assert_eq!(ws.checkpoints(run).expect("list").len(), 2);
    }
}
