//! Metric series: `(step, name, value)` points per run, replaced on rewrite, truncated on
//! resume, read back in step order.
//!
//! A series lives in two tables. Its newest points are rows of `metrics`, one per point, which
//! writers upsert; its older points are packed [`CHUNK_POINTS`] at a time into `metric_chunks`
//! as little-endian arrays (steps `i64`, values `f64` with NaN kept, wall times `f64`), so a
//! 1M-point series reads as a few hundred blobs instead of a million rows. Per series:
//! - every chunk's steps are below every row's steps, and chunks do not overlap;
//! - a series with chunks keeps at least one row, so what reads `metrics` alone (the series of a
//!   run, its last step) sees every series and its newest point.
//!
//! Every write transaction ends by compacting the series it touched: once a series has
//! 2 × [`CHUNK_POINTS`] rows, its oldest rows move into chunks, leaving between one and two
//! chunks' worth. A write at or below the last chunk's last step rewrites the chunk it falls
//! in. Truncation drops the chunks after the step and, when no row is left, turns the last
//! chunk back into rows (cut at the step).

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{RunId, StoreError, Workspace};

/// Points per chunk of `metric_chunks`; a series keeps at least this many newest points as rows.
const CHUNK_POINTS: usize = 4096;
/// [`CHUNK_POINTS`] for SQL.
const CHUNK_POINTS_SQL: i64 = CHUNK_POINTS as i64;
/// Bytes per packed number in a chunk's blobs.
const WORD_BYTES: usize = 8;

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

/// The 8-byte words of a packed blob (its length is checked to be a multiple of 8 first).
fn words(blob: &[u8]) -> impl Iterator<Item = [u8; WORD_BYTES]> + '_ {
    blob.chunks_exact(WORD_BYTES).map(|word| {
        let mut bytes = [0; WORD_BYTES];
        bytes.copy_from_slice(word);
        bytes
    })
}

fn i64_blob(numbers: &[i64]) -> Vec<u8> {
    numbers.iter().flat_map(|n| n.to_le_bytes()).collect()
}

fn f64_blob(numbers: &[f64]) -> Vec<u8> {
    numbers.iter().flat_map(|n| n.to_le_bytes()).collect()
}

/// One row of `metric_chunks` as read, blobs borrowed from the statement.
struct StoredChunk<'r> {
    first_step: i64,
    last_step: i64,
    points: i64,
    steps: &'r [u8],
    values: &'r [u8],
    /// Absent when the query did not select them.
    wall_times: Option<&'r [u8]>,
}

/// The columns every chunk query selects, in this order, then `wall_times` when wanted.
macro_rules! chunk_columns {
    () => {
        "first_step, last_step, points, steps, metric_values"
    };
}

impl<'r> StoredChunk<'r> {
    fn from_row(row: &'r Row<'_>, with_wall_times: bool) -> rusqlite::Result<Self> {
        Ok(Self {
            first_step: row.get(0)?,
            last_step: row.get(1)?,
            points: row.get(2)?,
            steps: row.get_ref(3)?.as_blob()?,
            values: row.get_ref(4)?.as_blob()?,
            wall_times: if with_wall_times {
                Some(row.get_ref(5)?.as_blob()?)
            } else {
                None
            },
        })
    }

    /// Steps as `u64` (valid once [`Workspace::check_chunk`] passed: non-negative `i64`s).
    fn steps(&self) -> impl Iterator<Item = u64> + '_ {
        words(self.steps).map(u64::from_le_bytes)
    }

    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        words(self.values).map(f64::from_le_bytes)
    }

    fn wall_times(&self) -> impl Iterator<Item = f64> + '_ {
        words(self.wall_times.unwrap_or_default()).map(f64::from_le_bytes)
    }
}

/// One chunk decoded for rewriting: parallel arrays in step order.
#[derive(Debug)]
struct Chunk {
    steps: Vec<i64>,
    values: Vec<f64>,
    wall_times: Vec<f64>,
}

impl Chunk {
    /// Replaces the point at `step`, or inserts it in step order.
    fn upsert(&mut self, step: i64, value: f64, wall_time: f64) {
        match self.steps.binary_search(&step) {
            Ok(index) => {
                self.values[index] = value;
                self.wall_times[index] = wall_time;
            }
            Err(index) => {
                self.steps.insert(index, step);
                self.values.insert(index, value);
                self.wall_times.insert(index, wall_time);
            }
        }
    }

    /// Drops the points after `step`; returns how many.
    fn truncate_after(&mut self, step: i64) -> usize {
        let kept = self.steps.partition_point(|&s| s <= step);
        let dropped = self.steps.len() - kept;
        self.steps.truncate(kept);
        self.values.truncate(kept);
        self.wall_times.truncate(kept);
        dropped
    }
}

