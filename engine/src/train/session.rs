//! What every algorithm's run loop shares: the hooks a worker passes in, the example stream,
//! [`prepare`] (the config, the model on the training backend with LoRA attached and the weights
//! of `init_from` restored, its tokenizer), [`resume`] from the latest checkpoint,
//! [`save_checkpoint`] and the periodic [`evaluate`]. The loops themselves are `sft::run` and
//! `grpo::run`; `run` dispatches to them.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::TrainError;
use super::checkpoint::{self, TrainState};
use super::config::{CURRICULUM_ALPHA, CURRICULUM_TEMPERATURE, Curriculum, RunConfig};
use super::evaluation::{EvalItem, answer_items, builtin_items};
use super::optim::{AdamW, AdamWConfig};
use super::traces::{EvalAnswer, eval_trace};
use crate::backend::{Backend, BackendKind};
use crate::data::builtin::{BuiltinTask, Problem};
use crate::data::{Dataset, Example};
use crate::formats::loader::load_model;
use crate::store::{RunId, StoreError, Workspace};

/// How a run ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed { step: u64 },
    Stopped { step: u64 },
}

/// Called after each step with `(step, max_steps, metrics)`.
pub type StepCallback<'a> = &'a mut dyn FnMut(u64, u64, &[(&str, f64)]);

/// Checked between steps: `Ok(true)` stops the run after a checkpoint; an error (the stop flag
/// could not be read) fails the run rather than running on unstoppable.
pub type StopCheck<'a> = &'a dyn Fn() -> Result<bool, crate::store::StoreError>;

/// Progress callbacks of the run loop.
pub struct Hooks<'a> {
    pub should_stop: StopCheck<'a>,
    /// Called after each step with its metrics.
    pub on_step: StepCallback<'a>,
    /// Faults the end-to-end tests inject; [`TestHooks::default`] injects none.
    pub test: TestHooks,
}

/// Faults a test can inject into a run, to check what the studio does with them. The `studio
/// worker` process reads them from `STUDIO_TEST_*` environment variables
/// ([`TestHooks::from_env`]); nothing else sets them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestHooks {
    /// The loss of this step reads as NaN (`STUDIO_TEST_NAN_AT_STEP`), to exercise the
    /// non-finite guard.
    pub nan_loss_at_step: Option<u64>,
}

impl TestHooks {
    /// The hooks the environment asks for.
    pub fn from_env() -> Self {
        Self {
            nan_loss_at_step: std::env::var("STUDIO_TEST_NAN_AT_STEP")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }
}
/// Examples in a reproducible shuffled order, epoch after epoch.
pub(crate) struct Stream {
    source: Source,
    seed: u64,
    epoch_cache: Option<(u64, Vec<u64>)>,
    curriculum: Curriculum,
    /// The run's optimizer steps, over which `easy_to_hard` climbs.
    max_steps: u64,
}

enum Source {
    Builtin {
        task: BuiltinTask,
        count: u64,
        difficulty: u8,
    },
    File {
        dataset: Box<Dataset>,
        train_rows: u64,
    },
}

impl Stream {
    pub(crate) fn len(&self) -> u64 {
        match &self.source {
            Source::Builtin { count, .. } => *count,
            Source::File { train_rows, .. } => *train_rows,
        }
    }

    /// The example at `stream_index`, drawn during optimizer step `step` (1-based).
    pub(crate) fn example(&mut self, stream_index: u64, step: u64) -> Result<Example, TrainError> {
        let level = self.level(step, stream_index, &[]);
        Ok(self.example_with_problem(stream_index, level)?.0)
    }

