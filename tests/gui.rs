//! The window's run jobs end to end, headless (egui_kittest) with real worker processes: Try
//! it on a fresh workspace starts the tiny reasoner and its curves grow; a run started from the
//! CLI appears and overlays; a worker killed with SIGKILL shows as died and resumes from the
//! window; Stop is honoured. Launch's "Try the rewards" box scores a typed completion. The
//! window never waits on the workspace: with its write lock held by another connection, frames
//! of every view stay fast and say it is busy, and recover when it is released; a corrupt
//! workspace is shown in the status line.
//!
//! Workers repaint through the feed thread, so the harness is stepped in a bounded loop.
//!
//! One file past 800 lines on purpose: every test drives the same window harness (the app in
//! kittest, bounded stepping, worker processes, snapshots) defined at its top; split, each
//! part would carry a copy of it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use app::views::View;
use app::{Studio, StudioOptions};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use engine::store::{RunStatus, TraceKind, Workspace};

/// How long a worker may take to produce what a step waits for.
const DEADLINE: Duration = Duration::from_secs(180);

fn harness(workspace: &Path, view: View) -> Harness<'static, Studio> {
    let mut options = StudioOptions::new(workspace, Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(view);
    let studio = Studio::new(options, app::state::State::default());
    Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, studio: &mut Studio| studio.ui(ui), studio)
}

fn step_until(harness: &mut Harness<'static, Studio>, what: &str, done: impl Fn(&Studio) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done(harness.state()) {
        if Instant::now() >= deadline {
            let s = harness.state();
            let runs: Vec<_> = s
                .ctx
                .runs
                .iter()
                .map(|r| (r.record.id, r.record.status, r.record.last_step, r.died))
                .collect();
            let series: Vec<_> = s
                .ctx
                .series
                .iter()
                .map(|(k, v)| (k.clone(), v.len()))
                .collect();
            panic!(
                "timed out after {DEADLINE:?} waiting for {what}; view {:?}, runs {runs:?}, \
                 names {:?}, series {series:?}, error {:?}",
                s.state.selected_view, s.ctx.names, s.ctx.error
            );
        }
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    harness.run_steps(2);
}

fn points(studio: &Studio, run: i64, metric: &str) -> usize {
    studio
        .ctx
        .series
        .get(&(run, metric.to_string()))
        .map_or(0, |s| s.len())
}

const CLI_RUN: &str = r#"
name = "from the cli"
model = "builtin:tiny-reasoner-init"
seed = 2
[data]
builtin = "arithmetic"
count = 2000
[sft]
max_steps = 2000
batch_size = 4
max_seq_len = 64
lr = 3e-3
warmup_steps = 2
chat_template = false
[checkpoint]
every = 5
"#;

#[test]
fn try_it_then_a_cli_run_overlays_dies_resumes_and_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let mut h = harness(&ws_dir, View::Home);
    step_until(&mut h, "the workspace to load", |s| s.ctx.loaded);
    assert!(h.state().ctx.runs.is_empty(), "a fresh workspace");
    h.query_all_by_label_contains("No runs yet")
        .next()
        .expect("the empty state says how to start");

    // Try it: a run starts and the window switches to its curves.
    h.get_by_label("Try it").click();
    // The run is registered by the workspace service; the window then shows it.
    step_until(&mut h, "Try it's run to be registered", |s| {
        s.state.selected_view == View::Runs
    });
    assert_eq!(h.state().state.selected_view, View::Runs);
    let try_it = h.state().state.runs.selected[0];
    step_until(&mut h, "Try it's loss to have 3 points", |s| {
        points(s, try_it, "loss") >= 3
    });
    let seen = points(h.state(), try_it, "loss");
    step_until(&mut h, "more loss points", |s| {
        points(s, try_it, "loss") > seen
    });
    assert!(
        h.query_all_by_label_contains("try it: tiny reasoner learns arithmetic")
            .next()
            .is_some(),
        "the run is listed"
    );
    // Stop is honoured.
    h.get_by_label("Stop").click();
    step_until(&mut h, "Try it to stop", |s| {
        s.ctx
            .run(try_it)
            .is_some_and(|r| r.record.status == RunStatus::Stopped)
    });

    // A run started from the command line appears and overlays.
    let config = common::write_config(dir.path(), "cli", CLI_RUN);
    let out = common::studio_in(
        &ws_dir,
        &["train", "--detach", &config.to_string_lossy()],
        &[],
    );
    common::assert_success(&out);
    step_until(&mut h, "the CLI run to appear", |s| s.ctx.runs.len() == 2);
    let cli_run = h.state().ctx.runs[0].record.id;
    h.get_by_label(&format!("#{cli_run} from the cli")).click();
    step_until(&mut h, "both runs' loss", |s| {
        points(s, try_it, "loss") > 0 && points(s, cli_run, "loss") >= 6
    });
    assert_eq!(h.state().state.runs.selected, vec![try_it, cli_run]);

    // Killed with SIGKILL: shown as died, resumed from the window.
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let pid = ws
        .run(cli_run)
        .expect("run")
        .worker_pid
        .expect("a worker pid");
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill runs")
            .success()
    );
    // Focus the CLI run: the details pane shows the first selected run.
    h.state_mut().state.runs.selected = vec![cli_run, try_it];
    step_until(&mut h, "the run to show as died", |s| {
        s.ctx.run(cli_run).is_some_and(|r| r.died)
    });
    h.query_all_by_label_contains("worker died at step")
        .next()
        .expect("the details pane says the worker died");
    let died_at = h
        .state()
        .ctx
        .run(cli_run)
        .and_then(|r| r.record.last_step)
        .unwrap_or(0);
    h.get_by_label("Resume").click();
    step_until(&mut h, "the resumed run to go past where it died", |s| {
        s.ctx
            .run(cli_run)
            .is_some_and(|r| !r.died && r.record.last_step.unwrap_or(0) > died_at)
    });
    h.get_by_label("Stop").click();
    step_until(&mut h, "the resumed run to stop", |s| {
        s.ctx
            .run(cli_run)
            .is_some_and(|r| r.record.status == RunStatus::Stopped)
    });
    let record = ws.run(cli_run).expect("run");
    assert_eq!(record.status, RunStatus::Stopped);
    assert!(ws.latest_checkpoint(cli_run).expect("query").is_some());
}

