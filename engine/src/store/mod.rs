//! The workspace: one SQLite database (`workspace.sqlite`, WAL mode) holding runs, metric series,
//! checkpoints and run logs, plus an `artifacts/` folder beside it for checkpoint tensors.
//!
//! Several processes use one workspace at once (the GUI, CLI commands, one worker per run). Each
//! opens its own [`Workspace`]; writes take the lock up front with `BEGIN IMMEDIATE` and wait for
//! it up to [`BUSY_TIMEOUT`], so nobody sees "database is locked" under ordinary contention.
//! Readers never block writers (WAL).

mod schema;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use schema::now_sql;
pub use schema::{MIGRATIONS, current_version};

/// File name of the database inside the workspace folder.
pub const DB_FILE_NAME: &str = "workspace.sqlite";
/// Folder inside the workspace for checkpoint tensors and other large files.
pub const ARTIFACTS_DIR_NAME: &str = "artifacts";
/// How long a write waits for another connection's write to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Environment variable that overrides [`Workspace::default_dir`].
pub const WORKSPACE_ENV: &str = "STUDIO_WORKSPACE";

pub type RunId = i64;
pub type CheckpointId = i64;

/// What can go wrong with the workspace. Every message names the database (or folder) involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create workspace folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open workspace database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("workspace database {path}: cannot {op}: {source}")]
    Sqlite {
        path: PathBuf,
        op: &'static str,
        source: rusqlite::Error,
    },
    #[error(
        "workspace database {path} has schema version {found}, newer than the {supported} this \
         version of Reasoning Studio knows; use a newer Reasoning Studio or another workspace"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("workspace database {path}: migration {version} failed: {source}")]
    Migration {
        path: PathBuf,
        version: usize,
        source: rusqlite::Error,
    },
    #[error("workspace database {path}: run {id} not found")]
    RunNotFound { path: PathBuf, id: RunId },
    #[error("workspace database {path}: checkpoint {id} not found")]
    CheckpointNotFound { path: PathBuf, id: CheckpointId },
    #[error(
        "workspace database {path}: step {step} is too large to store (max {})",
        i64::MAX
    )]
    StepOutOfRange { path: PathBuf, step: u64 },
    #[error("workspace database {path}: checkpoint path {checkpoint} is not valid UTF-8")]
    NonUtf8Path { path: PathBuf, checkpoint: PathBuf },
    #[error("workspace database {path}: invalid stored value: {what}")]
    InvalidRow { path: PathBuf, what: String },
}

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
#[derive(Debug, Clone, serde::Serialize)]
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

/// An open workspace: its folder and one connection to its database.
///
/// `Send + Sync`; calls from several threads are serialised on the one connection. Threads or
/// processes that write a lot should each open their own `Workspace`.
pub struct Workspace {
    dir: PathBuf,
    db_path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workspace")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Loose index scan over the distinct metric series of run `?1`: one index seek per series
/// instead of a scan of all its points.
macro_rules! run_name_ids_cte {
    () => {
        "WITH RECURSIVE ids(id) AS (
            SELECT (SELECT MIN(name_id) FROM metrics WHERE run_id = ?1)
            UNION ALL
            SELECT (SELECT MIN(name_id) FROM metrics WHERE run_id = ?1 AND name_id > ids.id)
            FROM ids WHERE ids.id IS NOT NULL
        ) "
    };
}

const RUN_COLUMNS: &str =
    "id, name, status, config_toml, created_at, updated_at, message, worker_pid";

fn wall_time_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