/// What one write transaction does to one series.
struct SeriesWrite<'a> {
    name: &'a str,
    id: i64,
    /// The last chunk's last step: writes at or below it go into the chunks.
    chunked_through: Option<i64>,
    /// `(step, value)` writes into the chunks, in the order given.
    chunk_writes: Vec<(i64, f64)>,
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
        const OP: &str = "read a metric series";
        let mut guard = self.conn();
        // One snapshot for the chunks and the rows: a compaction committed between the two
        // reads would otherwise hide the points it moved.
        let conn = guard
            .transaction()
            .map_err(self.sql_err("begin a read transaction"))?;
        let Some(name_id) = self.metric_name_id(&conn, name, OP)? else {
            return Ok(Vec::new());
        };
        let mut series = Vec::new();
        {
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    chunk_columns!(),
                    " FROM metric_chunks WHERE run_id = ?1 AND name_id = ?2 ORDER BY first_step"
                ))
                .map_err(self.sql_err(OP))?;
            let mut chunks = stmt
                .query(params![run, name_id])
                .map_err(self.sql_err(OP))?;
            while let Some(row) = chunks.next().map_err(self.sql_err(OP))? {
                let chunk = StoredChunk::from_row(row, false).map_err(self.sql_err(OP))?;
                series.reserve(self.check_chunk(run, name, &chunk)?);
                series.extend(chunk.steps().zip(chunk.values()));
            }
        }
        let rows = conn
            .prepare_cached(
                "SELECT step, value FROM metrics WHERE run_id = ?1 AND name_id = ?2
                 ORDER BY step",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, name_id], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Option<f64>>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err(OP))?;
        series.reserve(rows.len());
        for (step, value) in rows {
            series.push((self.step_from_sql(step)?, value.unwrap_or(f64::NAN)));
        }
        Ok(series)
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
        const OP: &str = "read a metric series";
        let after_sql = after.map_or(Ok(-1), |s| self.step_to_sql(s))?;
        let mut guard = self.conn();
        // One snapshot for the chunks and the rows: a compaction committed between the two
        // reads would otherwise hide the points it moved.
        let conn = guard
            .transaction()
            .map_err(self.sql_err("begin a read transaction"))?;
        let Some(name_id) = self.metric_name_id(&conn, name, OP)? else {
            return Ok(Vec::new());
        };
        let mut points = Vec::new();
        {
            // The chunk holding `after` (found by a seek on the key) and those after it.
            let mut stmt = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    chunk_columns!(),
                    ", wall_times FROM metric_chunks
                     WHERE run_id = ?1 AND name_id = ?2 AND last_step > ?3
                       AND first_step >= COALESCE((SELECT MAX(first_step) FROM metric_chunks
                           WHERE run_id = ?1 AND name_id = ?2 AND first_step <= ?3), 0)
                     ORDER BY first_step"
                ))
                .map_err(self.sql_err(OP))?;
            let mut chunks = stmt
                .query(params![run, name_id, after_sql])
                .map_err(self.sql_err(OP))?;
            while points.len() < limit {
                let Some(row) = chunks.next().map_err(self.sql_err(OP))? else {
                    break;
                };
                let chunk = StoredChunk::from_row(row, true).map_err(self.sql_err(OP))?;
                self.check_chunk(run, name, &chunk)?;
                let wanted = limit - points.len();
                points.extend(
                    chunk
                        .steps()
                        .zip(chunk.values())
                        .zip(chunk.wall_times())
                        .filter(|&((step, _), _)| after.is_none_or(|after| step > after))
                        .take(wanted)
                        .map(|((step, value), wall_time)| MetricPoint {
                            step,
                            value,
                            wall_time,
                        }),
                );
            }
        }
        if points.len() >= limit {
            return Ok(points);
        }
        let rows_limit = i64::try_from(limit - points.len()).unwrap_or(i64::MAX);
        let rows = conn
            .prepare_cached(
                "SELECT step, value, wall_time FROM metrics
                 WHERE run_id = ?1 AND name_id = ?2 AND step > ?3
                 ORDER BY step LIMIT ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, name_id, after_sql, rows_limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<f64>>(1)?,
                        row.get::<_, f64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err(OP))?;
        for (step, value, wall_time) in rows {
            points.push(MetricPoint {
                step: self.step_from_sql(step)?,
                value: value.unwrap_or(f64::NAN),
                wall_time,
            });
        }
        Ok(points)
    }

    /// Deletes the run's metrics with step > `step` (resuming from a checkpoint at `step` drops
    /// what came after it). Returns how many points were deleted.
    pub fn truncate_metrics_after(&self, run: RunId, step: u64) -> Result<usize, StoreError> {
        let step = self.step_to_sql(step)?;
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.sql_err("begin a write transaction"))?;
        let series = tx
            .prepare_cached(concat!(
                run_name_ids_cte!(),
                "SELECT ids.id, metric_names.name FROM ids
                 JOIN metric_names ON metric_names.id = ids.id"
            ))
            .and_then(|mut stmt| {
                stmt.query_map([run], |row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))?
                    .collect::<Result<Vec<(i64, String)>, _>>()
            })
            .map_err(self.sql_err("list a run's metric series"))?;
        let mut deleted = 0;
        // Per series, so each delete is an index range scan.
        for (name_id, name) in &series {
            deleted += self.truncate_series(&tx, run, *name_id, name, step)?;
        }
        tx.commit()
            .map_err(self.sql_err("commit a metrics truncation"))?;
        Ok(deleted)
    }

    fn truncate_series(
        &self,
        conn: &Connection,
        run: RunId,
        name_id: i64,
        name: &str,
        step: i64,
    ) -> Result<usize, StoreError> {
        const OP: &str = "truncate metrics";
        let mut deleted = conn
            .prepare_cached("DELETE FROM metrics WHERE run_id = ?1 AND name_id = ?2 AND step > ?3")
            .and_then(|mut stmt| stmt.execute(params![run, name_id, step]))
            .map_err(self.sql_err(OP))?;
        let chunk_points = conn
            .prepare_cached(
                "SELECT COALESCE(SUM(points), 0) FROM metric_chunks
                 WHERE run_id = ?1 AND name_id = ?2 AND first_step > ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run, name_id, step], |row| row.get::<_, i64>(0))
            })
            .map_err(self.sql_err(OP))?;
        if chunk_points > 0 {
            conn.prepare_cached(
                "DELETE FROM metric_chunks WHERE run_id = ?1 AND name_id = ?2 AND first_step > ?3",
            )
            .and_then(|mut stmt| stmt.execute(params![run, name_id, step]))
            .map_err(self.sql_err(OP))?;
            deleted += usize::try_from(chunk_points).unwrap_or(usize::MAX);
        }
        // The newest points must stay rows: with none left, the last chunk (cut at `step`,
        // which it may straddle) becomes rows again.
        let has_rows = conn
            .prepare_cached("SELECT 1 FROM metrics WHERE run_id = ?1 AND name_id = ?2")
            .and_then(|mut stmt| stmt.exists(params![run, name_id]))
            .map_err(self.sql_err(OP))?;
        if has_rows {
            return Ok(deleted);
        }
        let last_chunk = conn
            .prepare_cached(
                "SELECT first_step FROM metric_chunks WHERE run_id = ?1 AND name_id = ?2
                 ORDER BY first_step DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run, name_id], |row| row.get::<_, i64>(0))
                    .optional()
            })
            .map_err(self.sql_err(OP))?;
        let Some(first_step) = last_chunk else {
            return Ok(deleted);
        };
        let mut chunk = self.load_chunk(conn, run, name_id, name, first_step)?;
        deleted += chunk.truncate_after(step);
        self.delete_chunk(conn, run, name_id, first_step)?;
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO metrics (run_id, name_id, step, value, wall_time)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(self.sql_err(OP))?;
        for ((step, value), wall_time) in
            chunk.steps.iter().zip(&chunk.values).zip(&chunk.wall_times)
        {
            insert
                .execute(params![run, name_id, step, value, wall_time])
                .map_err(self.sql_err(OP))?;
        }
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
        let mut series: Vec<SeriesWrite<'a>> = Vec::new();
        {
            let mut find_name = tx
                .prepare_cached("SELECT id FROM metric_names WHERE name = ?1")
                .map_err(self.sql_err("look up a metric name"))?;
            let mut add_name = tx
                .prepare_cached("INSERT INTO metric_names (name) VALUES (?1)")
                .map_err(self.sql_err("add a metric name"))?;
            let mut chunked_through = tx
                .prepare_cached(
                    "SELECT last_step FROM metric_chunks WHERE run_id = ?1 AND name_id = ?2
                     ORDER BY first_step DESC LIMIT 1",
                )
                .map_err(self.sql_err("look up a metric series' chunks"))?;
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO metrics (run_id, name_id, step, value, wall_time)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (run_id, name_id, step) DO UPDATE
                     SET value = excluded.value, wall_time = excluded.wall_time",
                )
                .map_err(self.sql_err("write a metric"))?;
            let mut series_index: HashMap<&str, usize> = HashMap::new();
            for (step, name, value) in rows {
                let index = match series_index.get(name) {
                    Some(&index) => index,
                    None => {
                        let existing = find_name
                            .query_row([name], |row| row.get::<_, i64>(0))
                            .optional()
                            .map_err(self.sql_err("look up a metric name"))?;
                        let (id, chunked) = match existing {
                            Some(id) => {
                                let chunked = chunked_through
                                    .query_row(params![run, id], |row| row.get::<_, i64>(0))
                                    .optional()
                                    .map_err(self.sql_err("look up a metric series' chunks"))?;
                                (id, chunked)
                            }
                            None => {
                                add_name
                                    .execute([name])
                                    .map_err(self.sql_err("add a metric name"))?;
                                (tx.last_insert_rowid(), None)
                            }
                        };
                        series.push(SeriesWrite {
                            name,
                            id,
                            chunked_through: chunked,
                            chunk_writes: Vec::new(),
                        });
                        series_index.insert(name, series.len() - 1);
                        series.len() - 1
                    }
                };
                let target = &mut series[index];
                if target.chunked_through.is_some_and(|last| step <= last) {
                    target.chunk_writes.push((step, value));
                } else {
                    upsert
                        .execute(params![run, target.id, step, value, wall_time])
                        .map_err(self.sql_err("write a metric"))?;
                }
            }
        }
        for target in &series {
            if !target.chunk_writes.is_empty() {
                self.write_into_chunks(&tx, run, target, wall_time)?;
            }
            self.compact_series(&tx, run, target.id)?;
        }
        tx.commit().map_err(self.sql_err("commit metrics"))
    }

    /// Applies writes at or below the last chunk's last step to the chunks they fall in (a step
    /// between two chunks goes to the earlier one, one before the first chunk to the first).
    fn write_into_chunks(
        &self,
        conn: &Connection,
        run: RunId,
        target: &SeriesWrite<'_>,
        wall_time: f64,
    ) -> Result<(), StoreError> {
        const OP: &str = "rewrite a metric chunk";
        let first_steps = conn
            .prepare_cached(
                "SELECT first_step FROM metric_chunks WHERE run_id = ?1 AND name_id = ?2
                 ORDER BY first_step",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, target.id], |row| row.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err(OP))?;
        let mut by_chunk: BTreeMap<i64, Vec<(i64, f64)>> = BTreeMap::new();
        for &(step, value) in &target.chunk_writes {
            let index = first_steps.partition_point(|&first| first <= step);
            let Some(&first_step) = first_steps.get(index.saturating_sub(1)) else {
                return Err(self.invalid(format!(
                    "run {run}, series {:?}: step {step} is at or below the chunked steps, \
                     but the series has no chunk",
                    target.name
                )));
            };
            by_chunk.entry(first_step).or_default().push((step, value));
        }
        for (first_step, writes) in by_chunk {
            let mut chunk = self.load_chunk(conn, run, target.id, target.name, first_step)?;
            for (step, value) in writes {
                chunk.upsert(step, value, wall_time);
            }
            self.delete_chunk(conn, run, target.id, first_step)?;
            self.insert_chunk(conn, run, target.id, &chunk)?;
        }
        Ok(())
    }

    /// Moves the oldest rows of a series into chunks once it has 2 × [`CHUNK_POINTS`] rows,
    /// keeping between one and two chunks' worth of rows.
    fn compact_series(
        &self,
        conn: &Connection,
        run: RunId,
        name_id: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "compact a metric series";
        let span = conn
            .prepare_cached(
                "SELECT MIN(step), MAX(step) FROM metrics WHERE run_id = ?1 AND name_id = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![run, name_id], |row| {
                    Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Option<i64>>(1)?))
                })
            })
            .map_err(self.sql_err(OP))?;
        let (Some(min_step), Some(max_step)) = span else {
            return Ok(());
        };
        // Two index seeks rule out most writes before counting: steps are distinct integers.
        if max_step - min_step < 2 * CHUNK_POINTS_SQL - 1 {
            return Ok(());
        }
        let rows = conn
            .prepare_cached("SELECT COUNT(*) FROM metrics WHERE run_id = ?1 AND name_id = ?2")
            .and_then(|mut stmt| stmt.query_row(params![run, name_id], |row| row.get::<_, i64>(0)))
            .map_err(self.sql_err(OP))?;
        if rows < 2 * CHUNK_POINTS_SQL {
            return Ok(());
        }
        let moved_points = (rows - CHUNK_POINTS_SQL) / CHUNK_POINTS_SQL * CHUNK_POINTS_SQL;
        let moved = conn
            .prepare_cached(
                "SELECT step, value, wall_time FROM metrics WHERE run_id = ?1 AND name_id = ?2
                 ORDER BY step LIMIT ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![run, name_id, moved_points], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Option<f64>>(1)?,
                        row.get::<_, f64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(self.sql_err(OP))?;
        let Some(&(last_moved, _, _)) = moved.last() else {
            return Ok(());
        };
        for part in moved.chunks(CHUNK_POINTS) {
            let chunk = Chunk {
                steps: part.iter().map(|&(step, _, _)| step).collect(),
                values: part
                    .iter()
                    .map(|&(_, value, _)| value.unwrap_or(f64::NAN))
                    .collect(),
                wall_times: part.iter().map(|&(_, _, wall_time)| wall_time).collect(),
            };
            self.insert_chunk(conn, run, name_id, &chunk)?;
        }
        conn.prepare_cached(
            "DELETE FROM metrics WHERE run_id = ?1 AND name_id = ?2 AND step <= ?3",
        )
        .and_then(|mut stmt| stmt.execute(params![run, name_id, last_moved]))
        .map_err(self.sql_err(OP))?;
        Ok(())
    }

    fn metric_name_id(
        &self,
        conn: &Connection,
        name: &str,
        op: &'static str,
    ) -> Result<Option<i64>, StoreError> {
        conn.prepare_cached("SELECT id FROM metric_names WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
            .map_err(self.sql_err(op))
    }

    /// Checks a stored chunk against its row: each blob holds `points` words, and the steps
    /// are non-negative, strictly increasing, from `first_step` to `last_step`. Returns
    /// `points`.
    fn check_chunk(
        &self,
        run: RunId,
        name: &str,
        chunk: &StoredChunk<'_>,
    ) -> Result<usize, StoreError> {
        let bad = |what: String| {
            self.invalid(format!(
                "run {run}, series {name:?}, metric chunk from step {}: {what}",
                chunk.first_step
            ))
        };
        let points = usize::try_from(chunk.points)
            .ok()
            .filter(|&points| points > 0)
            .ok_or_else(|| bad(format!("{} points", chunk.points)))?;
        let bytes = points
            .checked_mul(WORD_BYTES)
            .ok_or_else(|| bad(format!("{points} points")))?;
        let blobs = [
            ("steps", Some(chunk.steps)),
            ("values", Some(chunk.values)),
            ("wall times", chunk.wall_times),
        ];
        for (what, blob) in blobs {
            if let Some(blob) = blob.filter(|blob| blob.len() != bytes) {
                return Err(bad(format!(
                    "{what} take {} bytes for {points} points of {WORD_BYTES} bytes",
                    blob.len()
                )));
            }
        }
        let mut previous: Option<i64> = None;
        for step in words(chunk.steps).map(i64::from_le_bytes) {
            if step < 0 || previous.is_some_and(|previous| step <= previous) {
                return Err(bad(format!(
                    "steps are not increasing and non-negative at step {step}"
                )));
            }
            previous = Some(step);
        }
        let first = words(chunk.steps).next().map(i64::from_le_bytes);
        if first != Some(chunk.first_step) || previous != Some(chunk.last_step) {
            return Err(bad(format!(
                "steps run from {first:?} to {previous:?}, the row says {} to {}",
                chunk.first_step, chunk.last_step
            )));
        }
        Ok(points)
    }

    fn load_chunk(
        &self,
        conn: &Connection,
        run: RunId,
        name_id: i64,
        name: &str,
        first_step: i64,
    ) -> Result<Chunk, StoreError> {
        const OP: &str = "read a metric chunk";
        let mut stmt = conn
            .prepare_cached(concat!(
                "SELECT ",
                chunk_columns!(),
                ", wall_times FROM metric_chunks
                 WHERE run_id = ?1 AND name_id = ?2 AND first_step = ?3"
            ))
            .map_err(self.sql_err(OP))?;
        let mut rows = stmt
            .query(params![run, name_id, first_step])
            .map_err(self.sql_err(OP))?;
        let Some(row) = rows.next().map_err(self.sql_err(OP))? else {
            return Err(self.invalid(format!(
                "run {run}, series {name:?}: no metric chunk from step {first_step}"
            )));
        };
        let stored = StoredChunk::from_row(row, true).map_err(self.sql_err(OP))?;
        self.check_chunk(run, name, &stored)?;
        Ok(Chunk {
            steps: words(stored.steps).map(i64::from_le_bytes).collect(),
            values: stored.values().collect(),
            wall_times: stored.wall_times().collect(),
        })
    }

    /// Stores a chunk (nothing for an empty one); its key must be free.
    fn insert_chunk(
        &self,
        conn: &Connection,
        run: RunId,
        name_id: i64,
        chunk: &Chunk,
    ) -> Result<(), StoreError> {
        let (Some(&first_step), Some(&last_step)) = (chunk.steps.first(), chunk.steps.last())
        else {
            return Ok(());
        };
        let points = i64::try_from(chunk.steps.len()).unwrap_or(i64::MAX);
        conn.prepare_cached(
            "INSERT INTO metric_chunks (run_id, name_id, first_step, last_step, points, steps,
                 metric_values, wall_times)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                run,
                name_id,
                first_step,
                last_step,
                points,
                i64_blob(&chunk.steps),
                f64_blob(&chunk.values),
                f64_blob(&chunk.wall_times),
            ])
        })
        .map_err(self.sql_err("write a metric chunk"))?;
        Ok(())
    }

    fn delete_chunk(
        &self,
        conn: &Connection,
        run: RunId,
        name_id: i64,
        first_step: i64,
    ) -> Result<(), StoreError> {
        conn.prepare_cached(
            "DELETE FROM metric_chunks WHERE run_id = ?1 AND name_id = ?2 AND first_step = ?3",
        )
        .and_then(|mut stmt| stmt.execute(params![run, name_id, first_step]))
        .map_err(self.sql_err("delete a metric chunk"))?;
        Ok(())
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

    // Chunked storage. The expected series are built from the same formulas as what is
    // written, never read back through the code under test.

    /// 3 chunks' worth and a bit: two chunks and a row tail once written.
    const SERIES_POINTS: usize = 3 * CHUNK_POINTS + 17;
    /// Uneven batch sizes, cycled; a batch of 1 goes through `log_metrics` with `lr` too.
    const BATCH_SIZES: [usize; 11] = [1, 2, 700, 3, 5000, 64, 1999, 1, 10, 4096, 1];

    type Series = BTreeMap<u64, f64>;

    /// Steps with gaps (3 apart), so points can be inserted between stored ones.
    fn step_at(index: usize) -> u64 {
        3 * index as u64
    }

    fn loss_at(index: usize) -> f64 {
        if index % 97 == 5 {
            f64::NAN
        } else {
            index as f64 * 0.25 - 100.0
        }
    }

    fn lr_at(index: usize) -> f64 {
        1e-4 / (1.0 + index as f64)
    }

    /// Writes `loss` (and `lr` on single-step batches) for indices `from..SERIES_POINTS` in
    /// uneven batches, every other one reversed; returns what was written.
    fn write_series(
        ws: &Workspace,
        run: RunId,
        from: usize,
        loss: impl Fn(usize) -> f64,
    ) -> (Series, Series) {
        let (mut loss_written, mut lr_written) = (Series::new(), Series::new());
        let mut start = from;
        for (batch, &size) in BATCH_SIZES.iter().cycle().enumerate() {
            if start >= SERIES_POINTS {
                break;
            }
            let end = (start + size).min(SERIES_POINTS);
            if size == 1 {
                ws.log_metrics(
                    run,
                    step_at(start),
                    &[("loss", loss(start)), ("lr", lr_at(start))],
                )
                .expect("log one step");
                lr_written.insert(step_at(start), lr_at(start));
            } else {
                let mut rows: Vec<(u64, &str, f64)> = (start..end)
                    .map(|index| (step_at(index), "loss", loss(index)))
                    .collect();
                if batch % 2 == 1 {
                    rows.reverse();
                }
                ws.log_metric_rows(run, &rows).expect("log rows");
            }
            loss_written.extend((start..end).map(|index| (step_at(index), loss(index))));
            start = end;
        }
        (loss_written, lr_written)
    }

    fn assert_same_points(actual: &[(u64, f64)], expected: &Series) {
        assert_eq!(actual.len(), expected.len(), "point count");
        for (&(step, value), (&expected_step, &expected_value)) in actual.iter().zip(expected) {
            assert_eq!(step, expected_step);
            assert!(
                value.to_bits() == expected_value.to_bits()
                    || (value.is_nan() && expected_value.is_nan()),
                "step {step}: read {value}, wrote {expected_value}"
            );
        }
    }

    /// The `(first_step, last_step)` of the run's `loss` chunks, in order.
    fn loss_chunks(ws: &Workspace, run: RunId) -> Vec<(i64, i64)> {
        ws.conn()
            .prepare(
                "SELECT first_step, last_step FROM metric_chunks
                 WHERE run_id = ?1 AND name_id = (SELECT id FROM metric_names WHERE name = 'loss')
                 ORDER BY first_step",
            )
            .and_then(|mut stmt| {
                stmt.query_map([run], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .expect("chunks")
    }

    fn loss_rows(ws: &Workspace, run: RunId) -> usize {
        let rows: i64 = ws
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM metrics
                 WHERE run_id = ?1 AND name_id = (SELECT id FROM metric_names WHERE name = 'loss')",
                [run],
                |row| row.get(0),
            )
            .expect("rows");
        usize::try_from(rows).expect("a count")
    }

    fn sql_step(index: usize) -> i64 {
        i64::try_from(step_at(index)).expect("small step")
    }

    #[test]
    fn chunked_series_reads_back_whole_and_paged() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("chunked", "").expect("create");
        let (loss, lr) = write_series(&ws, run, 0, loss_at);

        // The oldest two chunks' worth moved into chunks, the rest stayed rows.
        assert_eq!(
            loss_chunks(&ws, run),
            vec![
                (0, sql_step(CHUNK_POINTS - 1)),
                (sql_step(CHUNK_POINTS), sql_step(2 * CHUNK_POINTS - 1))
            ]
        );
        assert_eq!(loss_rows(&ws, run), SERIES_POINTS - 2 * CHUNK_POINTS);

        assert_same_points(&ws.metric(run, "loss").expect("loss"), &loss);
        assert_same_points(&ws.metric(run, "lr").expect("lr"), &lr);
        assert_eq!(ws.metric_names(run).expect("names"), vec!["loss", "lr"]);
        assert_eq!(
            ws.run(run).expect("run").last_step,
            Some(step_at(SERIES_POINTS - 1))
        );

        // Paged as the live feed reads it, across chunk and row boundaries.
        const PAGE: usize = 333;
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let page = ws
                .metric_points_after(run, "loss", after, PAGE)
                .expect("page");
            assert_eq!(page.len(), PAGE.min(loss.len() - paged.len()));
            assert!(page.iter().all(|point| point.wall_time > 1.6e9));
            let Some(last) = page.last() else { break };
            after = Some(last.step);
            paged.extend(page.iter().map(|point| (point.step, point.value)));
        }
        assert_same_points(&paged, &loss);

        // From a step that is not stored, inside the second chunk.
        let inside = step_at(CHUNK_POINTS + 1000) + 1;
        let page: Vec<(u64, f64)> = ws
            .metric_points_after(run, "loss", Some(inside), 10)
            .expect("page")
            .iter()
            .map(|point| (point.step, point.value))
            .collect();
        let expected: Series = loss
            .range(inside + 1..)
            .take(10)
            .map(|(&s, &v)| (s, v))
            .collect();
        assert_same_points(&page, &expected);
        assert!(
            ws.metric_points_after(run, "loss", Some(inside), 0)
                .expect("nothing")
                .is_empty()
        );
    }

    #[test]
    fn chunked_series_replaces_and_inserts_old_steps() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("chunked", "").expect("create");
        let (mut loss, lr) = write_series(&ws, run, 0, loss_at);
        let rows_before = loss_rows(&ws, run);

        ws.log_metrics(run, step_at(100), &[("loss", 1234.5)])
            .expect("replace in the first chunk");
        loss.insert(step_at(100), 1234.5);
        let between_chunks = step_at(CHUNK_POINTS - 1) + 1;
        let writes = [
            (step_at(CHUNK_POINTS + 104), f64::NAN),
            (step_at(SERIES_POINTS - 1), 7.0),
            (step_at(10) + 1, -1.0),
            (between_chunks, 2.0),
            (step_at(200), 5.0),
            (step_at(200), 6.0),
        ];
        let rows: Vec<(u64, &str, f64)> = writes
            .iter()
            .map(|&(step, value)| (step, "loss", value))
            .collect();
        ws.log_metric_rows(run, &rows).expect("rows");
        loss.extend(writes);

        assert_same_points(&ws.metric(run, "loss").expect("loss"), &loss);
        assert_same_points(&ws.metric(run, "lr").expect("lr"), &lr);
        // Old steps went into the chunks (two of them new), the tail did not grow.
        assert_eq!(loss_chunks(&ws, run).len(), 2);
        assert_eq!(loss_rows(&ws, run), rows_before);
        let chunked: Vec<MetricPoint> = ws
            .metric_points_after(run, "loss", Some(step_at(99)), 2)
            .expect("points");
        assert_eq!(
            chunked
                .iter()
                .map(|p| (p.step, p.value))
                .collect::<Vec<_>>(),
            vec![(step_at(100), 1234.5), (step_at(101), loss_at(101))]
        );
        assert_eq!(ws.metric_names(run).expect("names"), vec!["loss", "lr"]);
        assert_eq!(
            ws.run(run).expect("run").last_step,
            Some(step_at(SERIES_POINTS - 1))
        );
    }

    #[test]
    fn chunked_series_truncates_at_a_boundary_and_mid_chunk() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("chunked", "").expect("create");
        let (loss, lr) = write_series(&ws, run, 0, loss_at);
        let after = |series: &Series, step: u64| series.range(step + 1..).count();
        let prefix = |series: &Series, step: u64| -> Series {
            series.range(..=step).map(|(&s, &v)| (s, v)).collect()
        };
        let last_step = |step: u64| {
            [&loss, &lr]
                .iter()
                .filter_map(|series| series.range(..=step).next_back().map(|(&s, _)| s))
                .max()
        };

        // At the second chunk's last step: every row goes, both chunks stay whole.
        let boundary = step_at(2 * CHUNK_POINTS - 1);
        assert_eq!(
            ws.truncate_metrics_after(run, boundary).expect("truncate"),
            after(&loss, boundary) + after(&lr, boundary)
        );
        assert_same_points(
            &ws.metric(run, "loss").expect("loss"),
            &prefix(&loss, boundary),
        );
        assert_same_points(&ws.metric(run, "lr").expect("lr"), &prefix(&lr, boundary));
        assert_eq!(ws.metric_names(run).expect("names"), vec!["loss", "lr"]);
        assert_eq!(ws.run(run).expect("run").last_step, last_step(boundary));

        // Inside the first chunk, between two stored steps.
        let inside = step_at(1000) + 1;
        assert_eq!(
            ws.truncate_metrics_after(run, inside).expect("truncate"),
            after(&loss, inside) - after(&loss, boundary) + after(&lr, inside)
                - after(&lr, boundary)
        );
        assert_same_points(
            &ws.metric(run, "loss").expect("loss"),
            &prefix(&loss, inside),
        );
        assert_same_points(&ws.metric(run, "lr").expect("lr"), &prefix(&lr, inside));
        assert_eq!(ws.metric_names(run).expect("names"), vec!["loss", "lr"]);
        assert_eq!(ws.run(run).expect("run").last_step, last_step(inside));
        let paged: Vec<(u64, f64)> = ws
            .metric_points_after(run, "loss", Some(step_at(990)), 100)
            .expect("page")
            .iter()
            .map(|point| (point.step, point.value))
            .collect();
        assert_same_points(
            &paged,
            &loss
                .range(step_at(991)..=inside)
                .map(|(&s, &v)| (s, v))
                .collect(),
        );

        // The resumed run writes the rest again, with other values.
        let resumed = |index: usize| loss_at(index) + 0.5;
        let (rewritten, _) = write_series(&ws, run, 1001, resumed);
        let mut expected = prefix(&loss, inside);
        expected.extend(rewritten);
        assert_same_points(&ws.metric(run, "loss").expect("loss"), &expected);
        assert_eq!(loss_chunks(&ws, run).len(), 2);
        assert_eq!(
            ws.run(run).expect("run").last_step,
            Some(step_at(SERIES_POINTS - 1))
        );
    }

    #[test]
    fn bad_chunk_blobs_are_errors_naming_the_chunk() {
        let (_dir, ws) = open_temp();
        let run = ws.create_run("chunked", "").expect("create");
        let (loss, _) = write_series(&ws, run, 0, loss_at);
        let second = sql_step(CHUNK_POINTS);
        let corrupt = |sql: &str| {
            ws.conn()
                .execute(sql, rusqlite::params![run, second])
                .expect("corrupt");
        };
        let assert_names_chunk = |error: StoreError| {
            let message = error.to_string();
            assert!(matches!(error, StoreError::InvalidRow { .. }), "{message}");
            for part in [
                format!("run {run}"),
                "\"loss\"".to_string(),
                format!("from step {second}"),
            ] {
                assert!(message.contains(&part), "{message} lacks {part}");
            }
        };

        corrupt(
            "UPDATE metric_chunks SET metric_values = zeroblob(12)
             WHERE run_id = ?1 AND first_step = ?2",
        );
        assert_names_chunk(ws.metric(run, "loss").expect_err("short values"));
        assert_names_chunk(
            ws.metric_points_after(run, "loss", Some(step_at(CHUNK_POINTS)), 10)
                .expect_err("short values"),
        );
        // A write into the bad chunk fails and leaves the rest as it was.
        assert_names_chunk(
            ws.log_metrics(run, step_at(CHUNK_POINTS + 1), &[("loss", 0.0)])
                .expect_err("rewrite"),
        );
        let first: Vec<(u64, f64)> = ws
            .metric_points_after(run, "loss", None, CHUNK_POINTS)
            .expect("first chunk")
            .iter()
            .map(|point| (point.step, point.value))
            .collect();
        assert_same_points(
            &first,
            &loss
                .iter()
                .take(CHUNK_POINTS)
                .map(|(&s, &v)| (s, v))
                .collect(),
        );

        corrupt(
            "UPDATE metric_chunks SET metric_values = steps, points = points + 1
             WHERE run_id = ?1 AND first_step = ?2",
        );
        assert_names_chunk(ws.metric(run, "loss").expect_err("wrong point count"));
        corrupt(
            "UPDATE metric_chunks SET points = points - 1, last_step = last_step + 1
             WHERE run_id = ?1 AND first_step = ?2",
        );
        assert_names_chunk(ws.metric(run, "loss").expect_err("wrong last step"));
    }

    #[test]
    fn a_reader_never_sees_a_compaction_half_done() {
        const BATCHES: usize = 16;
        let (dir, ws) = open_temp();
        let run = ws.create_run("live", "").expect("create");
        let writer = {
            let root = dir.path().to_path_buf();
            std::thread::Builder::new()
                .name("metrics-writer".into())
                .spawn(move || -> Result<(), StoreError> {
                    let ws = Workspace::open(&root)?;
                    // One chunk's worth per write: from the second on, each write compacts.
                    for batch in 0..BATCHES {
                        let rows: Vec<(u64, &str, f64)> = (batch * CHUNK_POINTS
                            ..(batch + 1) * CHUNK_POINTS)
                            .map(|index| (index as u64, "loss", index as f64))
                            .collect();
                        ws.log_metric_rows(run, &rows)?;
                    }
                    Ok(())
                })
                .expect("spawn")
        };
        let mut reads = 0;
        loop {
            let done = writer.is_finished();
            let series = ws.metric(run, "loss").expect("read");
            assert!(
                series
                    .iter()
                    .enumerate()
                    .all(|(index, &(step, value))| step == index as u64 && value == index as f64),
                "read {reads}: a gap or a wrong point in {} points",
                series.len()
            );
            reads += 1;
            if done {
                assert_eq!(series.len(), BATCHES * CHUNK_POINTS);
                break;
            }
        }
        writer.join().expect("join").expect("writer");
    }
}