/// `tests/data/trainer_state.json` was written by transformers' Trainer
/// (`benches/peers/trainer_state.py`): imported from the CLI, its `loss` and `learning_rate`
/// curves show in the Runs view with the values of its `log_history`.
#[test]
fn an_imported_trainer_state_shows_its_loss_and_learning_rate() {
    let file = common::repo_root().join("tests/data/trainer_state.json");
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    let logged = |key: &str| -> Vec<(u64, f64)> {
        history["log_history"]
            .as_array()
            .expect("log_history")
            .iter()
            .filter_map(|e| Some((e["step"].as_u64()?, e.get(key)?.as_f64()?)))
            .collect()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let out = common::studio_in(&ws_dir, &["import", &file.to_string_lossy()], &[]);
    common::assert_success(&out);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = ws.runs().expect("runs")[0].clone();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(ws.metric(run.id, "loss").expect("loss"), logged("loss"));
    assert_eq!(
        ws.metric(run.id, "eval/loss").expect("eval"),
        logged("eval_loss")
    );
    assert_eq!(logged("loss").len(), 40);

    let mut h = harness(&ws_dir, View::Runs);
    step_until(&mut h, "the imported run", |s| {
        s.ctx.run(run.id).is_some_and(|r| r.imported) && points(s, run.id, "loss") == 40
    });
    assert!(
        h.query_all_by_label_contains("imported").next().is_some(),
        "its status says imported"
    );
    h.get_by_label("learning_rate").click();
    step_until(&mut h, "the learning rate curve", |s| {
        points(s, run.id, "learning_rate") == logged("learning_rate").len()
    });
    let series = &h.state().ctx.series[&(run.id, "learning_rate".to_string())];
    let expected = logged("learning_rate");
    assert_eq!(
        series.values,
        expected.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    assert!(
        h.get_by_label("Resume").accesskit_node().is_disabled(),
        "an imported run cannot be resumed"
    );
}

/// A run document small enough to finish in seconds.
const QUICK_RUN: &str = r#"name = "from the form"
model = "builtin:tiny-reasoner-init"

[data]
builtin = "arithmetic"
count = 200

[sft]
max_steps = 4
batch_size = 2
max_seq_len = 48
"#;

/// The Launch form: a preset opens unchanged; a bad value shows its message next to the
/// field and Start stays off; a good document starts a worker and the window shows its run.
#[test]
fn the_launch_form_checks_settings_and_starts_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let mut h = harness(&ws_dir, View::Launch);
    step_until(&mut h, "the workspace to load", |s| s.ctx.loaded);

    // Every preset, opened from the menu and rendered, is the same document.
    for (name, text) in app::views::launch::PRESETS {
        h.get_by_label("Presets").click();
        h.run_steps(2);
        h.get_by_label(name).click();
        h.run_steps(3);
        assert_eq!(h.state().launch.toml(), *text, "{name} changed in the form");
    }

    let config = common::write_config(dir.path(), "quick", QUICK_RUN);
    h.state_mut().launch.path = config.to_string_lossy().into_owned();
    h.get_by_label("Open").click();
    step_until(&mut h, "the check to pass", |s| s.launch.can_start());
    h.query_all_by_label_contains("ready to start")
        .next()
        .expect("the check says ready");
    assert!(!h.get_by_label("Start").accesskit_node().is_disabled());

    // A learning rate that is not a number: the message sits by the field, Start is off.
    h.get_by_label("sft.lr").click();
    h.run_steps(2);
    h.get_by_label("sft.lr").type_text("fast");
    h.run_steps(3);
    h.query_all_by_label_contains("`sft.lr` takes a number")
        .next()
        .expect("the field explains what it takes");
    assert!(h.get_by_label("Start").accesskit_node().is_disabled());
    assert_eq!(
        h.state().launch.toml(),
        QUICK_RUN,
        "a bad value is not written"
    );

    // In range for TOML but not for the run: the engine's check names the setting.
    h.state_mut()
        .launch
        .open_text(&QUICK_RUN.replace("max_steps = 4", "max_steps = 0"), "zero")
        .expect("parses");
    step_until(&mut h, "the check to fail", |s| {
        !s.launch.can_start() && s.launch.checked()
    });
    h.query_all_by_label_contains("must be at least 1")
        .next()
        .expect("the engine's message is shown");
    assert!(h.get_by_label("Start").accesskit_node().is_disabled());

    // Back to the good document; Start opens the run's plots and the worker finishes it.
    h.state_mut()
        .launch
        .open_text(QUICK_RUN, "quick")
        .expect("parses");
    step_until(&mut h, "the check to pass", |s| s.launch.can_start());
    h.get_by_label("Start").click();
    step_until(&mut h, "the run to be registered", |s| {
        s.state.selected_view == View::Runs
    });
    assert_eq!(h.state().state.selected_view, View::Runs);
    let run = h.state().state.runs.selected[0];
    step_until(&mut h, "the run to complete", |s| {
        s.ctx
            .run(run)
            .is_some_and(|r| r.record.status == RunStatus::Completed)
    });
    let ws = Workspace::open(&ws_dir).expect("workspace");
    assert_eq!(ws.run(run).expect("run").config_toml, QUICK_RUN);
    assert_eq!(ws.metric(run, "loss").expect("loss").len(), 4);
}

/// Models lists the built-in models with their config; Fine-tune opens Launch on one.
#[test]
fn the_models_view_lists_the_builtin_models_and_fine_tunes_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(&dir.path().join("ws"), View::Models);
    step_until(&mut h, "the models to be found", |s| s.ctx.models_found());
    h.get_by_label("tiny-reasoner (built-in, trained)");
    h.get_by_label("tiny-reasoner-init (built-in, untrained)");
    let config = engine::models::tiny::config();
    assert!(
        h.query_all_by_label(&config.max_position_embeddings.to_string())
            .count()
            >= 2,
        "the context length is shown for both"
    );
    h.query_all_by_label("Fine-tune")
        .next()
        .expect("a Fine-tune button")
        .click();
    h.run_steps(3);
    assert_eq!(h.state().state.selected_view, View::Launch);
    let run =
        engine::train::RunConfig::from_toml(&h.state().launch.toml(), "form").expect("a valid run");
    assert_eq!(run.model, engine::models::tiny::TINY_REASONER);
}

/// `studio gui --view NAME` offers exactly the window's views.
#[test]
fn the_gui_deep_link_names_every_view() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = common::studio_in(&dir.path().join("ws"), &["gui", "--help"], &[]);
    common::assert_success(&out);
    let help = String::from_utf8_lossy(&out.stdout);
    let line = help
        .lines()
        .skip_while(|l| !l.contains("--view"))
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    for view in View::ALL {
        assert!(
            line.contains(&view.title().to_lowercase()),
            "--view does not offer {}: {line}",
            view.title()
        );
    }
}