impl Workspace {
    /// Opens the workspace in `dir`, creating the folder, its database and `artifacts/` as needed,
    /// and migrating the schema.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let dir = std::path::absolute(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let artifacts = dir.join(ARTIFACTS_DIR_NAME);
        std::fs::create_dir_all(&artifacts).map_err(|source| StoreError::CreateDir {
            path: artifacts.clone(),
            source,
        })?;
        let db_path = dir.join(DB_FILE_NAME);
        let mut conn = Connection::open(&db_path).map_err(|source| StoreError::Open {
            path: db_path.clone(),
            source,
        })?;
        configure(&conn, &db_path)?;
        schema::migrate(&mut conn, &db_path)?;
        tracing::debug!(path = %db_path.display(), "opened workspace");
        Ok(Self {
            dir,
            db_path,
            conn: Mutex::new(conn),
        })
    }

    /// `$STUDIO_WORKSPACE` if set, else the OS data folder (`…/reasoning-studio`), else
    /// `./studio-workspace`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os(WORKSPACE_ENV).filter(|dir| !dir.is_empty()) {
            return PathBuf::from(dir);
        }
        directories::ProjectDirs::from("", "", "reasoning-studio").map_or_else(
            || PathBuf::from("studio-workspace"),
            |dirs| dirs.data_dir().to_path_buf(),
        )
    }

    /// The workspace folder (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn db_path(&self) -> PathBuf {
        self.db_path.clone()
    }

    pub fn artifacts_dir(&self) -> PathBuf {
        self.dir.join(ARTIFACTS_DIR_NAME)
    }

    /// `artifacts/run-{id}/`, created if missing. (If it cannot be created, the error shows up
    /// when the caller writes into it.)
    pub fn run_artifacts_dir(&self, run: RunId) -> PathBuf {
        let dir = self.artifacts_dir().join(format!("run-{run}"));
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), %error, "cannot create run artifacts folder");
        }
        dir
    }

    // ---- runs ----

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

    // ---- metrics ----

    /// Logs several metrics for one step in one transaction. A `(run, name, step)` already
    /// present is replaced, so a resumed run that redoes a step never duplicates it.
    pub fn log_metrics(
        &self,
        run: RunId,
        step: u64,
        values: &[(&str, f64)],
    ) -> Result<(), StoreError> {
        let step = self.step_to_sql(step)?;
        self.write_metrics(run, values.iter().map(|&(name, value)| (step, name, value)))
    }

    /// Like [`Self::log_metrics`] for many steps at once (one transaction): rows of
    /// `(step, name, value)`.
    pub fn log_metric_rows(&self, run: RunId, rows: &[(u64, &str, f64)]) -> Result<(), StoreError> {
        let rows = rows
            .iter()
            .map(|&(step, name, value)| Ok((self.step_to_sql(step)?, name, value)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write_metrics(run, rows)
    }

    /// The names of the run's metric series, sorted.
    pub fn metric_names(&self, run: RunId) -> Result<Vec<String>, StoreError> {
        self.conn()
            .prepare_cached(concat!(
                run_name_ids_cte!(),
                "SELECT metric_names.name FROM ids JOIN metric_names ON metric_names.id = ids.id
                 ORDER BY metric_names.name"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([run], |row| row.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .map_err(self.sql_err("list a run's metric names"))
    }

    /// One series as `(step, value)`, ordered by step. NaN values read back as NaN.
    pub fn metric(&self, run: RunId, name: &str) -> Result<Vec<(u64, f64)>, StoreError> {
        let conn = self.conn();
        let rows = conn
            .prepare_cached(
                "SELECT metrics.step, metrics.value FROM metrics
                 WHERE metrics.run_id = ?1
                   AND metrics.name_id = (SELECT id FROM metric_names WHERE name = ?2)
                 ORDER BY metrics.step",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, name], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Option<f64>>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("read a metric series"))?;
        rows.into_iter()
            .map(|(step, value)| Ok((self.step_from_sql(step)?, value.unwrap_or(f64::NAN))))
            .collect()
    }

    /// Deletes the run's metrics with step > `step` (resuming from a checkpoint at `step` drops
    /// what came after it). Returns how many points were deleted.
    pub fn truncate_metrics_after(&self, run: RunId, step: u64) -> Result<usize, StoreError> {
        let step = self.step_to_sql(step)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("begin a write transaction"))?;
        let name_ids = tx
            .prepare_cached(concat!(
                run_name_ids_cte!(),
                "SELECT id FROM ids WHERE id IS NOT NULL"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([run], |row| row.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("list a run's metric series"))?;
        let mut deleted = 0;
        {
            // Per series, so each delete is an index range scan.
            let mut delete = tx
                .prepare_cached(
                    "DELETE FROM metrics WHERE run_id = ?1 AND name_id = ?2 AND step > ?3",
                )
                .map_err(self.sql_err("truncate metrics"))?;
            for name_id in name_ids {
                deleted += delete
                    .execute(params![run, name_id, step])
                    .map_err(self.sql_err("truncate metrics"))?;
            }
        }
        tx.commit()
            .map_err(self.sql_err("commit a metrics truncation"))?;
        Ok(deleted)
    }

    // ---- checkpoints ----

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

    // ---- logs ----

    pub fn append_log(&self, run: RunId, level: &str, message: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.prepare_cached("INSERT INTO run_logs (run_id, level, message) VALUES (?1, ?2, ?3)")
            .and_then(|mut stmt| stmt.execute(params![run, level, message]))
            .map_err(|source| self.fk_as_run_not_found(source, run, "append a run log line"))?;
        Ok(())
    }

    /// The run's log lines in order: `(time, level, message)`.
    pub fn logs(&self, run: RunId) -> Result<Vec<(String, String, String)>, StoreError> {
        self.conn()
            .prepare_cached(
                "SELECT time, level, message FROM run_logs WHERE run_id = ?1 ORDER BY id",
            )
            .and_then(|mut stmt| {
                stmt.query_map([run], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("read a run's log"))
    }

    // ---- maintenance ----

    /// `PRAGMA integrity_check`: `"ok"`, or the problems found, one per line.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let lines = self
            .conn()
            .prepare("PRAGMA integrity_check")
            .and_then(|mut stmt| {
                stmt.query_map([], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("check integrity"))?;
        Ok(lines.join("\n"))
    }

    // ---- helpers ----

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open (the `Transaction` drop
        // rolls back), so the connection is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn sql_err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.db_path.clone(),
            op,
            source,
        }
    }

    fn run_not_found(&self, id: RunId) -> StoreError {
        StoreError::RunNotFound {
            path: self.db_path.clone(),
            id,
        }
    }

    fn fk_as_run_not_found(
        &self,
        source: rusqlite::Error,
        run: RunId,
        op: &'static str,
    ) -> StoreError {
        let is_fk = source.sqlite_error().is_some_and(|error| {
            error.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY
        });
        if is_fk {
            self.run_not_found(run)
        } else {
            self.sql_err(op)(source)
        }
    }

    fn invalid(&self, what: String) -> StoreError {
        StoreError::InvalidRow {
            path: self.db_path.clone(),
            what,
        }
    }

    fn step_to_sql(&self, step: u64) -> Result<i64, StoreError> {
        i64::try_from(step).map_err(|_| StoreError::StepOutOfRange {
            path: self.db_path.clone(),
            step,
        })
    }

    fn step_from_sql(&self, step: i64) -> Result<u64, StoreError> {
        u64::try_from(step).map_err(|_| self.invalid(format!("negative step {step}")))
    }

    fn ensure_run(&self, conn: &Connection, run: RunId) -> Result<(), StoreError> {
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

    fn write_metrics<'a>(
        &self,
        run: RunId,
        rows: impl IntoIterator<Item = (i64, &'a str, f64)>,
    ) -> Result<(), StoreError> {
        let wall_time = wall_time_secs();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("begin a write transaction"))?;
        self.ensure_run(&tx, run)?;
        {
            let mut find_name = tx
                .prepare_cached("SELECT id FROM metric_names WHERE name = ?1")
                .map_err(self.sql_err("look up a metric name"))?;
            let mut add_name = tx
                .prepare_cached("INSERT INTO metric_names (name) VALUES (?1)")
                .map_err(self.sql_err("add a metric name"))?;
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO metrics (run_id, name_id, step, value, wall_time)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (run_id, name_id, step) DO UPDATE
                     SET value = excluded.value, wall_time = excluded.wall_time",
                )
                .map_err(self.sql_err("write a metric"))?;
            let mut name_ids: HashMap<&str, i64> = HashMap::new();
            for (step, name, value) in rows {
                let name_id = match name_ids.get(name) {
                    Some(&id) => id,
                    None => {
                        let existing = find_name
                            .query_row([name], |row| row.get::<_, i64>(0))
                            .optional()
                            .map_err(self.sql_err("look up a metric name"))?;
                        let id = match existing {
                            Some(id) => id,
                            None => {
                                add_name
                                    .execute([name])
                                    .map_err(self.sql_err("add a metric name"))?;
                                tx.last_insert_rowid()
                            }
                        };
                        name_ids.insert(name, id);
                        id
                    }
                };
                upsert
                    .execute(params![run, name_id, step, value, wall_time])
                    .map_err(self.sql_err("write a metric"))?;
            }
        }
        tx.commit().map_err(self.sql_err("commit metrics"))
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

/// Connection settings every connection needs; the `journal_mode` is persistent in the file,
/// the rest are per connection.
fn configure(conn: &Connection, db_path: &Path) -> Result<(), StoreError> {
    let sql_err = |op: &'static str| {
        move |source| StoreError::Sqlite {
            path: db_path.to_path_buf(),
            op,
            source,
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql_err("set the busy timeout"))?;
    let journal_mode = switch_to_wal(conn).map_err(sql_err("switch to WAL mode"))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            path = %db_path.display(),
            journal_mode,
            "workspace database is not in WAL mode; concurrent use will be slower"
        );
    }
    // NORMAL is durable against a killed process in WAL mode (only an OS crash or power cut can
    // lose the last commits), and much faster than FULL.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql_err("set synchronous mode"))?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(sql_err("enable foreign keys"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Sets the file's journal mode to WAL and returns the mode now in force. Two connections
/// opening a fresh file together both try the switch; SQLite then answers `SQLITE_BUSY` at once,
/// without calling the busy handler (waiting could deadlock), so the switch is retried here for
/// up to [`BUSY_TIMEOUT`].
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
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
    use super::*;

    fn open_temp() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = Workspace::open(dir.path()).expect("open workspace");
        (dir, workspace)
    }

    #[test]
    fn open_creates_files_in_wal_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("nested").join("ws");
        let workspace = Workspace::open(&root).expect("open");
        assert!(workspace.db_path().is_file());
        assert_eq!(workspace.db_path(), root.join(DB_FILE_NAME));
        assert!(workspace.artifacts_dir().is_dir());
        assert!(workspace.dir().is_absolute());
        let run_dir = workspace.run_artifacts_dir(7);
        assert!(run_dir.is_dir());
        assert!(run_dir.ends_with("artifacts/run-7"));

        let conn = workspace.conn();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let foreign_keys: bool = conn
            .pragma_query_value(None, "foreign_keys", |row| row.get(0))
            .expect("foreign_keys");
        assert!(foreign_keys);
        let timeout_ms: i64 = conn
            .pragma_query_value(None, "busy_timeout", |row| row.get(0))
            .expect("busy_timeout");
        assert_eq!(timeout_ms, 30_000);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, i64::try_from(MIGRATIONS.len()).expect("small"));
    }

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

    #[test]
    fn metrics_replace_truncate_and_order() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("create");
        let other = ws.create_run("other", "").expect("create");
        // Out of order on purpose.
        for step in [5_u64, 1, 3, 2, 4] {
            let step_f = step as f64;
            ws.log_metrics(
                run,
                step,
                &[("loss", 10.0 - step_f), ("learning_rate", 1e-4)],
            )
            .expect("log");
        }
        ws.log_metrics(run, 3, &[("loss", 42.0)])
            .expect("log again");
        ws.log_metrics(other, 1, &[("reward", 0.5)])
            .expect("log other");
        ws.log_metrics(run, 6, &[("grad_norm", f64::NAN)])
            .expect("log nan");

        assert_eq!(
            ws.metric(run, "loss").expect("loss"),
            vec![(1, 9.0), (2, 8.0), (3, 42.0), (4, 6.0), (5, 5.0)]
        );
        assert_eq!(
            ws.metric_names(run).expect("names"),
            vec!["grad_norm", "learning_rate", "loss"]
        );
        assert_eq!(ws.metric_names(other).expect("names"), vec!["reward"]);
        assert!(ws.metric(run, "reward").expect("reward").is_empty());
        assert!(ws.metric(run, "no such metric").expect("none").is_empty());
        let grad_norm = ws.metric(run, "grad_norm").expect("nan");
        assert_eq!(grad_norm.len(), 1);
        assert!(grad_norm[0].1.is_nan());
        assert_eq!(ws.run(run).expect("run").last_step, Some(6));

        let deleted = ws.truncate_metrics_after(run, 3).expect("truncate");
        assert_eq!(
            deleted,
            2 + 2 + 1,
            "loss and learning_rate at 4, 5 and grad_norm at 6"
        );
        assert_eq!(
            ws.metric(run, "loss").expect("loss"),
            vec![(1, 9.0), (2, 8.0), (3, 42.0)]
        );
        assert_eq!(ws.run(run).expect("run").last_step, Some(3));
        assert_eq!(
            ws.metric_names(run).expect("names"),
            vec!["learning_rate", "loss"]
        );
        assert_eq!(ws.metric(other, "reward").expect("other"), vec![(1, 0.5)]);

        // Batched rows replace too.
        ws.log_metric_rows(run, &[(3, "loss", 1.0), (4, "loss", 0.5), (3, "loss", 2.0)])
            .expect("rows");
        assert_eq!(
            ws.metric(run, "loss").expect("loss"),
            vec![(1, 9.0), (2, 8.0), (3, 2.0), (4, 0.5)]
        );
        assert!(matches!(
            ws.log_metrics(run, u64::MAX, &[("loss", 1.0)]),
            Err(StoreError::StepOutOfRange { .. })
        ));
    }

    #[test]
    fn million_points_round_trip() {
        const POINTS: u64 = 1_000_000;
        const BATCH: u64 = 10_000;
        let (_dir, ws) = open_temp();
        let run = ws.create_run("big", "").expect("create");
        let started = std::time::Instant::now();
        let mut rows = Vec::with_capacity(usize::try_from(BATCH).expect("small"));
        for batch_start in (0..POINTS).step_by(usize::try_from(BATCH).expect("small")) {
            rows.clear();
            rows.extend(
                (batch_start..batch_start + BATCH).map(|step| (step, "loss", step as f64 * 0.5)),
            );
            ws.log_metric_rows(run, &rows).expect("write batch");
        }
        let write = started.elapsed();
        let started = std::time::Instant::now();
        let series = ws.metric(run, "loss").expect("read");
        let read = started.elapsed();
        let started = std::time::Instant::now();
        let record = ws.run(run).expect("run");
        let names = ws.metric_names(run).expect("names");
        let summary = started.elapsed();
        eprintln!(
            "1M metric points: write {:.2} s ({:.0} points/s), read one series {:.3} s, \
             run record + names {:.2} ms",
            write.as_secs_f64(),
            POINTS as f64 / write.as_secs_f64(),
            read.as_secs_f64(),
            summary.as_secs_f64() * 1e3,
        );
        assert_eq!(series.len(), usize::try_from(POINTS).expect("fits"));
        assert_eq!(series[0], (0, 0.0));
        assert_eq!(
            series[series.len() - 1],
            (POINTS - 1, (POINTS - 1) as f64 * 0.5)
        );
        assert!(series.windows(2).all(|pair| pair[0].0 + 1 == pair[1].0));
        assert_eq!(record.last_step, Some(POINTS - 1));
        assert_eq!(names, vec!["loss"]);
    }

    #[test]
    fn two_connections_write_concurrently_without_lock_errors() {
        const STEPS: u64 = 2_000;
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        // Both open a fresh workspace at once, so migration and WAL switch race too.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|writer| {
                let root = root.clone();
                let barrier = barrier.clone();
                std::thread::Builder::new()
                    .name(format!("store-writer-{writer}"))
                    .spawn(move || -> Result<RunId, StoreError> {
                        barrier.wait();
                        let ws = Workspace::open(&root)?;
                        let run = ws.create_run(&format!("writer {writer}"), "")?;
                        for step in 0..STEPS {
                            let step_f = step as f64;
                            ws.log_metrics(run, step, &[("loss", step_f), ("grad_norm", 1.0)])?;
                            if step % 50 == 0 {
                                ws.append_log(run, "info", &format!("step {step}"))?;
                                ws.set_worker_pid(run, Some(u32::try_from(step).unwrap_or(0)))?;
                                ws.run(run)?;
                                ws.metric(run, "loss")?;
                            }
                        }
                        ws.set_status(run, RunStatus::Completed, None)?;
                        Ok(run)
                    })
                    .expect("spawn")
            })
            .collect();
        let runs: Vec<RunId> = handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .expect("writer panicked")
                    .expect("writer failed")
            })
            .collect();
        let ws = Workspace::open(&root).expect("open");
        for run in runs {
            assert_eq!(ws.metric(run, "loss").expect("loss").len(), STEPS as usize);
            assert_eq!(ws.run(run).expect("run").status, RunStatus::Completed);
            assert_eq!(ws.logs(run).expect("logs").len(), (STEPS / 50) as usize);
        }
        assert_eq!(ws.integrity_check().expect("check"), "ok");
    }

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

        // Saving the same step again updates the record in place.
        let again = ws.add_checkpoint(run, 20, &inside, "lora").expect("again");
        assert_eq!(again, later);
        assert_eq!(ws.checkpoints(run).expect("list").len(), 2);
    }

    #[test]
    fn logs_and_integrity() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("r", "").expect("create");
        ws.append_log(run, "info", "started").expect("log");
        ws.append_log(run, "error", "loss is NaN").expect("log");
        let logs = ws.logs(run).expect("logs");
        assert_eq!(logs.len(), 2);
        assert_eq!(
            (logs[0].1.as_str(), logs[0].2.as_str()),
            ("info", "started")
        );
        assert_eq!(
            (logs[1].1.as_str(), logs[1].2.as_str()),
            ("error", "loss is NaN")
        );
        assert!(logs[0].0.ends_with('Z'));
        assert_eq!(ws.integrity_check().expect("check"), "ok");
    }

    #[test]
    fn workspace_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Workspace>();
    }
}