    /// The curriculum's difficulty level for the example at `stream_index` drawn during step
    /// `step` (1-based); `values` are the adaptive curriculum's level values. `None` for a
    /// dataset file (no levels).
    pub(crate) fn level(&self, step: u64, stream_index: u64, values: &[f64]) -> Option<u8> {
        let Source::Builtin { difficulty, .. } = &self.source else {
            return None;
        };
        let levels = u64::from(*difficulty) + 1;
        let level = match self.curriculum {
            Curriculum::None => u64::from(*difficulty),
            Curriculum::EasyToHard => {
                (step.saturating_sub(1) * levels / self.max_steps.max(1)).min(levels - 1)
            }
            Curriculum::Random => {
                crate::data::builtin::splitmix(self.seed ^ 0xc0ff_ee00 ^ stream_index) % levels
            }
            Curriculum::Adaptive => adaptive_level(values, levels as usize, self.seed, step),
        };
        Some(level as u8)
    }

    /// The levels an adaptive curriculum keeps values for (empty for the others).
    pub(crate) fn adaptive_levels(&self) -> usize {
        match (&self.source, self.curriculum) {
            (Source::Builtin { difficulty, .. }, Curriculum::Adaptive) => {
                usize::from(*difficulty) + 1
            }
            _ => 0,
        }
    }

    /// The example at `stream_index` with its built-in problem (for the exact verifiers), at
    /// difficulty `level` (a built-in task; `None`: the task's configured difficulty).
    pub(crate) fn example_with_problem(
        &mut self,
        stream_index: u64,
        level: Option<u8>,
    ) -> Result<(Example, Option<Problem>), TrainError> {
        let n = self.len();
        let (epoch, within) = (stream_index / n, stream_index % n);
        if self.epoch_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<u64> = (0..n).collect();
            order.shuffle(&mut StdRng::seed_from_u64(
                self.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ));
            self.epoch_cache = Some((epoch, order));
        }
        let index = self
            .epoch_cache
            .as_ref()
            .map_or(within, |(_, o)| o[within as usize]);
        match &self.source {
            Source::Builtin {
                task, difficulty, ..
            } => {
                let problem = task.problem_with(self.seed, index, level.unwrap_or(*difficulty));
                Ok((problem.example(), Some(problem)))
            }
            Source::File { dataset, .. } => Ok((dataset.example(index as usize)?, None)),
        }
    }

    /// The first `count` held-out items: a built-in task's problems drawn with the evaluation
    /// seed ([`builtin_items`]), or the file's rows after the training rows.
    pub(crate) fn eval_items(&self, count: usize) -> Result<Vec<EvalItem>, TrainError> {
        match &self.source {
            Source::Builtin {
                task, difficulty, ..
            } => Ok(builtin_items(*task, self.seed, *difficulty, count)),
            Source::File {
                dataset,
                train_rows,
            } => (*train_rows as usize..dataset.len())
                .take(count)
                .map(|i| {
                    Ok(EvalItem {
                        example: dataset.example(i)?,
                        problem: None,
                    })
                })
                .collect(),
        }
    }
}

/// What every algorithm starts a run from: its config, the model on the training backend (LoRA
/// attached, weights of `init_from` restored), its tokenizer and the example stream.
pub(crate) struct Prepared {
    pub(crate) config: RunConfig,
    pub(crate) origin: String,
    pub(crate) model: crate::models::CausalLm,
    pub(crate) tokenizer: crate::text::TextTokenizer,
    pub(crate) stream: Stream,
    pub(crate) lora: Option<crate::models::lora::LoraConfig>,
}

