//! Runs: their immutable config, status, worker process and stop requests.

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};

use super::{RunId, StoreError, Workspace, now_sql};

/// Where a run is in its life. Stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Stopping,
    Stopped,
    Completed,
    Failed,
}

impl RunStatus {
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::Running,
        Self::Stopping,
        Self::Stopped,
        Self::Completed,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// True once the run will do no more work (stopped, completed or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Stopped | Self::Completed | Self::Failed)
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`RunStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown run status {value:?} (expected one of queued, running, stopping, stopped, completed, failed)"
)]
pub struct ParseRunStatusError {
    pub value: String,
}

impl FromStr for RunStatus {
    type Err = ParseRunStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseRunStatusError {
                value: s.to_owned(),
            })
    }
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RunRecord {
    pub id: RunId,
    pub name: String,
    pub status: RunStatus,
    /// The configuration the run was created with; never changes afterwards.
    pub config_toml: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC; changes with status, message, worker pid and stop requests.
    pub updated_at: String,
    /// Failure reason or other note that goes with the status.
    pub message: Option<String>,
    pub worker_pid: Option<u32>,
    /// The largest step of any metric logged for the run.
    pub last_step: Option<u64>,
}

const RUN_COLUMNS: &str =
    "id, name, status, config_toml, created_at, updated_at, message, worker_pid";

impl Workspace {
    /// Records a new run with status `queued`.
    pub fn create_run(&self, name: &str, config_toml: &str) -> Result<RunId, StoreError> {
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO runs (name, status, config_toml) VALUES (?1, ?2, ?3)")
            .and_then(|mut stmt| {
                stmt.execute(params![name, RunStatus::Queued.as_str(), config_toml])
            })
            .map_err(self.sql_err("create a run"))?;
        Ok(conn.last_insert_rowid())
    }

    pub fn run(&self, id: RunId) -> Result<RunRecord, StoreError> {
        let conn = self.conn();
        let row = conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"))
            .and_then(|mut stmt| stmt.query_row([id], RawRun::from_row).optional())
            .map_err(self.sql_err("read a run"))?
            .ok_or_else(|| self.run_not_found(id))?;
        self.run_record(&conn, row)
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let conn = self.conn();
        let rows = conn
            .prepare_cached(&format!("SELECT {RUN_COLUMNS} FROM runs ORDER BY id DESC"))
            .and_then(|mut stmt| {
                stmt.query_map([], RawRun::from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("list runs"))?;
        rows.into_iter()
            .map(|row| self.run_record(&conn, row))
            .collect()
    }

    /// Sets the status and its message (`None` clears the message).
    pub fn set_status(
        &self,
        id: RunId,
        status: RunStatus,
        message: Option<&str>,
    ) -> Result<(), StoreError> {
        self.update_run(
            id,
            concat!(
                "UPDATE runs SET status = ?2, message = ?3, updated_at = ",
                now_sql!(),
                " WHERE id = ?1"
            ),
            params![id, status.as_str(), message],
            "set a run's status",
        )
    }

    pub fn set_worker_pid(&self, id: RunId, pid: Option<u32>) -> Result<(), StoreError> {
        self.update_run(
            id,
            concat!(
                "UPDATE runs SET worker_pid = ?2, updated_at = ",
                now_sql!(),
                " WHERE id = ?1"
            ),
            params![id, pid],
            "set a run's worker pid",
        )
    }

    /// Asks the run's worker to stop after its current step. A `running` run becomes `stopping`
    /// in the same transaction; the worker sets `stopped` when it has.
    pub fn request_stop(&self, id: RunId) -> Result<(), StoreError> {
        self.update_run(
            id,
            concat!(
                "UPDATE runs SET stop_requested = 1,
                    status = CASE status WHEN 'running' THEN 'stopping' ELSE status END,
                    updated_at = ",
                now_sql!(),
                " WHERE id = ?1"
            ),
            params![id],
            "request a run to stop",
        )
    }

    pub fn stop_requested(&self, id: RunId) -> Result<bool, StoreError> {
        self.conn()
            .prepare_cached("SELECT stop_requested FROM runs WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], |row| row.get::<_, bool>(0)).optional())
            .map_err(self.sql_err("read a run's stop request"))?
            .ok_or_else(|| self.run_not_found(id))
    }

    pub fn clear_stop(&self, id: RunId) -> Result<(), StoreError> {
        self.update_run(
            id,
            concat!(
                "UPDATE runs SET stop_requested = 0, updated_at = ",
                now_sql!(),
                " WHERE id = ?1"
            ),
            params![id],
            "clear a run's stop request",
        )
    }

    pub(super) fn ensure_run(&self, conn: &Connection, run: RunId) -> Result<(), StoreError> {
        let found = conn
            .prepare_cached("SELECT 1 FROM runs WHERE id = ?1")
            .and_then(|mut stmt| stmt.exists([run]))
            .map_err(self.sql_err("look up a run"))?;
        if found {
            Ok(())
        } else {
            Err(self.run_not_found(run))
        }
    }

    /// Runs one `UPDATE runs … WHERE id = ?1`; NotFound when it matched no row.
    fn update_run(
        &self,
        id: RunId,
        sql: &str,
        params: &[&dyn rusqlite::ToSql],
        op: &'static str,
    ) -> Result<(), StoreError> {
        let changed = self
            .conn()
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(self.sql_err(op))?;
        if changed == 0 {
            return Err(self.run_not_found(id));
        }
        Ok(())
    }

    fn run_record(&self, conn: &Connection, raw: RawRun) -> Result<RunRecord, StoreError> {
        let status = raw
            .status
            .parse::<RunStatus>()
            .map_err(|error| self.invalid(format!("run {}: {error}", raw.id)))?;
        let worker_pid = raw
            .worker_pid
            .map(|pid| {
                u32::try_from(pid)
                    .map_err(|_| self.invalid(format!("run {}: worker pid {pid}", raw.id)))
            })
            .transpose()?;
        let last_step = conn
            .prepare_cached(concat!(
                run_name_ids_cte!(),
                "SELECT MAX((SELECT MAX(step) FROM metrics WHERE run_id = ?1 AND name_id = ids.id))
                 FROM ids WHERE ids.id IS NOT NULL"
            ))
            .and_then(|mut stmt| stmt.query_row([raw.id], |row| row.get::<_, Option<i64>>(0)))
            .map_err(self.sql_err("read a run's last step"))?
            .map(|step| self.step_from_sql(step))
            .transpose()?;
        Ok(RunRecord {
            id: raw.id,
            name: raw.name,
            status,
            config_toml: raw.config_toml,
            created_at: raw.created_at,
            updated_at: raw.updated_at,
            message: raw.message,
            worker_pid,
            last_step,
        })
    }
}

struct RawRun {
    id: RunId,
    name: String,
    status: String,
    config_toml: String,
    created_at: String,
    updated_at: String,
    message: Option<String>,
    worker_pid: Option<i64>,
}

impl RawRun {
    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            status: row.get(2)?,
            config_toml: row.get(3)?,
            created_at: row.get(4)?,
            updated_at: row.get(5)?,
            message: row.get(6)?,
            worker_pid: row.get(7)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::DB_FILE_NAME;
    use super::super::test_workspace as open_temp;
    use super::*;
    use std::path::Path;

    #[test]
    fn run_round_trip() {
        let (_dir, ws) = open_temp();
        let first = ws.create_run("first", "lr = 1e-4\n").expect("create");
        let second = ws.create_run("second", "lr = 2e-4\n").expect("create");
        assert_ne!(first, second);

        let run = ws.run(first).expect("run");
        assert_eq!(run.name, "first");
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(run.config_toml, "lr = 1e-4\n");
        assert_eq!(run.message, None);
        assert_eq!(run.worker_pid, None);
        assert_eq!(run.last_step, None);
        // RFC 3339 UTC, e.g. 2025-01-02T03:04:05.678Z
        assert_eq!(run.created_at.len(), 24, "{}", run.created_at);
        assert!(run.created_at.ends_with('Z') && run.created_at.as_bytes()[10] == b'T');

        let listed: Vec<RunId> = ws.runs().expect("runs").iter().map(|r| r.id).collect();
        assert_eq!(listed, vec![second, first], "newest first");

        ws.set_status(first, RunStatus::Running, None)
            .expect("status");
        ws.set_worker_pid(first, Some(4242)).expect("pid");
        assert!(!ws.stop_requested(first).expect("flag"));
        ws.request_stop(first).expect("stop");
        assert!(ws.stop_requested(first).expect("flag"));
        let run = ws.run(first).expect("run");
        assert_eq!(
            run.status,
            RunStatus::Stopping,
            "a running run becomes stopping"
        );
        assert_eq!(run.worker_pid, Some(4242));
        ws.clear_stop(first).expect("clear");
        assert!(!ws.stop_requested(first).expect("flag"));

        ws.set_status(first, RunStatus::Failed, Some("loss is NaN at step 12"))
            .expect("status");
        ws.set_worker_pid(first, None).expect("pid");
        let run = ws.run(first).expect("run");
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(run.message.as_deref(), Some("loss is NaN at step 12"));
        assert_eq!(run.worker_pid, None);
        assert!(run.updated_at >= run.created_at);
        assert!(!ws.stop_requested(second).expect("flag"));

        ws.request_stop(second).expect("stop");
        assert_eq!(ws.run(second).expect("run").status, RunStatus::Queued);
    }

    #[test]
    fn config_toml_is_immutable() {
        let (_dir, ws) = open_temp();
        let id = ws.create_run("r", "a = 1").expect("create");
        let result = ws
            .conn()
            .execute("UPDATE runs SET config_toml = 'a = 2' WHERE id = ?1", [id]);
        assert!(result.is_err());
        assert_eq!(ws.run(id).expect("run").config_toml, "a = 1");
    }

    #[test]
    fn missing_run_is_not_found_naming_the_id() {
        let (_dir, ws) = open_temp();
        let error = ws.run(999).expect_err("no run 999");
        assert!(
            matches!(error, StoreError::RunNotFound { id: 999, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("999"), "{message}");
        assert!(message.contains(DB_FILE_NAME), "{message}");

        for result in [
            ws.set_status(999, RunStatus::Running, None),
            ws.set_worker_pid(999, Some(1)),
            ws.request_stop(999),
            ws.clear_stop(999),
            ws.log_metrics(999, 1, &[("loss", 1.0)]),
            ws.append_log(999, "info", "hello"),
            ws.add_checkpoint(999, 1, Path::new("/tmp/x"), "lora")
                .map(|_| ()),
            ws.stop_requested(999).map(|_| ()),
        ] {
            let error = result.expect_err("no run 999");
            assert!(
                matches!(error, StoreError::RunNotFound { id: 999, .. }),
                "{error:?}"
            );
        }
        assert!(matches!(
            ws.checkpoint(5),
            Err(StoreError::CheckpointNotFound { id: 5, .. })
        ));
    }

    #[test]
    fn run_status_strings_round_trip() {
        for status in RunStatus::ALL {
            assert_eq!(status.as_str().parse::<RunStatus>(), Ok(status));
            let json = serde_json::to_string(&status).expect("json");
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("Running".parse::<RunStatus>().is_err());
    }
}