/// Datasets: a typed path opens the file; its rows, a row in roles with its image, a search
/// with its matches, the bad row with its line, token lengths under the tiny tokenizer, and
/// Use in Launch with the mapping.
#[test]
fn the_datasets_view_reads_searches_and_measures_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut png = image::RgbaImage::new(4, 4);
    png.put_pixel(1, 1, image::Rgba([255, 0, 0, 255]));
    png.save(dir.path().join("red.png")).expect("png");
    let file = dir.path().join("rows.jsonl");
    let rows = [
        r#"{"question": "what is 2+2?", "answer": "4", "image": "red.png"}"#,
        r#"{"question": "what colour is the sky?", "answer": "blue", "image": "red.png"}"#,
        "{not json",
        r#"{"question": "name a blue fruit", "answer": "blueberry", "image": "red.png"}"#,
    ];
    std::fs::write(&file, rows.join("\n") + "\n").expect("write");
    let mut h = harness(&dir.path().join("ws"), View::Datasets);
    step_until(&mut h, "the workspace to load", |s| s.ctx.loaded);
    h.state_mut().datasets.path = file.to_string_lossy().into_owned();
    h.get_by_label("Open").click();
    step_until(&mut h, "the file to open", |s| s.datasets.dataset.is_some());
    assert!(h.query_all_by_label_contains("3 rows").next().is_some());
    h.query_all_by_label_contains("line 3")
        .next()
        .expect("the bad row is listed with its line");
    // The second row in roles.
    h.get_by_label("2").click();
    h.run_steps(3);
    assert_eq!(h.state().datasets.selected, Some(1));
    assert!(
        h.query_all_by_label("what colour is the sky?").count() >= 2,
        "table and detail"
    );

    // Search the answers for "blue": rows 2 and 3 (0-based 1 and 2).
    h.state_mut().datasets.search_column = Some("answer".into());
    h.state_mut().datasets.query = "BLUE".into();
    h.get_by_label("Search").click();
    step_until(&mut h, "the search", |s| s.datasets.matches.is_some());
    assert_eq!(h.state().datasets.matches, Some(vec![1, 2]));

    // Token lengths under the tiny reasoner's tokenizer, against the tokenizer itself.
    h.get_by_label("Compute").click();
    step_until(&mut h, "the token lengths", |s| {
        s.datasets.lengths.is_some()
    });
    let tokenizer = engine::models::tiny::tokenizer().expect("tokenizer");
    let expected: Vec<usize> = [
        ("what is 2+2?", "4"),
        ("what colour is the sky?", "blue"),
        ("name a blue fruit", "blueberry"),
    ]
    .iter()
    .map(|(q, a)| {
        tokenizer
            .encode(&format!("{q}\n{a}"), false)
            .expect("encodes")
            .len()
    })
    .collect();
    assert_eq!(
        h.state()
            .datasets
            .lengths
            .as_ref()
            .expect("lengths")
            .lengths,
        expected
    );

    // The workspace remembers the file; Use in Launch points the run at it.
    let ws = Workspace::open(&dir.path().join("ws")).expect("workspace");
    assert_eq!(
        ws.datasets().expect("datasets")[0].path,
        file.to_string_lossy()
    );
    h.get_by_label("Use in Launch").click();
    h.run_steps(3);
    assert_eq!(h.state().state.selected_view, View::Launch);
    let run = engine::train::RunConfig::from_toml(&h.state().launch.toml(), "form").expect("valid");
    assert_eq!(
        run.data.path.as_deref(),
        Some(file.to_string_lossy().as_ref())
    );
    assert_eq!(
        run.data.mapping.and_then(|m| m.answer).as_deref(),
        Some("answer")
    );
}

// --- image snapshots of the main views ------------------------------------------------------

/// Pixels a snapshot may differ by, above egui_kittest's per-pixel threshold (lavapipe's
/// output may vary slightly between CPUs; one digit changed in the Home page's small grey
/// text, "every 50 steps" → "every 60 steps", fails 19 pixels). Set once, here.
const MAX_FAILED_PIXELS: usize = 8;

/// A folder under the temporary directory with a fixed name, emptied: the window shows the
/// workspace's name and the dataset's path, so a snapshot's folders are the same on every run.
fn fixed_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the snapshot folder");
    dir
}

/// A harness for a snapshot: waits until the workspace is loaded and the models are found,
/// and keeps only the built-in models (this machine's Hugging Face cache is not in the picture).
fn snapshot_harness(options: StudioOptions) -> Harness<'static, Studio> {
    let studio = Studio::new(options, app::state::State::default());
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .with_pixels_per_point(1.0)
        .build_ui_state(|ui, studio: &mut Studio| studio.ui(ui), studio);
    step_until(&mut h, "the workspace to load", |s| s.ctx.loaded);
    // Every view that lists models asks for them; ask here (each frame, as a view does: the
    // answer is taken when asked) so the list is settled.
    let egui_ctx = h.ctx.clone();
    let deadline = Instant::now() + DEADLINE;
    while h.state_mut().ctx.models(&egui_ctx).is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the models to be found"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.state_mut()
        .ctx
        .retain_models(|m| m.as_ref().is_ok_and(|m| m.path.starts_with("builtin:")));
    h.run_steps(3);
    h
}

/// Compares the window with `tests/snapshots/NAME.png` after painting over every widget whose
/// label contains one of `volatile` (figures of this machine, such as its free memory).
fn snapshot(h: &mut Harness<'static, Studio>, name: &str, volatile: &[&str]) {
    let mut image = h.render().expect("the window renders");
    for needle in volatile {
        let rects: Vec<egui::Rect> = h
            .query_all_by_label_contains(needle)
            .map(|n| n.rect())
            .collect();
        assert!(!rects.is_empty(), "nothing labelled {needle:?} to mask");
        for rect in rects {
            for y in
                rect.min.y.floor().max(0.0) as u32..(rect.max.y.ceil() as u32).min(image.height())
            {
                for x in rect.min.x.floor().max(0.0) as u32
                    ..(rect.max.x.ceil() as u32).min(image.width())
                {
                    image.put_pixel(x, y, image::Rgba([255, 0, 255, 255]));
                }
            }
        }
    }
    let options = egui_kittest::SnapshotOptions::new().max_failed_pixels(MAX_FAILED_PIXELS);
    egui_kittest::image_snapshot_options(&image, name, &options);
}