/// Loads what run `run_id` needs (see [`Prepared`]).
pub(crate) fn prepare(workspace: &Workspace, run_id: RunId) -> Result<Prepared, TrainError> {
    let record = workspace.run(run_id)?;
    let origin = format!("run {run_id} config");
    let config = RunConfig::from_toml(&record.config_toml, &origin)?;
    let kind: BackendKind = config.backend;
    let backend = Backend::new(kind)?.autodiff();
    backend.device.seed(config.seed);

    let loaded = load_model(&config.model, &backend)?;
    let tokenizer = loaded.tokenizer;
    let mut model = loaded.model;
    let (table, lora) = config.lora();
    let lora = lora.cloned();
    if let Some(l) = &lora {
        model = model
            .attach_lora(l, config.seed)
            .map_err(|e| TrainError::Setting {
                origin: origin.clone(),
                setting: format!("{table}.lora.target_modules"),
                problem: e.to_string(),
            })?;
    }
    if let Some(init) = &config.init_from
        && workspace.latest_checkpoint(run_id)?.is_none()
    {
        let ckpt = match init.step {
            Some(step) => workspace
                .checkpoint_at(init.run, step)
                .map_err(|e| match e {
                    StoreError::NoCheckpointAtStep { .. } => TrainError::Setting {
                        origin: origin.clone(),
                        setting: "init_from.step".into(),
                        problem: e.to_string(),
                    },
                    other => other.into(),
                })?,
            None => workspace
                .latest_checkpoint(init.run)?
                .ok_or_else(|| TrainError::Setting {
                    origin: origin.clone(),
                    setting: "init_from".into(),
                    problem: format!("run {} has no checkpoint yet", init.run),
                })?,
        };
        let saved = checkpoint::load(&ckpt.path)?;
        model.transformer =
            checkpoint::restore_module(model.transformer, &saved.weights, &ckpt.path)?;
        workspace.append_log(
            run_id,
            "info",
            &format!(
                "started from run {}'s checkpoint at step {} ({})",
                init.run,
                ckpt.step,
                ckpt.path.display()
            ),
        )?;
    }

    let source = match (&config.data.builtin, &config.data.path) {
        (Some(task), _) => Source::Builtin {
            task: BuiltinTask::from_name(task).ok_or_else(|| TrainError::Setting {
                origin: origin.clone(),
                setting: "data.builtin".into(),
                problem: format!("names an unknown built-in task `{task}`"),
            })?,
            count: config.data.count.max(1),
            difficulty: config.data.difficulty,
        },
        (None, Some(path)) => {
            let dataset = Dataset::open(std::path::Path::new(path), config.data.mapping.as_ref())?;
            if !dataset.bad_rows().is_empty() {
                workspace.append_log(
                    run_id,
                    "warn",
                    &format!(
                        "{path}: skipped {} bad rows (first at line {})",
                        dataset.bad_rows().len(),
                        dataset.bad_rows()[0].line
                    ),
                )?;
            }
            let holdout = config.data.holdout.min(dataset.len() / 2);
            let train_rows = (dataset.len() - holdout) as u64;
            if train_rows == 0 {
                return Err(TrainError::NoExamples {
                    source_name: path.clone(),
                });
            }
            Source::File {
                dataset: Box::new(dataset),
                train_rows,
            }
        }
        (None, None) => {
            return Err(TrainError::Setting {
                origin,
                setting: "data".into(),
                problem: "needs `builtin` or `path`".into(),
            });
        }
    };
    let stream = Stream {
        source,
        seed: config.seed,
        epoch_cache: None,
        curriculum: config.data.curriculum,
        max_steps: config.steps(),
    };
    Ok(Prepared {
        config,
        origin,
        model,
        tokenizer,
        stream,
        lora,
    })
}
/// The optimizer and training state of a run's first step.
pub(crate) fn fresh_start(
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    lora: bool,
) -> (AdamW, TrainState) {
    let optimizer = AdamW::new(AdamWConfig {
        beta1: betas[0],
        beta2: betas[1],
        eps,
        weight_decay,
    });
    let state = TrainState {
        step: 0,
        next_example: 0,
        pending_example: None,
        num_tokens: 0,
        kind: if lora { "lora" } else { "full" }.into(),
        curriculum_values: Vec::new(),
    };
    (optimizer, state)
}

