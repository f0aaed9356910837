//! Training: run configurations, supervised fine-tuning (full and LoRA), AdamW with global-norm
//! clipping, schedules, checkpoints with exact resume, and the run loop a worker executes.

pub mod checkpoint;
pub mod config;
pub mod evaluation;
pub mod grpo;
pub mod health;
pub mod launch;
pub mod optim;
pub mod preflight;
pub mod reward_check;
pub mod rewards;
pub mod run;
pub mod schedule;
pub mod session;
pub mod settings;
pub mod sft;
pub mod study;
pub mod traces;

pub use config::RunConfig;

/// Why a run could not go on. Messages name the setting, file, parameter or step at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{origin}: {message}")]
    ConfigSyntax { origin: String, message: String },
    #[error("{origin}: setting `{setting}` {problem}")]
    Setting {
        origin: String,
        setting: String,
        problem: String,
    },
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    #[error(transparent)]
    Infer(#[from] crate::infer::InferError),
    #[error(transparent)]
    Text(#[from] crate::text::TextError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error("could not read {what} from the backend: {message}")]
    ReadBack { what: String, message: String },
    #[error("could not read the gradient of `{parameter}` from the backend: {message}")]
    ReadGradient { parameter: String, message: String },
    // Not a `#[source]`: the message carries it, and a chain printer would print it twice.
    #[error("checkpoint {path}: {problem}")]
    Restore {
        path: std::path::PathBuf,
        problem: crate::models::ModelError,
    },
    // Not a `#[source]`, as `Restore`.
    #[error("{what}: {problem}")]
    OpenModel {
        /// `checkpoint ID (run R at step S)` or `model `SPEC``.
        what: String,
        problem: Box<TrainError>,
    },
    #[error("`{spec}` names a checkpoint, which is looked up in a workspace, and none was given")]
    NoWorkspace { spec: String },
    #[error(
        "evaluations {a} and {b} are of different problems ({source_a} and {source_b}); flipped \
         problems compare two evaluations of the same source"
    )]
    DifferentSources {
        a: crate::store::EvaluationId,
        b: crate::store::EvaluationId,
        source_a: String,
        source_b: String,
    },
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(
        "the loss became {value} at step {step}; the run stopped. The last good checkpoint \
         (step {last_checkpoint}) and all metrics up to step {last_good_step} are kept; lower \
         the learning rate or check the data, then resume"
    )]
    NonFinite {
        value: f64,
        step: u64,
        last_good_step: u64,
        last_checkpoint: u64,
    },
    #[error("internal error (a bug in the studio; please report it): {panic}")]
    Internal { panic: String },
    #[error("the dataset has no usable examples: {source_name}")]
    NoExamples { source_name: String },
    #[error("{what} was cancelled; nothing of it was stored")]
    Cancelled { what: String },
}