/// Imports the committed `trainer_state.json` from a fixed folder into `ws_dir`.
fn import_trainer_state(root: &Path, ws_dir: &Path) -> i64 {
    let folder = root.join("hf-trainer");
    std::fs::create_dir_all(&folder).expect("folder");
    let file = folder.join("trainer_state.json");
    std::fs::copy(
        common::repo_root().join("tests/data/trainer_state.json"),
        &file,
    )
    .expect("copy");
    let out = common::studio_in(ws_dir, &["import", &file.to_string_lossy()], &[]);
    common::assert_success(&out);
    Workspace::open(ws_dir)
        .expect("workspace")
        .runs()
        .expect("runs")[0]
        .id
}

/// Home on a workspace with one run: the Try it button, the run with its sparkline, the
/// built-in models and tasks.
#[test]
fn snapshot_home() {
    let root = fixed_dir("studio-snapshot-home");
    let ws_dir = root.join("ws");
    let run = import_trainer_state(&root, &ws_dir);
    let mut options = StudioOptions::new(&ws_dir, Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Home);
    let mut h = snapshot_harness(options);
    step_until(&mut h, "the sparkline's points", |s| {
        points(s, run, "loss") == 40
    });
    h.run_steps(3);
    h.get_by_label("Try it");
    snapshot(&mut h, "home", &[]);
}

/// Runs with an imported run selected: its loss curve, the metric picker, its config.
#[test]
fn snapshot_runs() {
    let root = fixed_dir("studio-snapshot-runs");
    let ws_dir = root.join("ws");
    let run = import_trainer_state(&root, &ws_dir);
    let mut options = StudioOptions::new(&ws_dir, Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Runs);
    options.run = Some(run);
    let mut h = snapshot_harness(options);
    step_until(&mut h, "the loss curve", |s| points(s, run, "loss") == 40);
    h.run_steps(3);
    snapshot(&mut h, "runs", &[]);
}

/// Launch on the default document, checked: every setting with its default, ready to start.
/// The machine's free memory is masked.
#[test]
fn snapshot_launch() {
    let root = fixed_dir("studio-snapshot-launch");
    let mut options =
        StudioOptions::new(root.join("ws"), Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Launch);
    let mut h = snapshot_harness(options);
    step_until(&mut h, "the check", |s| s.launch.checked());
    h.run_steps(3);
    h.query_all_by_label_contains("ready to start")
        .next()
        .expect("the default document is ready");
    snapshot(&mut h, "launch", &["available"]);
}

/// Datasets on a GSM8K-style file with an image column and one bad line, the second row open.
#[test]
fn snapshot_datasets() {
    let root = fixed_dir("studio-snapshot-datasets");
    let mut picture = image::RgbaImage::new(64, 48);
    for (x, y, p) in picture.enumerate_pixels_mut() {
        *p = image::Rgba([(x * 4) as u8, (y * 5) as u8, 160, 255]);
    }
    picture.save(root.join("figure.png")).expect("png");
    let rows = [
        r##"{"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?", "answer": "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.\n#### 72", "image": "figure.png"}"##,
        r##"{"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn?", "answer": "Weng earns 12/60 = $0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = $10.\n#### 10", "image": "figure.png"}"##,
        "{\"question\": \"unclosed",
        r##"{"question": "What is 7 * 8?", "answer": "7 * 8 = 56\n#### 56", "image": "figure.png"}"##,
    ];
    let file = root.join("gsm8k-style.jsonl");
    std::fs::write(&file, rows.join("\n") + "\n").expect("write");
    let mut options =
        StudioOptions::new(root.join("ws"), Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Datasets);
    options.dataset = Some(file);
    let mut h = snapshot_harness(options);
    step_until(&mut h, "the file to open", |s| s.datasets.dataset.is_some());
    h.get_by_label("2").click();
    h.run_steps(5);
    // The row's image is read on a background job.
    step_until(&mut h, "the row's image", |s| !s.datasets.is_busy());
    assert_eq!(h.state().datasets.selected, Some(1));
    snapshot(&mut h, "datasets", &[]);
}

/// Models: the built-in models with their configs.
#[test]
fn snapshot_models() {
    let root = fixed_dir("studio-snapshot-models");
    let mut options =
        StudioOptions::new(root.join("ws"), Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Models);
    let mut h = snapshot_harness(options);
    h.get_by_label("tiny-reasoner (built-in, trained)");
    snapshot(&mut h, "models", &[]);
}

/// A GRPO run small enough to finish in seconds: 3 steps of 2 prompts × 3 completions.
const GRPO_RUN: &str = r#"
name = "grpo for traces"
algorithm = "grpo"
model = "builtin:tiny-reasoner-init"
seed = 5
[data]
builtin = "arithmetic"
difficulty = 0
count = 256
[grpo]
max_steps = 3
prompts_per_step = 2
num_generations = 3
max_completion_length = 16
temperature = 1.0
lr = 1e-3
chat_template = false
[[rewards]]
kind = "accuracy"
[[rewards]]
name = "format"
kind = "format"
pattern = '<answer>'
weight = 0.5
"#;

/// Trains [`GRPO_RUN`] with `studio train` in `root/ws`: the folder, the workspace and the run.
fn trained_grpo_run(root: &Path) -> (std::path::PathBuf, Workspace, i64) {
    let ws_dir = root.join("ws");
    let config = common::write_config(root, "grpo", GRPO_RUN);
    common::assert_success(&common::studio_in(
        &ws_dir,
        &["train", &config.to_string_lossy()],
        &[],
    ));
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = common::latest_run(&ws);
    (ws_dir, ws, run)
}

