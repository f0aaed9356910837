//! Studies: several runs executed one after another and compared (`studio study FILE`). A study
//! reproduces one effect of a paper in miniature: each `[[runs]]` table holds a whole run
//! config under `config`, may start from an earlier run of the study (`init_from = "KEY"`), and
//! `compare` names the metrics of the comparison table. An `[effect]` table states the effect the
//! study reproduces (which arm differs from which, on which metric, in which direction, over
//! which window of steps), so `studio study --seeds N` can say whether it holds on every seed
//! ([`Effect::verdict`]).
//!
//! ```toml
//! name = "clip-higher"
//! compare = ["entropy", "eval/accuracy"]
//! [[runs]]
//! key = "sft"
//! [runs.config]
//! model = "builtin:tiny-reasoner-init"
//! # … a whole run config …
//! [[runs]]
//! key = "grpo"
//! init_from = "sft"
//! [runs.config]
//! algorithm = "grpo"
//! # …
//! ```

use serde::{Deserialize, Serialize};

use super::TrainError;
use super::config::RunConfig;

/// A study file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub name: String,
    /// What the study shows and where (paper, figure).
    #[serde(default)]
    pub description: String,
    /// Metrics of the comparison table: each run's last value and its mean over the run.
    pub compare: Vec<String>,
    /// The first seed of `studio study --seeds N` (then S+1, …); default: each run's own seed
    /// when one seed is run.
    #[serde(default)]
    pub seed: Option<u64>,
    /// The effect the study reproduces, judged over the seeds it ran.
    #[serde(default)]
    pub effect: Option<Effect>,
    pub runs: Vec<StudyRun>,
}

/// The direction an effect expects of `arm` against `than`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `arm` above `than` by more than `margin`.
    Higher,
    /// `arm` below `than` by more than `margin`.
    Lower,
    /// `arm` matches or beats `than`: at least `than − margin`.
    AtLeast,
}

impl Expect {
    pub fn name(self) -> &'static str {
        match self {
            Self::Higher => "higher",
            Self::Lower => "lower",
            Self::AtLeast => "at_least",
        }
    }

    /// Whether `difference` (`arm − than`) is what this direction expects.
    pub fn holds(self, difference: f64, margin: f64) -> bool {
        match self {
            Self::Higher => difference > margin,
            Self::Lower => difference < -margin,
            Self::AtLeast => difference >= -margin,
        }
    }
}

/// The `[effect]` table: what a study claims, decided before it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Effect {
    /// The claim in words, with its source (paper, figure).
    pub statement: String,
    /// A metric the runs log (`entropy`, `eval/accuracy`, …).
    pub metric: String,
    /// The key of the run expected to differ.
    pub arm: String,
    /// The key of the run it is compared with.
    pub than: String,
    /// `higher`, `lower` or `at_least` (matches or beats).
    pub expect: Expect,
    /// The last fraction of each run's steps averaged (1.0: the whole run). Default 0.2.
    #[serde(default = "default_window")]
    pub window: f64,
    /// How far past `than` the arm must be (`higher`, `lower`) or may fall short of it
    /// (`at_least`), in the metric's units. Default 0.
    #[serde(default)]
    pub margin: f64,
}

fn default_window() -> f64 {
    0.2
}

/// One seed's side of an effect: the arm's and the comparison's windowed means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeedEffect {
    pub seed: u64,
    pub arm: f64,
    pub than: f64,
    pub difference: f64,
    pub holds: bool,
}

/// An effect judged over the seeds that ran.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectVerdict {
    /// It holds on every seed (and at least one seed ran with both values).
    pub holds: bool,
    /// Mean of the arm's values minus mean of the comparison's.
    pub difference: f64,
    /// Mean of the arm's values over mean of the comparison's (not finite when that is 0).
    pub ratio: f64,
    pub seeds_holding: usize,
    pub seeds: Vec<SeedEffect>,
}

impl Effect {
    /// The verdict from each seed's `(seed, arm value, than value)` (each a [`windowed_mean`] of
    /// `metric`); a seed missing either value does not hold.
    pub fn verdict(&self, per_seed: &[(u64, Option<f64>, Option<f64>)]) -> EffectVerdict {
        let seeds: Vec<SeedEffect> = per_seed
            .iter()
            .map(|&(seed, arm, than)| {
                let (arm, than) = (arm.unwrap_or(f64::NAN), than.unwrap_or(f64::NAN));
                let difference = arm - than;
                SeedEffect {
                    seed,
                    arm,
                    than,
                    difference,
                    holds: difference.is_finite() && self.expect.holds(difference, self.margin),
                }
            })
            .collect();
        let arm = mean_sd(&seeds.iter().map(|s| s.arm).collect::<Vec<_>>()).0;
        let than = mean_sd(&seeds.iter().map(|s| s.than).collect::<Vec<_>>()).0;
        let seeds_holding = seeds.iter().filter(|s| s.holds).count();
        EffectVerdict {
            holds: !seeds.is_empty() && seeds_holding == seeds.len(),
            difference: arm - than,
            ratio: arm / than,
            seeds_holding,
            seeds,
        }
    }
}

