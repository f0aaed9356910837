//! The workspace schema and its migrations.
//!
//! `PRAGMA user_version` holds the number of entries of [`MIGRATIONS`] applied to a database.
//! Opening applies the missing ones in one `BEGIN IMMEDIATE` transaction, so two processes that
//! open a fresh workspace at the same moment never both migrate it. Migrations are append-only:
//! never edit one that has shipped, add a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// The SQL expression for "now" as an RFC 3339 UTC timestamp with milliseconds.
macro_rules! now_sql {
    () => {
        "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
    };
}
pub(crate) use now_sql;

/// Every schema change, oldest first. `user_version` = how many have been applied.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, interned metric series, checkpoints, run logs.
    concat!(
        "
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL,
    status         TEXT    NOT NULL
                   CHECK (status IN ('queued', 'running', 'stopping', 'stopped', 'completed', 'failed')),
    config_toml    TEXT    NOT NULL,
    created_at     TEXT    NOT NULL DEFAULT (",
        now_sql!(),
        "),
    updated_at     TEXT    NOT NULL DEFAULT (",
        now_sql!(),
        "),
    message        TEXT,
    worker_pid     INTEGER CHECK (worker_pid IS NULL OR worker_pid >= 0),
    stop_requested INTEGER NOT NULL DEFAULT 0 CHECK (stop_requested IN (0, 1))
) STRICT;

-- A run's configuration is the immutable record of what it was started with.
CREATE TRIGGER runs_config_toml_immutable BEFORE UPDATE OF config_toml ON runs
BEGIN
    SELECT RAISE(ABORT, 'runs.config_toml is immutable');
END;

CREATE TABLE metric_names (
    id   INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
) STRICT;

-- Narrow and keyed by (run, series, step): reading one series is one index range scan.
-- `value` is NULL for NaN (SQLite stores NaN as NULL); `wall_time` is Unix seconds.
CREATE TABLE metrics (
    run_id    INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name_id   INTEGER NOT NULL REFERENCES metric_names(id),
    step      INTEGER NOT NULL CHECK (step >= 0),
    value     REAL,
    wall_time REAL    NOT NULL,
    PRIMARY KEY (run_id, name_id, step)
) WITHOUT ROWID, STRICT;

CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id     INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step       INTEGER NOT NULL CHECK (step >= 0),
    path       TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (",
        now_sql!(),
        "),
    UNIQUE (run_id, step, kind)
) STRICT;

CREATE TABLE run_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    time    TEXT    NOT NULL DEFAULT (",
        now_sql!(),
        "),
    level   TEXT    NOT NULL,
    message TEXT    NOT NULL
) STRICT;
CREATE INDEX run_logs_by_run ON run_logs(run_id, id);
"
    ),
    // 2: rollouts of RL runs and eval generations, one row per completion, token columns as
    // little-endian binary (see store/traces.rs for the layout).
    "
CREATE TABLE traces (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step          INTEGER NOT NULL CHECK (step >= 0),
    kind          TEXT    NOT NULL CHECK (kind IN ('rollout', 'eval')),
    prompt_index  INTEGER NOT NULL CHECK (prompt_index >= 0),
    sample_index  INTEGER NOT NULL CHECK (sample_index >= 0),
    prompt        TEXT    NOT NULL,
    completion    TEXT    NOT NULL,
    token_ids     BLOB    NOT NULL,
    logprobs      BLOB    NOT NULL,
    entropies     BLOB    NOT NULL,
    top_k         INTEGER NOT NULL CHECK (top_k >= 0),
    top           BLOB    NOT NULL,
    loss_mask     BLOB    NOT NULL,
    reward        REAL,
    rewards_json  TEXT    NOT NULL,
    advantage     REAL,
    correct       INTEGER CHECK (correct IS NULL OR correct IN (0, 1)),
    finish_reason TEXT    NOT NULL,
    UNIQUE (run_id, step, kind, prompt_index, sample_index)
) STRICT;
",
    // 3: datasets opened in the window, with the column → role mapping chosen for them.
    "
CREATE TABLE datasets (
    path         TEXT    PRIMARY KEY,
    mapping_json TEXT,
    opened_at    REAL    NOT NULL
) STRICT;
",
    // 4: evaluations of a checkpoint (or a model) on a built-in task or a dataset file, with
    // each problem's greedy answer (see store/evaluations.rs). `seed` holds a u64's bits.
    concat!(
        "
CREATE TABLE evaluations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    checkpoint_id  INTEGER REFERENCES checkpoints(id) ON DELETE CASCADE,
    run_id         INTEGER REFERENCES runs(id) ON DELETE CASCADE,
    step           INTEGER CHECK (step IS NULL OR step >= 0),
    model          TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    difficulty     INTEGER CHECK (difficulty IS NULL OR difficulty >= 0),
    seed           INTEGER,
    count          INTEGER NOT NULL CHECK (count >= 0),
    chat           INTEGER NOT NULL CHECK (chat IN (0, 1)),
    max_new_tokens INTEGER NOT NULL CHECK (max_new_tokens >= 0),
    accuracy       REAL    NOT NULL,
    created_at     TEXT    NOT NULL DEFAULT (",
        now_sql!(),
        ")
) STRICT;
CREATE INDEX evaluations_by_checkpoint ON evaluations(checkpoint_id, id);

CREATE TABLE evaluation_items (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations(id) ON DELETE CASCADE,
    item_index    INTEGER NOT NULL CHECK (item_index >= 0),
    prompt        TEXT    NOT NULL,
    answer        TEXT,
    completion    TEXT    NOT NULL,
    correct       INTEGER NOT NULL CHECK (correct IN (0, 1)),
    finish_reason TEXT    NOT NULL,
    token_ids     BLOB    NOT NULL,
    logprobs      BLOB    NOT NULL,
    entropies     BLOB    NOT NULL,
    top_k         INTEGER NOT NULL CHECK (top_k >= 0),
    top           BLOB    NOT NULL,
    PRIMARY KEY (evaluation_id, item_index)
) WITHOUT ROWID, STRICT;
"
    ),
    // 5: the older points of a metric series packed into chunks, little-endian arrays of steps
    // (i64), values (f64, NaN kept) and wall times (f64); the newest points stay rows of
    // `metrics` (see store/metrics.rs). Existing series stay rows until their next write.
    "
CREATE TABLE metric_chunks (
    run_id        INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name_id       INTEGER NOT NULL REFERENCES metric_names(id),
    first_step    INTEGER NOT NULL CHECK (first_step >= 0),
    last_step     INTEGER NOT NULL CHECK (last_step >= first_step),
    points        INTEGER NOT NULL CHECK (points > 0),
    steps         BLOB    NOT NULL,
    metric_values BLOB    NOT NULL,
    wall_times    BLOB    NOT NULL,
    PRIMARY KEY (run_id, name_id, first_step)
) WITHOUT ROWID, STRICT;
",
];