/// On a real GRPO run: a click on the Runs view's reward plot opens the Traces view at the step
/// under the pointer (left edge: the first step, right edge: the last, middle: the middle one);
/// the step's six completions are listed by prompt, a row click shows that completion, the
/// colouring switches, and Run analytics shows the fit line of the engine's analysis.
#[test]
fn a_click_on_a_runs_plot_opens_that_steps_traces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ws_dir, ws, run) = trained_grpo_run(dir.path());
    let stored: Vec<u64> = ws
        .trace_steps(run, TraceKind::Rollout)
        .expect("steps")
        .into_iter()
        .map(|(s, n)| {
            assert_eq!(n, 6, "2 prompts × 3 completions at step {s}");
            s
        })
        .collect();
    assert_eq!(stored.len(), 3);
    let rewards = ws.metric(run, "reward").expect("reward");
    assert_eq!(
        rewards.iter().map(|p| p.0).collect::<Vec<_>>(),
        stored,
        "a reward point for every step with rollouts"
    );

    let mut options = StudioOptions::new(&ws_dir, Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Runs);
    options.run = Some(run);
    let mut state = app::state::State::default();
    state.runs.metrics = vec!["reward".into()];
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, s: &mut Studio| s.ui(ui), Studio::new(options, state));
    step_until(&mut h, "the reward curve", |s| {
        points(s, run, "reward") == 3
    });
    let frame = h
        .state()
        .runs
        .plot_frame("reward")
        .expect("the plot is drawn");
    for (x, expected) in [
        (frame.left() + 3.0, stored[0]),
        (frame.right() - 3.0, stored[2]),
        (frame.center().x, stored[1]),
    ] {
        h.state_mut().state.selected_view = View::Runs;
        // Series no view draws are dropped; back in Runs, the feed sends the curve again.
        step_until(&mut h, "the reward curve again", |s| {
            points(s, run, "reward") == 3
        });
        let at = egui::pos2(x, frame.center().y);
        // As kittest's own click: move, press and release in one frame.
        h.hover_at(at);
        for pressed in [true, false] {
            h.event(egui::Event::PointerButton {
                pos: at,
                button: egui::PointerButton::Primary,
                pressed,
                modifiers: egui::Modifiers::NONE,
            });
        }
        h.run_steps(2);
        assert_eq!(
            h.state().state.selected_view,
            View::Traces,
            "the click at x {x}"
        );
        assert_eq!(h.state().state.traces.run, Some(run));
        // The step shown before stays loaded until the clicked one arrives.
        step_until(&mut h, "the clicked step's completions", |s| {
            s.traces
                .loaded_step()
                .is_some_and(|l| l.traces.len() == 6 && Some(l.traces[0].step) == s.traces.step)
        });
        assert_eq!(h.state().traces.step, Some(expected), "the click at x {x}");
    }

    // The step's completions by prompt; a row opens its tokens.
    h.query_all_by_label_contains("prompt 0 · ")
        .next()
        .expect("a heading for prompt 0");
    h.query_all_by_label_contains("prompt 1 · ")
        .next()
        .expect("a heading for prompt 1");
    h.get_by_label("1/2").click();
    h.run_steps(3);
    let chosen = h.state().traces.selected.expect("a completion is shown");
    let trace = &h.state().traces.loaded_step().expect("loaded").traces[chosen];
    assert_eq!((trace.prompt_index, trace.sample_index), (1, 2));
    h.query_all_by_label_contains("prompt 1 · sample 2 · reward")
        .next()
        .expect("the token view's header names the completion");
    h.get_by_label("Log-prob").click();
    h.run_steps(2);
    assert_eq!(
        h.state().state.traces.colouring,
        app::widgets::token_view::Colouring::LogProb
    );

    // Run analytics: the engine's analysis of the three steps.
    h.get_by_label("Run analytics").click();
    let deadline = Instant::now() + DEADLINE;
    while h
        .query_all_by_label_contains("Reward against entropy:")
        .next()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the analysis did not arrive");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.query_all_by_label_contains("Forking tokens")
        .next()
        .expect("the forking-token table");
}

/// Traces of a run the test writes itself (the tiny reasoner's tokens of a worked answer with
/// a reflection phrase, fixed entropies), opened by the deep link's options at step 2 and
/// snapshotted; then the Run analytics tab.
#[test]
fn snapshot_traces() {
    let root = fixed_dir("studio-snapshot-traces");
    let ws_dir = root.join("ws");
    let run = synthetic_traces(&ws_dir);
    let mut options = StudioOptions::new(&ws_dir, Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Traces);
    options.run = Some(run);
    options.step = Some(2);
    let mut h = snapshot_harness(options);
    step_until(&mut h, "step 2's completions", |s| {
        s.traces.step == Some(2) && s.traces.loaded_step().is_some_and(|l| l.traces.len() == 6)
    });
    h.run_steps(4);
    assert_eq!(h.state().traces.selected, Some(0));
    h.query_all_by_label_contains("reflection: \"wait\" x1")
        .next()
        .expect("the reflection phrase is counted");
    snapshot(&mut h, "traces", &[]);

    h.get_by_label("Run analytics").click();
    let deadline = Instant::now() + DEADLINE;
    while h
        .query_all_by_label_contains("Reward against entropy: R =")
        .next()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the analysis did not arrive");
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.run_steps(4);
    snapshot(&mut h, "traces-analytics", &[]);
}

/// A run with traces at steps 1–3: two prompts × three completions of the tiny reasoner's
/// tokens, entropies and rewards that change by step (so the fit has three distinct points).
fn synthetic_traces(ws_dir: &Path) -> i64 {
    use engine::store::{Trace, TraceToken};
    let ws = Workspace::open(ws_dir).expect("workspace");
    let run = ws
        .create_run(
            "synthetic grpo",
            "name = \"synthetic grpo\"\nmodel = \"builtin:tiny-reasoner\"\n\
             [data]\nbuiltin = \"arithmetic\"\n",
        )
        .expect("run");
    ws.set_status(run, RunStatus::Completed, None)
        .expect("status");
    let (tokenizer, _) =
        engine::formats::loader::open_tokenizer("builtin:tiny-reasoner").expect("tokenizer");
    let answers = [
        "<think>12+7=19. Wait, 19*2=38.</think> <answer>38</answer>",
        "<think>12+7=19, 19*2=38</think> <answer>38</answer>",
        "<think>12*2=24, 24+7=31</think> <answer>31</answer>",
    ];
    let mut traces = Vec::new();
    for step in 1..=3u64 {
        for prompt_index in 0..2 {
            for (sample_index, answer) in answers.iter().enumerate() {
                let ids = tokenizer.encode(answer, false).expect("encode");
                let correct = sample_index < 2;
                let tokens = ids
                    .iter()
                    .enumerate()
                    .map(|(i, &id)| TraceToken {
                        id,
                        logprob: -((i * 7 % 11) as f32) / (4.0 + step as f32),
                        entropy: (i * 37 % 23) as f32 / (5.0 * step as f32),
                        top: (0..5u32)
                            .map(|j| ((id + j) % 256, -(j as f32) - 0.5))
                            .collect(),
                        counted: i + 2 < ids.len() || sample_index != 2,
                        trained: i % 3 != 1,
                    })
                    .collect();
                let reward = f64::from(u8::from(correct)) + 0.1 * step as f64;
                traces.push(Trace {
                    step,
                    kind: TraceKind::Rollout,
                    prompt_index,
                    sample_index,
                    prompt: format!("Q{prompt_index}: (12+7)*2 ="),
                    completion: (*answer).to_string(),
                    tokens,
                    reward,
                    rewards: vec![
                        ("accuracy".into(), f64::from(u8::from(correct))),
                        ("format".into(), 0.1 * step as f64),
                    ],
                    advantage: if correct { 0.7 } else { -1.4 },
                    correct: Some(correct),
                    finish_reason: if sample_index == 2 { "length" } else { "eos" }.into(),
                });
            }
        }
    }
    ws.add_traces(run, &traces).expect("traces");
    run
}

