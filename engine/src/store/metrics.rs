//! Metric series: `(step, name, value)` points per run, replaced on rewrite, truncated on
//! resume, read back in step order.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{RunId, StoreError, Workspace};

fn wall_time_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// One point of a metric series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricPoint {
    pub step: u64,
    /// NaN where the run logged NaN.
    pub value: f64,
    /// When it was logged, Unix seconds.
    pub wall_time: f64,
}

impl Workspace {
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

    /// The points of one series after step `after` (all of them for `None`), in step order,
    /// at most `limit`, with their wall time: what a live reader asks for each time it looks.
    pub fn metric_points_after(
        &self,
        run: RunId,
        name: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MetricPoint>, StoreError> {
        let after = after.map_or(Ok(-1), |s| self.step_to_sql(s))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let rows = conn
            .prepare_cached(
                "SELECT metrics.step, metrics.value, metrics.wall_time FROM metrics
                 WHERE metrics.run_id = ?1
                   AND metrics.name_id = (SELECT id FROM metric_names WHERE name = ?2)
                   AND metrics.step > ?3
                 ORDER BY metrics.step LIMIT ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, name, after, limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<f64>>(1)?,
                        row.get::<_, f64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err("read a metric series"))?;
        rows.into_iter()
            .map(|(step, value, wall_time)| {
                Ok(MetricPoint {
                    step: self.step_from_sql(step)?,
                    value: value.unwrap_or(f64::NAN),
                    wall_time,
                })
            })
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
}

#[cfg(test)]
mod tests {
    use super::super::test_workspace as open_temp;
    use super::*;

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

        // Incremental reads: what comes after the last step seen, in order, bounded.
        let steps = |after, limit| -> Vec<(u64, f64)> {
            ws.metric_points_after(run, "loss", after, limit)
                .expect("points")
                .iter()
                .map(|p| (p.step, p.value))
                .collect()
        };
        assert_eq!(steps(None, 2), vec![(1, 9.0), (2, 8.0)]);
        assert_eq!(steps(Some(2), 100), vec![(3, 42.0), (4, 6.0), (5, 5.0)]);
        assert!(steps(Some(5), 100).is_empty());
        let nan = ws
            .metric_points_after(run, "grad_norm", None, 10)
            .expect("points");
        assert!(nan[0].value.is_nan() && nan[0].wall_time > 1.6e9);
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
}
