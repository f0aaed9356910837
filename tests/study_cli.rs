//! Studies over seeds: `studio study FILE --seeds N --seed S --json` runs every arm once per
//! seed (a child arm from the same seed's parent), and every figure it prints is re-derived
//! here from `studio metrics` of the runs it names.

mod common;

use common::{json_stdout, studio_in, write_config};
use engine::store::Workspace;

/// Three short SFT arms: `wide` takes twice the rows per step of `narrow`, so it has read more
/// tokens at every step (an effect that must hold on every seed); `child` continues `narrow`.
const STUDY: &str = r#"
name = "seeds"
compare = ["loss", "num_tokens"]
seed = 40
[effect]
statement = "a wider batch reads more tokens per step"
metric = "num_tokens"
arm = "wide"
than = "narrow"
expect = "higher"
window = 0.5

[[runs]]
key = "narrow"
[runs.config]
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
count = 64
[runs.config.sft]
max_steps = 4
batch_size = 2
max_seq_len = 48
packing = false
chat_template = false
[runs.config.eval]
count = 2
max_new_tokens = 4

[[runs]]
key = "wide"
[runs.config]
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
count = 64
[runs.config.sft]
max_steps = 4
batch_size = 4
max_seq_len = 48
packing = false
chat_template = false
[runs.config.eval]
count = 2
max_new_tokens = 4

[[runs]]
key = "child"
init_from = "narrow"
[runs.config]
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
count = 64
[runs.config.sft]
max_steps = 2
batch_size = 2
max_seq_len = 48
chat_template = false
[runs.config.eval]
count = 2
max_new_tokens = 4
"#;

/// The mean of a series' values over the last `window` of its steps, computed here from the
/// points `studio metrics` prints.
fn windowed(points: &[serde_json::Value], window: f64) -> f64 {
    let last = points
        .iter()
        .map(|p| p[0].as_u64().expect("step"))
        .max()
        .expect("points");
    let from = last as f64 * (1.0 - window);
    let kept: Vec<f64> = points
        .iter()
        .filter(|p| p[0].as_u64().expect("step") as f64 >= from)
        .filter_map(|p| p[1].as_f64())
        .collect();
    kept.iter().sum::<f64>() / kept.len() as f64
}

#[test]
fn a_study_over_seeds_reports_figures_studio_metrics_gives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws_dir = dir.path().join("ws");
    let path = write_config(dir.path(), "study", STUDY);
    let out = studio_in(
        &ws_dir,
        &[
            "study",
            &path.to_string_lossy(),
            "--seeds",
            "2",
            "--seed",
            "7",
            "--json",
        ],
        &[],
    );
    let report = json_stdout(&out);
    assert_eq!(report["study"], "seeds");
    let arms = report["arms"].as_array().expect("arms");
    assert_eq!(arms.len(), 3);
    let ws = Workspace::open(&ws_dir).expect("workspace");
    for arm in arms {
        let runs = arm["runs"].as_array().expect("runs");
        let seeds: Vec<u64> = runs
            .iter()
            .map(|r| r["seed"].as_u64().expect("seed"))
            .collect();
        assert_eq!(seeds, [7, 8], "{arm}");
        for name in ["loss", "num_tokens"] {
            let metric = &arm["metrics"][name];
            let mut values = Vec::new();
            for (r, value) in runs
                .iter()
                .zip(metric["values"].as_array().expect("values"))
            {
                let id = r["run"].as_i64().expect("run");
                let m = json_stdout(&studio_in(
                    &ws_dir,
                    &["metrics", &id.to_string(), "--name", name, "--json"],
                    &[],
                ));
                let expected = windowed(m["series"][name].as_array().expect("points"), 0.5);
                let got = value.as_f64().expect("value");
                assert!(
                    (got - expected).abs() < 1e-9,
                    "{name} of run {id}: {got} against {expected}"
                );
                values.push(expected);
            }
            let mean = values.iter().sum::<f64>() / 2.0;
            let sd = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
            assert!((metric["mean"].as_f64().expect("mean") - mean).abs() < 1e-9);
            assert!((metric["sd"].as_f64().expect("sd") - sd).abs() < 1e-9);
        }
        // Each run was seeded as the study said, a child from its own seed's parent.
        for r in runs {
            let record = ws.run(r["run"].as_i64().expect("run")).expect("run");
            let config: toml::Table = toml::from_str(&record.config_toml).expect("config");
            assert_eq!(config["seed"].as_integer(), r["seed"].as_i64());
            if arm["key"] == "child" {
                let narrow = arms[0]["runs"]
                    .as_array()
                    .expect("runs")
                    .iter()
                    .find(|n| n["seed"] == r["seed"])
                    .expect("same seed's parent");
                assert_eq!(
                    config["init_from"]["run"].as_integer(),
                    narrow["run"].as_i64()
                );
            }
        }
    }
    let effect = &report["effect"];
    assert_eq!(effect["holds"], true, "{effect}");
    assert_eq!(effect["seeds_holding"], 2);
    let (wide, narrow) = (
        &arms[1]["metrics"]["num_tokens"],
        &arms[0]["metrics"]["num_tokens"],
    );
    let difference = wide["mean"].as_f64().expect("mean") - narrow["mean"].as_f64().expect("mean");
    assert!((effect["difference"].as_f64().expect("difference") - difference).abs() < 1e-9);
    let ratio = wide["mean"].as_f64().expect("mean") / narrow["mean"].as_f64().expect("mean");
    assert!((effect["ratio"].as_f64().expect("ratio") - ratio).abs() < 1e-9);

    // The opposite claim, on the same study run again with one seed, is reported as not holding.
    let reversed = STUDY.replace("expect = \"higher\"", "expect = \"lower\"");
    let path = write_config(dir.path(), "reversed", &reversed);
    let out = studio_in(&ws_dir, &["study", &path.to_string_lossy()], &[]);
    common::assert_success(&out);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("holds on 0 of 1 seeds"), "{table}");
    assert!(table.contains("does NOT hold"), "{table}");
    assert!(
        table.contains("each cell: mean ± sd over 1 seed"),
        "{table}"
    );
}

/// Every shipped preset passes the checks Launch runs before Start, run by run.
#[test]
fn every_preset_passes_study_check() {
    let dir = common::repo_root().join("assets/presets");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("assets/presets") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let ws = tempfile::tempdir().expect("tempdir");
            let out = studio_in(
                ws.path(),
                &["study", &path.to_string_lossy(), "--check"],
                &[],
            );
            common::assert_success(&out);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("valid ("), "{}: {stdout}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} presets");
}
