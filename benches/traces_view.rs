//! The Traces view's costs, each with a peer in the same run:
//! - frame: the CPU time of one Traces-view frame showing a 20,000-token completion (its step's
//!   table, the token view, the plots), against the Playground's token heatmap, which lays out
//!   every token of the same completion each frame;
//! - analytics: `engine::analysis::analyse_stored` over 10,000 stored rollouts (read from the
//!   workspace and analysed), against the bare SELECT of the same rows' blobs (the I/O floor).
//!
//! Targets (issue 12): frame p95 ≤ 4 ms, analytics ≤ 1 s. Run: `cargo bench --bench traces_view`.

use std::time::{Duration, Instant};

use app::views::View;
use app::views::traces::TracesSettings;
use app::widgets::token_heatmap::{Alternative, HeatmapToken, token_heatmap_ui};
use app::{Studio, StudioOptions};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use egui_kittest::Harness;
use engine::analysis::AnalysisOptions;
use engine::store::{Trace, TraceKind, TraceToken, Workspace};

const LONG_TOKENS: usize = 20_000;
const STEPS: u64 = 100;
const ROLLOUTS_PER_STEP: usize = 100;
const TOKENS_PER_ROLLOUT: usize = 128;

const RUN_TOML: &str = r#"
name = "bench"
model = "builtin:tiny-reasoner"
[data]
builtin = "arithmetic"
"#;

const TEXT: &str = "<think>12+7 is 19. Wait, let me check: 12+7=19, and 19*2=38. Hmm, so the \
                    answer is 38.</think> <answer>38</answer>\n";

/// Token ids of the built-in tiny reasoner's tokenizer for `n` tokens of [`TEXT`] repeated.
fn ids(n: usize) -> Vec<u32> {
    let (tokenizer, _) =
        engine::formats::loader::open_tokenizer("builtin:tiny-reasoner").expect("tokenizer");
    let one = tokenizer.encode(TEXT, false).expect("encode");
    one.iter().copied().cycle().take(n).collect()
}

fn trace(step: u64, prompt_index: usize, sample_index: usize, ids: &[u32]) -> Trace {
    let tokens = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| TraceToken {
            id,
            logprob: -((i * 13 % 17) as f32) / 8.0,
            entropy: (i * 37 % 23) as f32 / 10.0,
            top: (0..5u32)
                .map(|j| ((id + j) % 90, -(j as f32) - 0.5))
                .collect(),
            counted: true,
            trained: true,
        })
        .collect();
    Trace {
        step,
        kind: TraceKind::Rollout,
        prompt_index,
        sample_index,
        prompt: format!("problem {prompt_index}: 12+7 times 2 ="),
        completion: TEXT.repeat(1 + ids.len() / 40),
        tokens,
        reward: (sample_index % 2) as f64,
        rewards: vec![("accuracy".into(), (sample_index % 2) as f64)],
        advantage: if sample_index.is_multiple_of(2) {
            -1.0
        } else {
            1.0
        },
        correct: Some(sample_index % 2 == 1),
        finish_reason: "eos".into(),
    }
}

fn frame(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = ws.create_run("bench", RUN_TOML).expect("run");
    let long = ids(LONG_TOKENS);
    let mut traces = vec![trace(1, 0, 0, &long)];
    let short = ids(TOKENS_PER_ROLLOUT);
    traces.extend((1..8).map(|s| trace(1, 0, s, &short)));
    ws.add_traces(run, &traces).expect("traces");

    let mut options = StudioOptions::new(&ws_dir, None);
    options.view = Some(View::Traces);
    options.run = Some(run);
    options.step = Some(1);
    let state = app::state::State {
        traces: TracesSettings {
            run: Some(run),
            ..TracesSettings::default()
        },
        ..app::state::State::default()
    };
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui_state(|ui, s: &mut Studio| s.ui(ui), Studio::new(options, state));
    let deadline = Instant::now() + Duration::from_secs(120);
    while h
        .state()
        .traces
        .loaded_step()
        .is_none_or(|s| s.traces.len() != traces.len())
    {
        assert!(
            Instant::now() < deadline,
            "the step did not load: view error {:?}",
            h.state().ctx.error
        );
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(4);
    assert_eq!(
        h.state().traces.selected,
        Some(0),
        "the long completion is shown"
    );

    let mut group = c.benchmark_group("Traces view frame");
    group.sample_size(30);
    group.bench_function("studio, a 20,000-token completion", |b| b.iter(|| h.step()));
    drop(h);

    let tokens: Vec<HeatmapToken> = traces[0]
        .tokens
        .iter()
        .map(|t| HeatmapToken {
            id: t.id,
            text: format!("t{}", t.id % 50),
            logprob: t.logprob,
            entropy_nats: t.entropy,
            alternatives: t
                .top
                .iter()
                .map(|&(id, logprob)| Alternative {
                    id,
                    text: format!("t{id}"),
                    logprob,
                })
                .collect(),
        })
        .collect();
    let mut peer = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_ui(move |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| token_heatmap_ui(ui, &tokens));
        });
    group.sample_size(10);
    group.bench_function("peer: the token heatmap laying out every token", |b| {
        b.iter(|| peer.step())
    });
    group.finish();
}

fn analytics(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let ws = Workspace::open(&ws_dir).expect("workspace");
    let run = ws.create_run("bench", RUN_TOML).expect("run");
    let short = ids(TOKENS_PER_ROLLOUT);
    for step in 1..=STEPS {
        let traces: Vec<Trace> = (0..ROLLOUTS_PER_STEP)
            .map(|i| trace(step, i / 8, i % 8, &short))
            .collect();
        ws.add_traces(run, &traces).expect("traces");
    }
    let rollouts = STEPS as usize * ROLLOUTS_PER_STEP;
    let (tokenizer, _) =
        engine::formats::loader::open_tokenizer("builtin:tiny-reasoner").expect("tokenizer");

    let mut group = c.benchmark_group("analytics over 10,000 stored rollouts");
    group.throughput(Throughput::Elements(rollouts as u64));
    group.sample_size(10);
    group.bench_function("studio analyse_stored", |b| {
        b.iter(|| {
            let mut text = |id: u32| tokenizer.token_text(id).unwrap_or_default();
            let (steps, analysis) = engine::analysis::analyse_stored(
                &ws,
                run,
                TraceKind::Rollout,
                &AnalysisOptions::default(),
                &mut text,
            )
            .expect("analysis");
            assert_eq!(steps, STEPS as usize);
            assert_eq!(analysis.steps.len(), STEPS as usize);
        });
    });
    let conn = rusqlite::Connection::open(ws_dir.join("workspace.sqlite")).expect("db");
    group.bench_function("peer: bare SELECT of the rows' blobs", |b| {
        b.iter(|| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT token_ids, logprobs, entropies, top, loss_mask, completion, reward
                     FROM traces WHERE run_id = ?1 ORDER BY step, prompt_index, sample_index",
                )
                .expect("prepare");
            let n = stmt
                .query_map([run], |r| {
                    let ids: Vec<u8> = r.get(0)?;
                    let entropies: Vec<u8> = r.get(2)?;
                    let top: Vec<u8> = r.get(3)?;
                    Ok(ids.len() + entropies.len() + top.len())
                })
                .expect("query")
                .count();
            assert_eq!(n, rollouts);
        });
    });
    group.finish();
}

criterion_group!(benches, frame, analytics);
criterion_main!(benches);
