//! The run a worker executes: [`execute`] prepares it ([`super::session::prepare`]) and hands
//! it to its algorithm's loop (`sft::run`, `grpo::run`).

use super::TrainError;
use super::config::Algorithm;
use crate::store::{RunId, Workspace};

pub use super::session::{Hooks, Outcome, StepCallback, StopCheck, TestHooks};

/// Runs (or resumes) run `run_id` of `workspace` to its end or a stop request.
pub fn execute(
    workspace: &Workspace,
    run_id: RunId,
    hooks: Hooks<'_>,
) -> Result<Outcome, TrainError> {
    let prepared = super::session::prepare(workspace, run_id)?;
    match prepared.config.algorithm {
        Algorithm::Sft => super::sft::run::execute(workspace, run_id, hooks, prepared),
        Algorithm::Grpo => super::grpo::run::execute(workspace, run_id, hooks, prepared),
    }
}
