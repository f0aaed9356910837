//! Run logs: timestamped lines with a level, per run.

use rusqlite::params;

use super::{RunId, StoreError, Workspace};

impl Workspace {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace as open_temp;

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
}