/// Waits (stepping the window) until the Compare view's current job is over.
fn compare_idle(h: &mut Harness<'static, Studio>, what: &str) {
    h.run_steps(2);
    step_until(h, what, |s| !s.compare.is_busy());
}

/// On a real GRPO run's checkpoint and the two built-in models, all picked from the view's
/// menus: seeded generation repeats; a scored text gives one row per token with Δ log-prob,
/// KL ≥ 0 and the disagreement list; evaluations run in the background and are stored; the
/// problems that flipped from the untrained model to the trained one open side by side; the
/// checkpoint's run's curves overlay.
#[test]
fn the_compare_view_generates_scores_evaluates_and_opens_flipped_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ws_dir, ws, run) = trained_grpo_run(dir.path());
    let checkpoint = ws
        .checkpoints(run)
        .expect("checkpoints")
        .pop()
        .expect("the run saved a checkpoint");

    let mut h = harness(&ws_dir, View::Compare);
    step_until(&mut h, "the checkpoints to be listed", |s| {
        s.compare
            .catalog()
            .is_some_and(|c| c.checkpoints.iter().any(|x| x.record.id == checkpoint.id))
    });
    h.get_by_label("Pick at least two checkpoints or models above to compare them.");
    let pick = |h: &mut Harness<'static, Studio>, entry: &str| {
        h.get_by_label("Compare with").click();
        h.run_steps(2);
        h.query_all_by_label_contains(entry)
            .next()
            .unwrap_or_else(|| panic!("the menu lists {entry}"))
            .click();
        h.run_steps(2);
    };
    pick(&mut h, &format!("· checkpoint {}", checkpoint.id));
    pick(&mut h, "builtin:tiny-reasoner-init");
    pick(&mut h, "builtin:tiny-reasoner");
    assert_eq!(
        h.state().state.compare.specs,
        [
            checkpoint.id.to_string(),
            "builtin:tiny-reasoner-init".to_string(),
            "builtin:tiny-reasoner".to_string()
        ]
    );

    // Generate: the same seed gives the same tokens again.
    h.state_mut().state.compare.max_new_tokens = 24;
    h.state_mut().state.compare.sampling.temperature = 1.0;
    h.get_by_label("Generate side by side").click();
    compare_idle(&mut h, "the generations");
    let first = h.state().compare.generated();
    assert_eq!(first.len(), 3);
    for g in &first {
        assert!(g.as_ref().is_ok_and(|ids| !ids.is_empty()), "{g:?}");
    }
    h.get_by_label("Generate side by side").click();
    compare_idle(&mut h, "the generations again");
    assert_eq!(h.state().compare.generated(), first, "seeded: it repeats");

    // Score a text.
    h.get_by_label("Score a text").click();
    h.run_steps(2);
    h.state_mut().state.compare.score_prompt = "What is 12 + 30?".into();
    h.state_mut().state.compare.score_text =
        "<think>12 + 30 = 42</think><answer>42</answer>".into();
    h.get_by_label("Score").click();
    compare_idle(&mut h, "the scores");
    {
        let scored = h
            .state()
            .compare
            .scored()
            .expect("scored")
            .expect("no error");
        assert_eq!(scored.names.len(), 3);
        assert!(scored.tokens.len() > 5);
        for t in &scored.tokens {
            // After a prompt every token of the text has a prediction.
            assert!(t.logprob.iter().all(Option::is_some));
            assert!(t.kl.expect("kl") >= 0.0);
        }
        // The trained model's log-likelihood of the text is far from the run's checkpoint's
        // (untrained: its 3 steps saw no reward to learn from).
        let gain: f32 = scored
            .tokens
            .iter()
            .map(|t| t.logprob[2].expect("lp") - t.logprob[0].expect("lp"))
            .sum();
        assert!(
            gain.abs() > 1.0,
            "trained − checkpoint log-likelihood {gain}"
        );
    }
    h.get_by_label("Where [1] and [2] disagree most");
    h.get_by_label("KL([1] || [2])").click();
    h.run_steps(2);
    assert_eq!(
        h.state().state.compare.score_colouring,
        app::views::compare::ScoreColouring::Kl
    );

    // Evaluate all three on 6 problems, then the flipped ones from the untrained model to
    // the trained one (the same problems: both are models evaluated with the defaults).
    h.get_by_label("Evaluate").click();
    h.run_steps(2);
    h.state_mut().state.compare.eval_count = 6;
    h.get_by_label("Evaluate the 3 picked").click();
    compare_idle(&mut h, "the evaluations");
    let ids: Vec<i64> = h
        .state()
        .compare
        .evaluated()
        .into_iter()
        .map(|r| r.expect("finished").expect("evaluated").id)
        .collect();
    assert_eq!(ws.evaluations(None).expect("stored").len(), 3);
    step_until(&mut h, "the stored evaluations to be listed", |s| {
        s.compare
            .catalog()
            .is_some_and(|c| c.evaluations.len() == 3)
    });
    h.get_by_label("Accuracy per checkpoint");
    h.state_mut().compare.flip_a = Some(ids[1]);
    h.state_mut().compare.flip_b = Some(ids[2]);
    step_until(&mut h, "the flipped problems", |s| {
        s.compare.flipped().is_some()
    });
    let expected = {
        let (_, a) = ws.evaluation(ids[1]).expect("a");
        let (_, b) = ws.evaluation(ids[2]).expect("b");
        engine::train::evaluation::flipped(&a, &b)
    };
    let shown = h
        .state()
        .compare
        .flipped()
        .expect("read")
        .expect("same problems")
        .compared
        .flipped
        .clone();
    assert_eq!(shown, expected);
    assert!(
        !expected.wrong_to_right.is_empty(),
        "the trained model gets some problem right that the untrained one does not"
    );
    let first_flip = expected.wrong_to_right[0];
    h.get_by_label(&format!(
        "wrong to right ({})",
        expected.wrong_to_right.len()
    ));
    h.query_all_by_label_contains(&format!("problem {}: ", first_flip.0 + 1))
        .next()
        .expect("the flipped problem is listed")
        .click();
    h.run_steps(3);
    assert_eq!(h.state().compare.flip_opened(), Some(first_flip));
    h.query_all_by_label_contains(&format!("A · evaluation {}", ids[1]))
        .next()
        .expect("A's completion");
    h.query_all_by_label_contains(&format!("B · evaluation {}", ids[2]))
        .next()
        .expect("B's completion");

    // Curves: the checkpoint's run's reward.
    h.get_by_label("Curves").click();
    step_until(&mut h, "the run's reward curve", |s| {
        points(s, run, "reward") == 3
    });
}

