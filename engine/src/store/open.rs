//! Opening a workspace: its folder, database and `artifacts/`, the connection's settings (WAL,
//! busy timeout, foreign keys) and the migrations ([`super::schema`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

use super::{
    ARTIFACTS_DIR_NAME, BUSY_TIMEOUT, DB_FILE_NAME, RunId, StoreError, WORKSPACE_ENV, Workspace,
    schema,
};

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

#[cfg(test)]
mod tests {
    use super::super::{MIGRATIONS, RunStatus};
    use super::*;

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
    fn workspace_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Workspace>();
    }
}
