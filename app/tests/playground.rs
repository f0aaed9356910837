//! The Playground end to end, headless: load the built-in tiny reasoner through the model
//! worker, type a prompt, generate, and check the streamed tokens, the counts line, a token's
//! hover card, a load error for a bad path, and one image snapshot.
//!
//! The worker repaints from its own thread, so the harness is stepped in a bounded loop instead
//! of `run()`, which may not settle.

use std::time::{Duration, Instant};

use app::Studio;
use app::views::playground::ModelStatus;
use app::widgets::token_heatmap::visible_token_text;
use egui::{Key, Modifiers};
use egui_kittest::kittest::{NodeT as _, Queryable as _};
use egui_kittest::{Harness, SnapshotOptions};

/// How long loading or generating with the tiny model may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(120);
/// The harness's screen, in points.
const SIZE: [f32; 2] = [1100.0, 640.0];
/// Pixels a snapshot may differ by (lavapipe output varies slightly between CPUs).
const MAX_FAILED_PIXELS: usize = 8;

fn harness(studio: Studio) -> Harness<'static, Studio> {
    Harness::builder()
        .with_size(SIZE)
        .with_options(SnapshotOptions::new().max_failed_pixels(MAX_FAILED_PIXELS))
        .build_ui_state(|ui, studio: &mut Studio| studio.ui(ui), studio)
}

/// Steps the harness until `done` holds, failing the test after [`DEADLINE`].
fn step_until(harness: &mut Harness<'static, Studio>, what: &str, done: impl Fn(&Studio) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done(harness.state()) {
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the last events show and the layout settle.
    harness.run_steps(3);
}

fn wait_for_model(harness: &mut Harness<'static, Studio>) {
    step_until(harness, "the model to load", |s| {
        !s.playground.is_busy() && s.playground.discovered_models().is_some()
    });
}

fn type_prompt_and_generate(harness: &mut Harness<'static, Studio>, prompt: &str) {
    // The prompt starts with an example for the tiny reasoner; replace it.
    harness.state_mut().playground.prompt.clear();
    harness.get_by_label("Prompt").click();
    harness.run_steps(2);
    harness.get_by_label("Prompt").type_text(prompt);
    harness.run_steps(2);
    assert_eq!(harness.state().playground.prompt, prompt);
    harness.get_by_label("Generate").click();
    harness.run_steps(2);
    step_until(harness, "generation to finish", |s| !s.playground.is_busy());
}

/// The token count shown in the counts line "N tokens · mean entropy …".
fn shown_token_count(harness: &Harness<'static, Studio>) -> usize {
    let labels: Vec<String> = harness
        .query_all_by_label_contains("tokens · mean entropy")
        .filter_map(|node| node.value())
        .collect();
    assert_eq!(
        labels.len(),
        1,
        "one counts line expected, found {labels:?}"
    );
    labels[0]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("counts line should start with a number: {:?}", labels[0]))
}

/// A studio opened on the Playground with the default (built-in) model.
fn playground_studio() -> Studio {
    // One fixed name: the side panel shows the workspace folder's name in the snapshot.
    let dir = std::env::temp_dir().join("studio-playground-test");
    let mut options = app::StudioOptions::new(dir, None);
    options.view = Some(app::views::View::Playground);
    Studio::new(options, app::state::State::default())
}