/// Restores run `run_id`'s latest checkpoint, if it has one, into `model`, `optimizer` and
/// `state`, drops the metrics logged after it, and returns its step (0 without one).
pub(crate) fn resume(
    workspace: &Workspace,
    run_id: RunId,
    model: &mut crate::models::CausalLm,
    optimizer: &mut AdamW,
    state: &mut TrainState,
) -> Result<u64, TrainError> {
    let Some(ckpt) = workspace.latest_checkpoint(run_id)? else {
        return Ok(0);
    };
    let saved = checkpoint::load(&ckpt.path)?;
    // A module clone shares its tensors; the restored one replaces it.
    model.transformer =
        checkpoint::restore_module(model.transformer.clone(), &saved.weights, &ckpt.path)?;
    optimizer.state = saved.moments;
    optimizer.step = saved.optimizer_step;
    *state = saved.state;
    let dropped = workspace.truncate_metrics_after(run_id, state.step)?;
    workspace.truncate_traces_after(run_id, state.step)?;
    workspace.append_log(
        run_id,
        "info",
        &format!(
            "resumed from checkpoint at step {} ({dropped} later metric points dropped)",
            state.step
        ),
    )?;
    Ok(state.step)
}

/// Saves `model`'s trainable tensors, the optimizer and `state` as run `run_id`'s checkpoint at
/// `state.step`.
pub(crate) fn save_checkpoint(
    workspace: &Workspace,
    run_id: RunId,
    model: &crate::models::CausalLm,
    optimizer: &AdamW,
    state: &TrainState,
) -> Result<(), TrainError> {
    let dir = workspace
        .run_artifacts_dir(run_id)
        .join(format!("checkpoint-{:06}", state.step));
    let weights = checkpoint::module_tensors(&model.transformer, true)?;
    checkpoint::save(&dir, &weights, optimizer, state)?;
    workspace.add_checkpoint(run_id, state.step, &dir, &state.kind)?;
    Ok(())
}

/// One evaluation: the accuracy of greedy answers on the held-out items, and each answer as a
/// trace of the step it was taken at.
pub(crate) struct Evaluation {
    pub(crate) accuracy: f64,
    pub(crate) traces: Vec<crate::store::Trace>,
}

/// Greedy answers on the held-out items after `step` steps, checked by the task's verifier or
/// against the answer column.
pub(crate) fn evaluate(
    model: &crate::models::CausalLm,
    tokenizer: &crate::text::tokenizer::TextTokenizer,
    stream: &Stream,
    config: &RunConfig,
    chat: bool,
    step: u64,
) -> Result<Evaluation, TrainError> {
    let items = stream.eval_items(config.eval.count)?;
    let answers = answer_items(model, tokenizer, &items, chat, config.eval.max_new_tokens)?;
    let traces: Vec<crate::store::Trace> = items
        .iter()
        .zip(answers)
        .enumerate()
        .map(|(index, (item, answer))| {
            eval_trace(
                step,
                EvalAnswer {
                    index,
                    prompt: &item.example.prompt,
                    finish: answer.finish,
                    tokens: &answer.tokens,
                    completion: answer.completion,
                    correct: answer.correct,
                },
            )
        })
        .collect();
    let correct = traces.iter().filter(|t| t.correct == Some(true)).count();
    Ok(Evaluation {
        accuracy: correct as f64 / items.len().max(1) as f64,
        traces,
    })
}

/// The adaptive curriculum's draw for `step`: level `i` with probability proportional to
/// exp(value_i / [`CURRICULUM_TEMPERATURE`]), from a uniform number that depends only on
/// (seed, step), so a resumed step draws the same level. Levels without a value yet count 0.
fn adaptive_level(values: &[f64], levels: usize, seed: u64, step: u64) -> u64 {
    let value = |i: usize| values.get(i).copied().unwrap_or(0.0);
    let top = (0..levels).map(value).fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = (0..levels)
        .map(|i| ((value(i) - top) / CURRICULUM_TEMPERATURE).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let draw = crate::data::builtin::splitmix(seed ^ 0x5ec0_0000 ^ step) as f64 / u64::MAX as f64;
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w / total;
        if draw < acc {
            return i as u64;
        }
    }
    levels as u64 - 1
}

