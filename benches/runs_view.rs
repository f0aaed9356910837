//! The Runs view's costs, each with a peer in the same run:
//! - ingest: metric rows written through `Workspace::log_metric_rows`, against the same rows
//!   inserted with one prepared statement in one transaction into a table of the same shape
//!   (what SQLite itself can do);
//! - query: a 1,000,000-point series read back (`Workspace::metric`: old points packed in
//!   chunks, the newest as rows), against the bare SELECT of one row per point;
//! - frame: the CPU time of one Runs-view frame showing a 1,000,000-point series (and 8 runs of
//!   125,000 points overlaid), against a frame that hands egui_plot every point;
//! - first frame: a studio built on a fresh workspace and its first frame, against an empty
//!   egui frame.
//!
//! Targets (issue 11): frame p95 ≤ 4 ms, ingest ≥ 200k rows/s, query ≤ 20 ms, first frame
//! ≤ 0.5 s. Run: `cargo bench --bench runs_view`.

use std::time::{Duration, Instant};

use app::views::View;
use app::{Studio, StudioOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egui_kittest::Harness;
use engine::store::Workspace;

const POINTS: usize = 1_000_000;
const INGEST_ROWS: usize = 100_000;

fn curve(i: usize) -> f64 {
    5.0 * (-(i as f64) / 200_000.0).exp() + ((i * 7919) % 1000) as f64 * 1e-4
}

fn fill(ws: &Workspace, name: &str, points: usize) -> i64 {
    let run = ws.create_run(name, "").expect("run");
    for chunk in (0..points).collect::<Vec<_>>().chunks(50_000) {
        let rows: Vec<(u64, &str, f64)> = chunk
            .iter()
            .map(|&i| (i as u64, "loss", curve(i)))
            .collect();
        ws.log_metric_rows(run, &rows).expect("rows");
    }
    ws.set_status(run, engine::store::RunStatus::Completed, None)
        .expect("status");
    run
}

/// The peer's database: a metrics table of one row per point, as plain SQLite does it.
fn peer_db(dir: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("peer.sqlite")).expect("peer db");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE metrics (run_id INTEGER, name_id INTEGER, step INTEGER, value REAL,
             wall_time REAL, PRIMARY KEY (run_id, name_id, step)) STRICT, WITHOUT ROWID;",
    )
    .expect("peer schema");
    conn
}

/// `points` points of run `run` into the peer's table: one prepared INSERT in one transaction.
fn peer_insert(conn: &rusqlite::Connection, run: i64, points: usize) {
    let tx = conn.unchecked_transaction().expect("tx");
    {
        let mut stmt = tx
            .prepare_cached("INSERT INTO metrics VALUES (?1, 1, ?2, ?3, 0.0)")
            .expect("prepare");
        for i in 0..points {
            stmt.execute(rusqlite::params![run, i as i64, curve(i)])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn ingest(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::open(&dir.path().join("ws")).expect("workspace");
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(INGEST_ROWS as u64));
    group.sample_size(10);
    group.bench_function("studio log_metric_rows", |b| {
        b.iter(|| {
            let run = ws.create_run("ingest", "").expect("run");
            let rows: Vec<(u64, &str, f64)> = (0..INGEST_ROWS)
                .map(|i| (i as u64, "loss", curve(i)))
                .collect();
            ws.log_metric_rows(run, &rows).expect("rows");
        });
    });
    let conn = peer_db(dir.path());
    let mut peer_run = 0i64;
    group.bench_function("peer: one prepared INSERT in one transaction", |b| {
        b.iter(|| {
            peer_run += 1;
            peer_insert(&conn, peer_run, INGEST_ROWS);
        });
    });
    group.finish();
}

fn query(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = Workspace::open(&dir.path().join("ws")).expect("workspace");
    let run = fill(&ws, "million", POINTS);
    let mut group = c.benchmark_group("query 1M-point series");
    group.sample_size(10);
    group.bench_function("studio Workspace::metric", |b| {
        b.iter(|| assert_eq!(ws.metric(run, "loss").expect("series").len(), POINTS));
    });
    // The peer: the same points as one row each in a table of the shape the studio used before
    // it packed old points into chunks, read with a bare SELECT.
    let conn = peer_db(dir.path());
    peer_insert(&conn, 1, POINTS);
    group.bench_function("peer: bare SELECT step, value of one row per point", |b| {
        b.iter(|| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT step, value FROM metrics WHERE run_id = 1 AND name_id = 1
                     ORDER BY step",
                )
                .expect("prepare");
            let rows: Vec<(i64, f64)> = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            assert_eq!(rows.len(), POINTS);
        });
    });
    group.finish();
}

/// A studio on the Runs view with `runs` loaded, stepped until every point arrived.
fn loaded_studio(
    ws_dir: &std::path::Path,
    runs: &[i64],
    points: usize,
) -> Harness<'static, Studio> {
    let mut options = StudioOptions::new(ws_dir, None);
    options.view = Some(View::Runs);
    let mut state = app::state::State::default();
    state.runs.selected = runs.to_vec();
    state.runs.metrics = vec!["loss".into()];
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, s: &mut Studio| s.ui(ui), Studio::new(options, state));
    let deadline = Instant::now() + Duration::from_secs(300);
    let all = |s: &Studio| {
        runs.iter().all(|r| {
            s.ctx
                .series
                .get(&(*r, "loss".to_string()))
                .is_some_and(|x| x.len() == points)
        })
    };
    while !all(h.state()) {
        assert!(Instant::now() < deadline, "the series did not load");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(3);
    h
}

fn frame(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let one = fill(&ws, "million", POINTS);
    let overlay: Vec<i64> = (0..8)
        .map(|i| fill(&ws, &format!("overlay {i}"), POINTS / 8))
        .collect();

    let mut group = c.benchmark_group("Runs view frame");
    group.sample_size(30);
    let mut h = loaded_studio(&ws_dir, &[one], POINTS);
    group.bench_function("studio, 1 series of 1M points", |b| b.iter(|| h.step()));
    drop(h);
    let mut h = loaded_studio(&ws_dir, &overlay, POINTS / 8);
    group.bench_function("studio, 8 series of 125k points", |b| b.iter(|| h.step()));
    drop(h);

    let points: Vec<[f64; 2]> = (0..POINTS).map(|i| [i as f64, curve(i)]).collect();
    let mut peer = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui(move |ui| {
            egui_plot::Plot::new("peer").show(ui, |p| {
                p.line(egui_plot::Line::new("loss", points.clone()));
            });
        });
    group.sample_size(10);
    group.bench_function("peer: egui_plot given every point", |b| {
        b.iter(|| peer.step())
    });
    group.finish();
}

fn first_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("launch to first frame");
    group.sample_size(10);
    group.bench_function("studio on a fresh workspace", |b| {
        b.iter_with_large_drop(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            let options = StudioOptions::new(dir.path().join("ws"), None);
            let h = Harness::builder()
                .with_size([1280.0, 800.0])
                .build_ui_state(
                    |ui, s: &mut Studio| s.ui(ui),
                    Studio::new(options, Default::default()),
                );
            (h, dir)
        });
    });
    group.bench_function("peer: an empty egui frame", |b| {
        b.iter_with_large_drop(|| {
            Harness::builder()
                .with_size([1280.0, 800.0])
                .build_ui(|ui| {
                    ui.label("hello");
                })
        });
    });
    group.finish();
}

criterion_group!(benches, ingest, query, frame, first_frame);
criterion_main!(benches);
