//! The workspace: one SQLite database (`workspace.sqlite`, WAL mode) holding runs, metric series,
//! checkpoints and run logs, plus an `artifacts/` folder beside it for checkpoint tensors.
//!
//! Several processes use one workspace at once (the GUI, CLI commands, one worker per run). Each
//! opens its own [`Workspace`]; writes take the lock up front with `BEGIN IMMEDIATE` and wait for
//! it up to [`BUSY_TIMEOUT`], so nobody sees "database is locked" under ordinary contention.
//! Readers never block writers (WAL).

//!
//! - `open`: the folder, the connection's settings, migrations (`schema`);
//! - `runs`: runs, their status and stop requests;
//! - `metrics`: metric series;
//! - `checkpoints`: checkpoint folders;
//! - `logs`: run logs;
//! - `traces`: the completions of RL runs and evals, token by token;
//! - `evaluations`: stored evaluations of checkpoints and models, problem by problem;
//! - `token_columns`: the little-endian token columns traces and evaluation items share.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;

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
        "run {run} has no checkpoint at step {step} (its checkpoints are at steps: {steps}; \
         workspace database {path})"
    )]
    NoCheckpointAtStep {
        path: PathBuf,
        run: RunId,
        step: u64,
        /// The run's checkpoint steps, comma-separated, or `none`.
        steps: String,
    },
    #[error("workspace database {path}: evaluation {id} not found")]
    EvaluationNotFound {
        path: PathBuf,
        id: evaluations::EvaluationId,
    },
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

mod checkpoints;
mod datasets;
mod evaluations;
mod import;
mod logs;
mod metrics;
mod open;
mod runs;
mod schema;
mod token_columns;
mod traces;

pub use checkpoints::CheckpointRecord;
pub use datasets::DatasetRecord;
pub use evaluations::{EvaluationId, EvaluationItem, EvaluationRecord, EvaluationSummary};
pub use import::{ImportError, Imported};
pub use metrics::MetricPoint;
pub use runs::{ParseRunStatusError, RunRecord, RunStatus};
pub use traces::{PromptPoint, Trace, TraceKind, TraceToken};

impl Workspace {
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
}

/// A workspace in a fresh temporary folder, for the tests of every part of the store.
#[cfg(test)]
fn test_workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Workspace::open(dir.path()).expect("open workspace");
    (dir, workspace)
}