/// The Compare view of the two built-in models (untrained and trained): a text scored under
/// both, coloured by Δ log-prob; then their greedy answers to one prompt side by side.
#[test]
fn snapshot_compare() {
    let root = fixed_dir("studio-snapshot-compare");
    let ws_dir = root.join("ws");
    let mut options = StudioOptions::new(&ws_dir, Some(env!("CARGO_BIN_EXE_studio").into()));
    options.view = Some(View::Compare);
    let mut h = snapshot_harness(options);
    {
        let c = &mut h.state_mut().state.compare;
        c.specs = vec![
            "builtin:tiny-reasoner-init".into(),
            "builtin:tiny-reasoner".into(),
        ];
        c.tab = app::views::compare::CompareTab::Score;
        c.score_prompt = "What is 23 + 48?".into();
        c.score_text = "<think>23 + 48 = 71. Wait, 20 + 40 = 60 and 3 + 8 = 11, so 71.</think> \
                        <answer>71</answer>"
            .into();
        c.prompt = "What is 23 + 48?".into();
        c.max_new_tokens = 48;
        c.sampling = engine::infer::SamplingConfig::greedy();
    }
    h.run_steps(2);
    h.get_by_label("Score").click();
    compare_idle(&mut h, "the scores");
    h.run_steps(4);
    snapshot(&mut h, "compare-score", &[]);

    h.get_by_label("Generate").click();
    h.run_steps(2);
    h.get_by_label("Generate side by side").click();
    compare_idle(&mut h, "the generations");
    h.run_steps(4);
    snapshot(&mut h, "compare-generate", &[]);
}

// --- the workspace off the UI thread, the rewards box ------------------------------------------

/// Launch's "Try the rewards" on a GRPO run of the built-in arithmetic task: a completion typed
/// into the box is scored by the form's `[[rewards]]` (the prompt is enough to rebuild the
/// problem), each part by name with the verdict; a change to the form scores it again, and a
/// run without rewards says so in the box.
#[test]
fn the_launch_view_tries_the_rewards_on_a_typed_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = harness(&dir.path().join("ws"), View::Launch);
    step_until(&mut h, "the workspace to load", |s| s.ctx.loaded);
    h.state_mut()
        .launch
        .open_text(GRPO_RUN, "grpo")
        .expect("parses");
    h.run_steps(2);
    h.get_by_label("Try the rewards").click();
    h.run_steps(2);
    h.get_by_label("Prompt").click();
    h.run_steps(2);
    h.get_by_label("Prompt").type_text("(12+7)*2=");
    h.run_steps(2);
    h.get_by_label("Completion").click();
    h.run_steps(2);
    h.get_by_label("Completion")
        .type_text("<think>12+7=19, 19*2=38</think> <answer>38</answer>");
    h.run_steps(2);
    assert_eq!(h.state().launch.try_rewards.prompt, "(12+7)*2=");
    step_until(&mut h, "the completion's rewards", |s| {
        s.launch.tried_rewards().is_some()
    });
    let tried = h
        .state()
        .launch
        .tried_rewards()
        .expect("scored")
        .clone()
        .expect("no error");
    assert_eq!(tried.scored.correct, Some(true));
    // Each part as training logs it, the total weighted (format's weight is 0.5).
    assert_eq!(
        tried.scored.parts,
        vec![("accuracy".to_string(), 1.0), ("format".to_string(), 1.0)]
    );
    h.get_by_label("total reward 1.500");
    h.get_by_label("accuracy");
    h.get_by_label("format");
    assert_eq!(h.query_all_by_label("1.000").count(), 2, "both parts");
    h.get_by_label("× 0.5");
    h.get_by_label("verdict: correct");

    // The form changes: the box scores again with the new weight.
    h.state_mut()
        .launch
        .open_text(&GRPO_RUN.replace("weight = 0.5", "weight = 2.0"), "heavier")
        .expect("parses");
    step_until(&mut h, "the rewards under the new weight", |s| {
        s.launch
            .tried_rewards()
            .is_some_and(|t| t.as_ref().is_ok_and(|t| t.scored.total == 3.0))
    });
    h.get_by_label("total reward 3.000");

    // A wrong answer is wrong; without [[rewards]] the box says what is missing.
    h.state_mut().launch.try_rewards.completion = "<answer>37</answer>".into();
    h.state_mut()
        .launch
        .open_text(GRPO_RUN, "grpo")
        .expect("parses");
    step_until(&mut h, "the wrong answer's rewards", |s| {
        s.launch
            .tried_rewards()
            .is_some_and(|t| t.as_ref().is_ok_and(|t| t.scored.correct == Some(false)))
    });
    h.get_by_label("verdict: wrong");
    let no_rewards = GRPO_RUN
        .split("[[rewards]]")
        .next()
        .expect("the run's head");
    h.state_mut()
        .launch
        .open_text(no_rewards, "no rewards")
        .expect("parses");
    step_until(&mut h, "the missing rewards", |s| {
        s.launch.tried_rewards().is_some_and(Result::is_err)
    });
    h.query_all_by_label_contains("[[rewards]]")
        .find(|n| n.rect().height() > 0.0)
        .expect("the box says the run has no rewards");
}

/// How long one frame may take while the workspace is locked: far below the lock's 3 s (a
/// frame that waited on SQLite would take the whole lock).
const FRAME_LIMIT: Duration = Duration::from_millis(750);

/// Steps one frame and fails if it took longer than [`FRAME_LIMIT`].
fn timed_step(h: &mut Harness<'static, Studio>, slowest: &mut Duration) {
    let started = Instant::now();
    h.step();
    let took = started.elapsed();
    *slowest = (*slowest).max(took);
    assert!(
        took < FRAME_LIMIT,
        "a frame of {:?} took {took:?} while the workspace was locked",
        h.state().state.selected_view
    );
}

