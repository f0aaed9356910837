//! GRPO-family reinforcement learning with verifiable rewards (TRL's `GRPOTrainer` names):
//! sampled groups of completions per prompt, scored by composable rewards, trained with the
//! clipped group-relative objective.
//!
//! - [`objective`]: advantages, importance weights, clipping, the k3 KL, the entropy bonus and
//!   the loss types; the top-entropy token mask and DAPO's dynamic-sampling filter.
//! - [`run`]: the loop of a GRPO run: rollouts, rewards, advantages, updates, metrics.

pub mod objective;
pub mod run;