/// The mean of a series' finite values over the last `window` fraction of its steps: the points
/// at steps ≥ (1 − window) × its last step. `None` when none is finite there.
pub fn windowed_mean(points: &[(u64, f64)], window: f64) -> Option<f64> {
    let last = points.iter().map(|p| p.0).max()?;
    let from = last as f64 * (1.0 - window.clamp(0.0, 1.0));
    let kept: Vec<f64> = points
        .iter()
        .filter(|p| p.0 as f64 >= from && p.1.is_finite())
        .map(|p| p.1)
        .collect();
    (!kept.is_empty()).then(|| kept.iter().sum::<f64>() / kept.len() as f64)
}

/// Mean and sample standard deviation (n − 1; 0 for one value) of the finite values; NaN mean
/// for none.
pub fn mean_sd(values: &[f64]) -> (f64, f64) {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = finite.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = finite.iter().sum::<f64>() / n as f64;
    let sd = if n < 2 {
        0.0
    } else {
        (finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    };
    (mean, sd)
}

/// One run of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRun {
    /// Its name within the study (the table's row, the target of `init_from`).
    pub key: String,
    /// Start from the final checkpoint of the study's earlier run with this key.
    #[serde(default)]
    pub init_from: Option<String>,
    /// The run config, as in a run file.
    pub config: toml::Table,
}

impl Study {
    /// Parses and checks a study: unique keys, `init_from` naming an earlier run, every run
    /// config valid. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        let study: Self = toml::from_str(text).map_err(|e| TrainError::ConfigSyntax {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let bad = |setting: String, problem: String| TrainError::Setting {
            origin: origin.to_string(),
            setting,
            problem,
        };
        if study.runs.is_empty() {
            return Err(bad(
                "runs".into(),
                "needs at least one [[runs]] table".into(),
            ));
        }
        for (i, run) in study.runs.iter().enumerate() {
            let earlier = &study.runs[..i];
            if earlier.iter().any(|r| r.key == run.key) {
                return Err(bad(
                    format!("runs[{i}].key"),
                    format!("`{}` is used twice", run.key),
                ));
            }
            if let Some(from) = &run.init_from
                && !earlier.iter().any(|r| &r.key == from)
            {
                return Err(bad(
                    format!("runs[{i}].init_from"),
                    format!("`{from}` is not the key of an earlier run of the study"),
                ));
            }
            // Placeholder run id for the check; the real one is known when the run is created.
            study.run_config(i, &|_| Some(1))?;
        }
        if let Some(effect) = &study.effect {
            for (setting, key) in [("effect.arm", &effect.arm), ("effect.than", &effect.than)] {
                if !study.runs.iter().any(|r| &r.key == key) {
                    return Err(bad(
                        setting.into(),
                        format!("`{key}` is not the key of a run of the study"),
                    ));
                }
            }
            if effect.arm == effect.than {
                return Err(bad(
                    "effect.than".into(),
                    "must name another run than `arm`".into(),
                ));
            }
            if !(effect.window > 0.0 && effect.window <= 1.0) {
                return Err(bad(
                    "effect.window".into(),
                    format!("must be in (0, 1], found {}", effect.window),
                ));
            }
            if !(effect.margin >= 0.0 && effect.margin.is_finite()) {
                return Err(bad(
                    "effect.margin".into(),
                    format!("must be ≥ 0, found {}", effect.margin),
                ));
            }
            if effect.metric.trim().is_empty() {
                return Err(bad("effect.metric".into(), "must name a metric".into()));
            }
        }
        Ok(study)
    }

    /// Run `index`'s config as TOML text, with `init_from` resolved through `run_id_of(key)`,
    /// validated.
    pub fn run_config(
        &self,
        index: usize,
        run_id_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<(String, RunConfig), TrainError> {
        self.seeded_run_config(index, None, run_id_of)
    }

    /// [`Study::run_config`] with the run's `seed` set to `seed` (a study over several seeds
    /// runs every run once per seed; `init_from` then names the same seed's run).
    pub fn seeded_run_config(
        &self,
        index: usize,
        seed: Option<u64>,
        run_id_of: &dyn Fn(&str) -> Option<i64>,
    ) -> Result<(String, RunConfig), TrainError> {
        let run = &self.runs[index];
        let origin = format!("study `{}`, run `{}`", self.name, run.key);
        let mut table = run.config.clone();
        if let Some(seed) = seed {
            let seed = i64::try_from(seed).map_err(|_| TrainError::Setting {
                origin: origin.clone(),
                setting: "seed".into(),
                problem: format!("{seed} is beyond TOML's integers"),
            })?;
            table.insert("seed".into(), seed.into());
        }
        if !table.contains_key("name") {
            table.insert("name".into(), format!("{}: {}", self.name, run.key).into());
        }
        if let Some(from) = &run.init_from {
            let id = run_id_of(from).ok_or_else(|| TrainError::Setting {
                origin: origin.clone(),
                setting: "init_from".into(),
                problem: format!("run `{from}` has not run yet"),
            })?;
            let mut init = toml::Table::new();
            init.insert("run".into(), id.into());
            table.insert("init_from".into(), init.into());
        }
        let text = toml::to_string(&table).map_err(|e| TrainError::ConfigSyntax {
            origin: origin.clone(),
            message: e.to_string(),
        })?;
        let config = RunConfig::from_toml(&text, &origin)?;
        Ok((text, config))
    }
}