/// The schema version this code writes: the number of known migrations.
pub fn current_version() -> i64 {
    // A list of a few entries always fits.
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

fn user_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| StoreError::Sqlite {
            path: path.to_path_buf(),
            op: "read the schema version",
            source,
        })
}

fn check_not_newer(found: i64, path: &Path) -> Result<(), StoreError> {
    if found > current_version() {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported: current_version(),
        });
    }
    Ok(())
}

/// Brings the database at `path` up to [`current_version`]; returns how many migrations ran.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<usize, StoreError> {
    // Fast path without the write lock: most opens find an up-to-date database.
    let found = user_version(conn, path)?;
    check_not_newer(found, path)?;
    if found == current_version() {
        return Ok(0);
    }

    let sql_err = |op: &'static str| {
        move |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_err("begin the migration transaction"))?;
    // Another process may have migrated between the check above and taking the lock.
    let found = user_version(&tx, path)?;
    check_not_newer(found, path)?;
    let start = usize::try_from(found).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration {
                path: path.to_path_buf(),
                version: index + 1,
                source,
            })?;
    }
    tx.pragma_update(None, "user_version", current_version())
        .map_err(sql_err("write the schema version"))?;
    tx.commit().map_err(sql_err("commit the migrations"))?;
    let applied = MIGRATIONS.len() - start.min(MIGRATIONS.len());
    tracing::debug!(path = %path.display(), applied, version = current_version(), "migrated workspace");
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Workspace;

    #[test]
    fn reopening_runs_no_migrations() {
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = Workspace::open(dir.path()).expect("open");
        let run = workspace.create_run("kept", "x = 1").expect("create");
        let db_path = workspace.db_path();
        drop(workspace);

        let mut conn = Connection::open(&db_path).expect("raw open");
        assert_eq!(migrate(&mut conn, &db_path).expect("migrate"), 0);
        assert_eq!(
            user_version(&conn, &db_path).expect("version"),
            current_version()
        );
        drop(conn);

        let workspace = Workspace::open(dir.path()).expect("reopen");
        assert_eq!(workspace.run(run).expect("run").name, "kept");
    }

    #[test]
    fn fresh_database_applies_every_migration() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = dir.path().join("fresh.sqlite");
        let mut conn = Connection::open(&db_path).expect("open");
        assert_eq!(
            migrate(&mut conn, &db_path).expect("migrate"),
            MIGRATIONS.len()
        );
        assert_eq!(
            user_version(&conn, &db_path).expect("version"),
            current_version()
        );
    }

    #[test]
    fn newer_schema_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db_path = Workspace::open(dir.path()).expect("open").db_path();
        let conn = Connection::open(&db_path).expect("raw open");
        conn.pragma_update(None, "user_version", 99)
            .expect("bump version");
        drop(conn);

        let error = Workspace::open(dir.path()).expect_err("newer schema");
        assert!(
            matches!(error, StoreError::SchemaTooNew { found: 99, .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&db_path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("99"), "{message}");
        assert!(
            message.contains(&current_version().to_string()),
            "{message}"
        );
    }
}
