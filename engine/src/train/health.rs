//! Warnings about a run's learning signal, read from its logged metrics: a dead signal (every
//! group's rewards agree, `frac_reward_zero_std` at 1, so GRPO's advantages are all zero and
//! nothing is learned) and an entropy collapse (the policy's `entropy` below a floor, so it
//! samples one answer and stops exploring). TRL logs both metrics and leaves the user to notice
//! (trl #3857, #3452); Runs, Studies and `studio runs show` show these with the step each began.

use serde::Serialize;

/// `frac_reward_zero_std` at or above this counts as every group agreeing.
pub const DEAD_SIGNAL_FRACTION: f64 = 0.999;
/// `entropy` (nats per token) below this counts as collapsed.
pub const COLLAPSE_ENTROPY_NATS: f64 = 0.05;
/// Consecutive logged steps a condition must last before it is warned about.
pub const WARNING_STEPS: usize = 10;

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    DeadSignal,
    EntropyCollapse,
}

/// One stretch of steps a condition held for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunWarning {
    pub kind: WarningKind,
    /// The first step of the stretch.
    pub since_step: u64,
    /// Its last step (the run's last logged step when it still holds).
    pub until_step: u64,
    /// The condition still holds at the run's last logged step.
    pub ongoing: bool,
    /// One line for the user.
    pub message: String,
}

/// The warnings of a run from its `frac_reward_zero_std` and `entropy` series (`(step, value)`
/// in step order; empty when not logged): the first stretch of [`WARNING_STEPS`] or more logged
/// steps of each condition.
pub fn run_warnings(zero_std: &[(u64, f64)], entropy: &[(u64, f64)]) -> Vec<RunWarning> {
    let mut out = Vec::new();
    if let Some((since, until, ongoing)) = first_stretch(zero_std, |v| v >= DEAD_SIGNAL_FRACTION) {
        out.push(RunWarning {
            kind: WarningKind::DeadSignal,
            since_step: since,
            until_step: until,
            ongoing,
            message: format!(
                "dead signal since step {since}: every group's rewards agree \
                 (frac_reward_zero_std = 1){}, so the advantages are zero and GRPO learns \
                 nothing; use an easier task or difficulty, more generations, a higher \
                 temperature, or dynamic sampling",
                if ongoing {
                    String::new()
                } else {
                    format!(" until step {until}")
                }
            ),
        });
    }
    if let Some((since, until, ongoing)) = first_stretch(entropy, |v| v < COLLAPSE_ENTROPY_NATS) {
        out.push(RunWarning {
            kind: WarningKind::EntropyCollapse,
            since_step: since,
            until_step: until,
            ongoing,
            message: format!(
                "entropy collapse since step {since}: the policy's entropy stays below \
                 {COLLAPSE_ENTROPY_NATS} nats per token{}, so its samples stop exploring; \
                 clip-higher (epsilon_high), an entropy bonus or a lower learning rate help",
                if ongoing {
                    String::new()
                } else {
                    format!(" until step {until}")
                }
            ),
        });
    }
    out
}

/// The first run of at least [`WARNING_STEPS`] consecutive finite points where `bad` holds:
/// its first and last step and whether it reaches the last point.
fn first_stretch(points: &[(u64, f64)], bad: impl Fn(f64) -> bool) -> Option<(u64, u64, bool)> {
    let mut start: Option<usize> = None;
    for (i, &(_, v)) in points.iter().enumerate() {
        if v.is_finite() && bad(v) {
            let from = *start.get_or_insert(i);
            let long_enough = i + 1 - from >= WARNING_STEPS;
            let ends = points
                .get(i + 1)
                .is_none_or(|&(_, next)| !(next.is_finite() && bad(next)));
            if long_enough && ends {
                return Some((points[from].0, points[i].0, i + 1 == points.len()));
            }
        } else {
            start = None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_enough_stretch_warns_with_the_step_it_began() {
        // Zero-std at 1 from step 6 to the end (15 steps): a dead signal since step 6.
        let zero_std: Vec<(u64, f64)> = (1..=20)
            .map(|s| (s, if s >= 6 { 1.0 } else { 0.5 }))
            .collect();
        // Entropy under the floor for 9 steps only (too short), then for 10 (steps 31–40).
        let entropy: Vec<(u64, f64)> = (1..=50)
            .map(|s| {
                let low = (11..=19).contains(&s) || (31..=40).contains(&s);
                (s, if low { 0.01 } else { 0.4 })
            })
            .collect();
        let warnings = run_warnings(&zero_std, &entropy);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let dead = &warnings[0];
        assert_eq!(
            (dead.kind, dead.since_step, dead.until_step, dead.ongoing),
            (WarningKind::DeadSignal, 6, 20, true)
        );
        assert!(dead.message.contains("since step 6"), "{}", dead.message);
        let collapse = &warnings[1];
        assert_eq!(
            (
                collapse.kind,
                collapse.since_step,
                collapse.until_step,
                collapse.ongoing
            ),
            (WarningKind::EntropyCollapse, 31, 40, false)
        );
        assert!(
            collapse.message.contains("until step 40"),
            "{}",
            collapse.message
        );
    }

    #[test]
    fn healthy_short_or_missing_series_warn_of_nothing() {
        let nine: Vec<(u64, f64)> = (1..=9).map(|s| (s, 1.0)).collect();
        let healthy: Vec<(u64, f64)> = (1..=40).map(|s| (s, 0.3)).collect();
        // A NaN breaks a stretch: 8 steps, then 9.
        let broken: Vec<(u64, f64)> = (1..=18)
            .map(|s| (s, if s == 9 { f64::NAN } else { 0.0 }))
            .collect();
        assert!(run_warnings(&nine, &broken).is_empty());
        assert!(run_warnings(&[], &healthy).is_empty());
        assert!(run_warnings(&[], &[]).is_empty());
    }
}