/// What [`Study::check`] found for one run of a study.
#[derive(Debug)]
pub struct RunCheck {
    pub key: String,
    /// The run config, or why it is not one.
    pub config: Result<RunConfig, TrainError>,
    /// The checks Launch runs before a start ([`super::preflight::check`]); `None` when the
    /// config did not parse.
    pub preflight: Option<super::preflight::Preflight>,
}

impl RunCheck {
    pub fn ok(&self) -> bool {
        self.config.is_ok() && self.preflight.as_ref().is_some_and(|p| p.ok())
    }
}

impl Study {
    /// Every run checked as Launch checks a run before Start, without running anything. A run
    /// that starts from an earlier run of the study is checked on the model that run starts
    /// from (its checkpoint does not exist yet, and has that model's shapes and tokenizer).
    pub fn check(&self) -> Vec<RunCheck> {
        let mut models: Vec<String> = Vec::with_capacity(self.runs.len());
        let mut out = Vec::with_capacity(self.runs.len());
        for (i, run) in self.runs.iter().enumerate() {
            let config = self.run_config(i, &|_| Some(1)).map(|(_, mut config)| {
                if let Some(from) = &run.init_from
                    && let Some(parent) = self.runs[..i].iter().position(|r| &r.key == from)
                {
                    config.model = models[parent].clone();
                    config.init_from = None;
                }
                config
            });
            models.push(config.as_ref().map(|c| c.model.clone()).unwrap_or_default());
            let preflight = config
                .as_ref()
                .ok()
                .map(|c| super::preflight::check(c, None));
            out.push(RunCheck {
                key: run.key.clone(),
                config,
                preflight,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STUDY: &str = r#"
name = "s"
compare = ["eval/accuracy"]
[[runs]]
key = "sft"
[runs.config]
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
[[runs]]
key = "grpo"
init_from = "sft"
[runs.config]
algorithm = "grpo"
model = "builtin:tiny-reasoner-init"
[runs.config.data]
builtin = "arithmetic"
[[runs.config.rewards]]
kind = "accuracy"
"#;

    #[test]
    fn init_from_resolves_to_the_earlier_run() {
        let study = Study::from_toml(STUDY, "s.toml").expect("valid");
        let (text, config) = study
            .run_config(1, &|key| (key == "sft").then_some(7))
            .expect("config");
        assert_eq!(config.init_from.expect("init_from").run, 7);
        assert_eq!(config.name, "s: grpo");
        assert!(text.contains("algorithm = \"grpo\""));
    }

    #[test]
    fn bad_studies_name_the_setting() {
        let e = Study::from_toml(
            &STUDY.replace("init_from = \"sft\"", "init_from = \"warmup\""),
            "s.toml",
        )
        .expect_err("unknown key")
        .to_string();
        assert!(
            e.contains("runs[1].init_from") && e.contains("warmup"),
            "{e}"
        );
        let e = Study::from_toml(&STUDY.replace("key = \"grpo\"", "key = \"sft\""), "s.toml")
            .expect_err("duplicate")
            .to_string();
        assert!(e.contains("runs[1].key"), "{e}");
        let e = Study::from_toml(
            &STUDY.replace("kind = \"accuracy\"", "kind = \"luck\""),
            "s.toml",
        )
        .expect_err("bad run")
        .to_string();
        assert!(e.contains("run `grpo`") && e.contains("luck"), "{e}");
    }

    #[test]
    fn windowed_means_take_the_last_fraction_of_steps() {
        let points: Vec<(u64, f64)> = (0..=10).map(|s| (s, s as f64)).collect();
        // Steps 8, 9, 10.
        assert_eq!(windowed_mean(&points, 0.2), Some(9.0));
        assert_eq!(windowed_mean(&points, 1.0), Some(5.0));
        // A sparse series (evaluations every 50 steps of 150) keeps its last point.
        let eval = [(0, 0.1), (50, 0.2), (100, 0.4), (150, 0.5)];
        assert_eq!(windowed_mean(&eval, 0.2), Some(0.5));
        assert_eq!(windowed_mean(&eval, 0.5), Some(0.45));
        assert_eq!(windowed_mean(&[(3, f64::NAN)], 1.0), None);
        assert_eq!(windowed_mean(&[], 1.0), None);
        let (mean, sd) = mean_sd(&[1.0, 2.0, 4.0]);
        assert!((mean - 7.0 / 3.0).abs() < 1e-12);
        // Σ(x − m)² = 42/9, over n − 1 = 2.
        assert!((sd - (42.0f64 / 9.0 / 2.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
    }

    #[test]
    fn an_effect_holds_only_on_every_seed() {
        let effect = |expect, margin| Effect {
            statement: "s".into(),
            metric: "entropy".into(),
            arm: "a".into(),
            than: "b".into(),
            expect,
            window: 0.2,
            margin,
        };
        let seeds = [(1, Some(0.5), Some(0.3)), (2, Some(0.4), Some(0.35))];
        let v = effect(Expect::Higher, 0.0).verdict(&seeds);
        assert!(v.holds);
        assert_eq!(v.seeds_holding, 2);
        assert!((v.difference - (0.45 - 0.325)).abs() < 1e-12);
        assert!((v.ratio - 0.45 / 0.325).abs() < 1e-12);
        // A margin the second seed does not clear.
        let v = effect(Expect::Higher, 0.1).verdict(&seeds);
        assert!(!v.holds);
        assert_eq!(v.seeds_holding, 1);
        assert!(!effect(Expect::Lower, 0.0).verdict(&seeds).holds);
        // at_least: matching within the margin holds, falling short of it does not.
        let close = [(1, Some(0.50), Some(0.52)), (2, Some(0.60), Some(0.55))];
        assert!(effect(Expect::AtLeast, 0.03).verdict(&close).holds);
        assert!(!effect(Expect::AtLeast, 0.0).verdict(&close).holds);
        // A seed without a value does not hold.
        let missing = [(1, Some(0.5), None)];
        assert!(!effect(Expect::Higher, 0.0).verdict(&missing).holds);
        assert!(!effect(Expect::Higher, 0.0).verdict(&[]).holds);
    }

    #[test]
    fn effects_name_runs_of_the_study_and_seeds_reach_every_run() {
        let with_effect = format!(
            "{STUDY}\n[effect]\nstatement = \"x\"\nmetric = \"eval/accuracy\"\narm = \"grpo\"\nthan = \"sft\"\nexpect = \"higher\"\n"
        );
        let study = Study::from_toml(&with_effect, "s.toml").expect("valid");
        let effect = study.effect.clone().expect("effect");
        assert_eq!((effect.expect, effect.window), (Expect::Higher, 0.2));
        let (_, config) = study
            .seeded_run_config(1, Some(12), &|_| Some(4))
            .expect("seeded");
        assert_eq!(
            (config.seed, config.init_from.map(|i| i.run)),
            (12, Some(4))
        );
        let e = Study::from_toml(
            &with_effect.replace("arm = \"grpo\"", "arm = \"rl\""),
            "s.toml",
        )
        .expect_err("unknown arm")
        .to_string();
        assert!(e.contains("effect.arm") && e.contains("rl"), "{e}");
        let e = Study::from_toml(
            &with_effect.replace("than = \"sft\"", "than = \"grpo\""),
            "s.toml",
        )
        .expect_err("same run")
        .to_string();
        assert!(e.contains("effect.than"), "{e}");
    }

    /// Every shipped preset is a valid study.
    #[test]
    fn shipped_presets_are_valid_studies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/presets");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("assets/presets") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).expect("read");
                Study::from_toml(&text, &path.display().to_string()).expect("a valid study");
                checked += 1;
            }
        }
        assert!(checked >= 4, "only {checked} presets");
    }
}