/// The adaptive curriculum after a step at `level` whose rollouts had these advantages: the
/// level's value moves toward their mean absolute value (the step's learning progress).
pub(crate) fn update_curriculum(
    values: &mut Vec<f64>,
    levels: usize,
    level: u8,
    advantages: &[f64],
) {
    if levels == 0 {
        return;
    }
    values.resize(levels, 0.0);
    let progress = advantages.iter().map(|a| a.abs()).sum::<f64>() / advantages.len().max(1) as f64;
    let v = &mut values[usize::from(level).min(levels - 1)];
    *v = CURRICULUM_ALPHA * progress + (1.0 - CURRICULUM_ALPHA) * *v;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(curriculum: Curriculum, difficulty: u8, max_steps: u64) -> Stream {
        Stream {
            source: Source::Builtin {
                task: BuiltinTask::Arithmetic,
                count: 100,
                difficulty,
            },
            seed: 7,
            epoch_cache: None,
            curriculum,
            max_steps,
        }
    }

    #[test]
    fn easy_to_hard_gives_each_level_an_equal_share_of_the_steps() {
        let s = stream(Curriculum::EasyToHard, 3, 100);
        let levels: Vec<u8> = (1..=100)
            .map(|step| s.level(step, 0, &[]).expect("level"))
            .collect();
        for level in 0..=3u8 {
            assert_eq!(
                levels.iter().filter(|&&l| l == level).count(),
                25,
                "level {level}"
            );
        }
        assert!(
            levels.windows(2).all(|w| w[0] <= w[1]),
            "rises with the step"
        );
        assert_eq!((levels[0], levels[99]), (0, 3));
        // Without a curriculum every step is at the configured difficulty.
        let s = stream(Curriculum::None, 2, 100);
        assert!((1..=100).all(|step| s.level(step, step, &[]) == Some(2)));
    }

    #[test]
    fn random_order_mixes_every_level_by_example() {
        let s = stream(Curriculum::Random, 3, 10);
        let levels: Vec<u8> = (0..4000)
            .map(|i| s.level(1, i, &[]).expect("level"))
            .collect();
        for level in 0..=3u8 {
            let share = levels.iter().filter(|&&l| l == level).count() as f64 / 4000.0;
            assert!((share - 0.25).abs() < 0.03, "level {level}: {share}");
        }
        assert_eq!(
            s.level(5, 17, &[]),
            s.level(9, 17, &[]),
            "by example, not by step"
        );
    }

    #[test]
    fn adaptive_draws_toward_the_levels_that_teach() {
        let s = stream(Curriculum::Adaptive, 2, 1000);
        // No values yet: uniform.
        let draws: Vec<u8> = (1..=3000)
            .map(|step| s.level(step, 0, &[]).expect("level"))
            .collect();
        for level in 0..=2u8 {
            let share = draws.iter().filter(|&&l| l == level).count() as f64 / 3000.0;
            assert!((share - 1.0 / 3.0).abs() < 0.04, "level {level}: {share}");
        }
        // Level 1 gives the most progress: drawn with probability e^(0.4/0.1) / (1 + e^4 + 1).
        let values = [0.0, 0.4, 0.0];
        let draws: Vec<u8> = (1..=3000)
            .map(|step| s.level(step, 0, &values).expect("level"))
            .collect();
        let share = draws.iter().filter(|&&l| l == 1).count() as f64 / 3000.0;
        let expected = 4f64.exp() / (2.0 + 4f64.exp());
        assert!(
            (share - expected).abs() < 0.03,
            "{share} against {expected}"
        );
        // The update is a running mean of the mean absolute advantage.
        let mut values = Vec::new();
        update_curriculum(&mut values, 3, 2, &[0.5, -0.5, 1.0, -1.0]);
        assert_eq!(values, [0.0, 0.0, CURRICULUM_ALPHA * 0.75]);
        update_curriculum(&mut values, 3, 2, &[0.0, 0.0]);
        assert_eq!(
            values[2],
            (1.0 - CURRICULUM_ALPHA) * CURRICULUM_ALPHA * 0.75
        );
    }
}