/// Whether the window shows the workspace as busy (the shell's status line, in every view).
fn says_busy(h: &Harness<'static, Studio>) -> bool {
    h.query_all_by_label_contains("workspace busy")
        .next()
        .is_some()
}

/// Another connection holds the workspace's write lock (SQLite's file lock: a second
/// connection cannot take it) for 3 s, while the window asks for writes from Launch (Start),
/// a dropped `trainer_state.json` (import) and Datasets (open, which remembers the file), and
/// frames of every view are stepped: no frame waits, every view shows the busy status line,
/// Launch says what it waits for; once the lock is released the run starts and shows, the
/// import shows, the file opens and is remembered, and the status line is gone.
#[test]
fn a_locked_workspace_blocks_no_frame_and_every_view_says_it_is_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let traced = synthetic_traces(&ws_dir);
    let trainer_state = dir.path().join("trainer_state.json");
    std::fs::copy(
        common::repo_root().join("tests/data/trainer_state.json"),
        &trainer_state,
    )
    .expect("copy");
    let file = dir.path().join("rows.jsonl");
    std::fs::write(&file, "{\"question\": \"2+2?\", \"answer\": \"4\"}\n").expect("write");

    let mut h = harness(&ws_dir, View::Launch);
    step_until(&mut h, "the workspace to load", |s| {
        s.ctx.loaded && s.ctx.runs.len() == 1
    });
    h.state_mut()
        .launch
        .open_text(QUICK_RUN, "quick")
        .expect("parses");
    step_until(&mut h, "the check to pass", |s| s.launch.can_start());

    // The lock: a write transaction held by another connection for 3 s.
    let db = ws_dir.join(engine::store::DB_FILE_NAME);
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn({
        let db = db.clone();
        move || {
            let conn = rusqlite::Connection::open(&db).expect("open");
            conn.execute_batch("BEGIN EXCLUSIVE")
                .expect("take the write lock");
            locked_tx.send(Instant::now()).expect("tell");
            std::thread::sleep(Duration::from_secs(3));
            conn.execute_batch("ROLLBACK").expect("release");
        }
    });
    let locked_at = locked.recv().expect("locked");
    {
        // It is SQLite's lock: no other connection can write.
        let other = rusqlite::Connection::open(&db).expect("open");
        other.busy_timeout(Duration::ZERO).expect("no wait");
        let err = other
            .execute_batch("BEGIN IMMEDIATE")
            .expect_err("the lock is held");
        assert!(err.to_string().contains("locked"), "{err}");
    }

    let mut slowest = Duration::ZERO;
    // Writes from three places.
    h.get_by_label("Start").click();
    timed_step(&mut h, &mut slowest);
    h.state_mut().ctx.import(&trainer_state);
    h.state_mut().state.selected_view = View::Datasets;
    timed_step(&mut h, &mut slowest);
    h.state_mut().datasets.path = file.to_string_lossy().into_owned();
    h.get_by_label("Open").click();
    timed_step(&mut h, &mut slowest);
    while !says_busy(&h) {
        assert!(
            locked_at.elapsed() < Duration::from_millis(2500),
            "the window never said the workspace is busy; status {:?}",
            h.state().ctx.workspace_status
        );
        timed_step(&mut h, &mut slowest);
        std::thread::sleep(Duration::from_millis(10));
    }
    // Every view, a few frames each, while the lock is held: each says the workspace is busy.
    for view in View::ALL {
        h.state_mut().state.selected_view = view;
        for _ in 0..3 {
            timed_step(&mut h, &mut slowest);
        }
        assert!(
            locked_at.elapsed() < Duration::from_secs(3),
            "the lock was released before every view was stepped (at {view:?})"
        );
        assert!(says_busy(&h), "{view:?} does not say the workspace is busy");
        if view == View::Launch {
            h.query_all_by_label_contains("waiting for the workspace to register the run")
                .next()
                .expect("Launch says what it waits for");
        }
    }
    assert!(
        h.state().ctx.runs.iter().all(|r| r.record.id == traced),
        "nothing was written while the lock was held"
    );
    // Frames go on until the lock is released.
    while !holder.is_finished() {
        timed_step(&mut h, &mut slowest);
        std::thread::sleep(Duration::from_millis(10));
    }
    holder.join().expect("the holder released the lock");

    // Released: the writes go through and every view recovers.
    step_until(&mut h, "the three runs", |s| s.ctx.runs.len() == 3);
    step_until(&mut h, "the status line to clear", |s| {
        s.ctx.workspace_status == app::workspace_service::WorkspaceStatus::Ok
    });
    assert!(!says_busy(&h));
    assert_eq!(
        h.state().state.selected_view,
        View::Runs,
        "a started run shows"
    );
    h.state_mut().state.selected_view = View::Datasets;
    step_until(&mut h, "the file to open", |s| s.datasets.dataset.is_some());
    let ws = Workspace::open(&ws_dir).expect("workspace");
    assert_eq!(
        ws.datasets().expect("datasets")[0].path,
        file.to_string_lossy(),
        "the workspace remembers the file"
    );
    let quick = ws
        .runs()
        .expect("runs")
        .into_iter()
        .find(|r| r.name == "from the form")
        .expect("the started run");
    step_until(&mut h, "the started run to complete", |s| {
        s.ctx
            .run(quick.id)
            .is_some_and(|r| r.record.status == RunStatus::Completed)
    });
    for view in View::ALL {
        h.state_mut().state.selected_view = view;
        h.run_steps(2);
        assert!(!says_busy(&h), "{view:?} still says busy");
    }
    eprintln!("slowest frame while locked: {slowest:?}");
}

/// A workspace file that is not a database: every view shows why in the status line (Home's
/// recent runs too), and nothing is dropped silently.
#[test]
fn a_corrupt_workspace_is_shown_in_the_status_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    std::fs::create_dir_all(&ws_dir).expect("mkdir");
    std::fs::write(ws_dir.join(engine::store::DB_FILE_NAME), vec![7u8; 8192]).expect("write");
    let mut h = harness(&ws_dir, View::Home);
    step_until(&mut h, "the error in the status", |s| {
        matches!(
            s.ctx.workspace_status,
            app::workspace_service::WorkspaceStatus::Error(_)
        )
    });
    for view in View::ALL {
        h.state_mut().state.selected_view = view;
        h.run_steps(2);
        h.query_all_by_label_contains("could not open the workspace at")
            .next()
            .unwrap_or_else(|| panic!("{view:?} does not say the workspace is broken"));
    }
}