#[test]
fn generates_with_the_builtin_model_and_shows_tokens() {
    let mut harness = harness(playground_studio());
    wait_for_model(&mut harness);
    match &harness.state().playground.model {
        ModelStatus::Loaded(m) => {
            assert!(m.has_chat_template, "the tiny reasoner has a chat template")
        }
        other => panic!("model should be loaded, is {other:?}"),
    }
    assert!(
        harness
            .query_by_label_contains("Loaded tiny-reasoner")
            .is_some()
    );

    type_prompt_and_generate(&mut harness, "What is 2+3?");

    let playground = &harness.state().playground;
    assert!(
        playground.generate_error.is_none(),
        "{:?}",
        playground.generate_error
    );
    let tokens = playground.generation.tokens.clone();
    assert!(!tokens.is_empty(), "the model should have generated tokens");
    assert!(tokens.len() <= harness.state().state.playground.max_new_tokens);
    assert!(
        tokens
            .iter()
            .all(|t| t.entropy_nats.is_finite() && t.logprob <= 0.0)
    );
    assert!(tokens.iter().all(|t| t.alternatives.len() == 5));
    assert_eq!(shown_token_count(&harness), tokens.len());
    assert!(harness.query_by_label("Decoded text").is_some());

    // Hovering a token shows its card with the alternatives. (An ASCII one, so its label is
    // known: the heatmap escapes characters the font lacks.)
    let ascii = tokens
        .iter()
        .find(|t| !t.text.is_empty() && t.text.is_ascii())
        .expect("an ASCII token among the generated ones");
    let shown = visible_token_text(&ascii.text, |c| c.is_ascii()).0;
    let rect = harness
        .query_all_by_value(&shown)
        .chain(harness.query_all_by_label(&shown))
        .next()
        .map(|node| node.rect())
        .unwrap_or_else(|| panic!("token {shown:?} should be shown"));
    harness.hover_at(rect.center());
    let deadline = Instant::now() + Duration::from_secs(5);
    while harness.query_by_label("Top alternatives").is_none() {
        assert!(
            Instant::now() < deadline,
            "hovering a token should show its card"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(harness.query_by_label("log-prob").is_some());
    harness.check_accessibility();
}

#[test]
fn a_bad_model_path_shows_a_readable_error() {
    let mut harness = harness(playground_studio());
    wait_for_model(&mut harness);

    let bad_path = "/nonexistent/studio-test/model.gguf";
    harness.get_by_label("Model path").click();
    harness.run_steps(2);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.run_steps(1);
    harness.get_by_label("Model path").type_text(bad_path);
    harness.run_steps(2);
    assert_eq!(harness.state().playground.model_path, bad_path);

    harness.get_by_label("Load").click();
    harness.run_steps(2);
    step_until(&mut harness, "the load to fail", |s| {
        !s.playground.is_busy()
    });

    let error = harness
        .state()
        .playground
        .load_error
        .clone()
        .expect("a load error");
    assert!(
        error.contains(bad_path),
        "the error should name the path: {error}"
    );
    let shown: Vec<String> = harness
        .query_all_by_label_contains("Could not load")
        .filter_map(|node| node.value())
        .collect();
    assert!(
        shown.iter().any(|label| label.contains(bad_path)),
        "the error should be on screen, found {shown:?}"
    );
    // The Generate button is off without a model.
    assert_eq!(harness.state().playground.model, ModelStatus::Empty);
    harness.check_accessibility();
}

#[test]
fn snapshot_after_generation() {
    let mut harness = harness(playground_studio());
    wait_for_model(&mut harness);
    type_prompt_and_generate(&mut harness, "Think: 1+1");
    harness.remove_cursor();
    harness.run_steps(2);
    // tokens/s differs between runs: mask the counts line to the window's right edge (its width
    // changes with the number).
    let counts = harness
        .get_by_label_contains("tokens · mean entropy")
        .rect();
    harness.mask(egui::Rect::from_min_max(
        counts.min,
        egui::pos2(SIZE[0], counts.max.y),
    ));
    harness.snapshot("playground_after_generation");
}

/// The device picker: choosing wgpu (Mesa's lavapipe in the test script) in the menu reloads the
/// model there, and greedy generation gives the CPU's tokens; cuda is listed but disabled, with
/// the reason.
#[test]
fn the_device_picker_moves_the_model_to_wgpu() {
    if engine::test_files::wgpu_backend().is_none() {
        return;
    }
    let mut harness = harness(playground_studio());
    wait_for_model(&mut harness);
    harness.state_mut().state.playground.sampling = engine::infer::SamplingConfig::greedy();
    harness.state_mut().state.playground.max_new_tokens = 16;
    type_prompt_and_generate(&mut harness, "12+35=");
    let on_cpu: Vec<u32> = harness
        .state()
        .playground
        .generation
        .tokens
        .iter()
        .map(|t| t.id)
        .collect();
    assert!(!on_cpu.is_empty());

    harness.get_by_label("Device").click();
    harness.run_steps(2);
    assert!(
        harness.get_by_label("cuda").accesskit_node().is_disabled(),
        "cuda is not in this build, so it cannot be chosen"
    );
    harness.get_by_label("wgpu").click();
    harness.run_steps(2);
    wait_for_model(&mut harness);
    match &harness.state().playground.model {
        ModelStatus::Loaded(m) => assert_eq!(m.backend, engine::backend::BackendKind::Wgpu),
        other => panic!("the model should be loaded on wgpu, is {other:?}"),
    }
    assert!(
        harness
            .query_by_label_contains("Loaded tiny-reasoner on wgpu")
            .is_some()
    );
    type_prompt_and_generate(&mut harness, "12+35=");
    let playground = &harness.state().playground;
    assert!(
        playground.generate_error.is_none(),
        "{:?}",
        playground.generate_error
    );
    let on_wgpu: Vec<u32> = playground.generation.tokens.iter().map(|t| t.id).collect();
    assert_eq!(on_wgpu, on_cpu, "greedy tokens on wgpu and on the CPU");
}
