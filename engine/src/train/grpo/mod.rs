//! GRPO-family reinforcement learning with verifiable rewards (TRL's `GRPOTrainer` names):
//! sampled groups of completions per prompt, scored by composable rewards, trained with the
//! clipped group-relative objective.
//!
//! - [`objective`]: advantages, importance weights, clipping, the k3 KL, the entropy bonus and
//!   the loss types; the top-entropy token mask and DAPO's dynamic-sampling filter.
//! - [`rollout`]: sampling and scoring a step's completions, their metrics;
//! - [`trace_writer`]: the step's rollouts as traces with their loss masks, written off the
//!   step's path;
//! - [`batch`]: the update batch's layout and loss masks, completion log-probs under a model;
//! - [`run`]: the loop of a GRPO run: rollouts, advantages, updates, metrics, checkpoints.

pub mod batch;
pub mod objective;
pub mod rollout;
pub mod run;
pub mod trace_writer;
