//! Learning-rate schedules: linear warmup, then cosine or linear decay to zero (as
//! transformers' `get_cosine_schedule_with_warmup` / `get_linear_schedule_with_warmup`), or
//! constant.

use serde::{Deserialize, Serialize};

/// The decay after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decay {
    #[default]
    Cosine,
    Linear,
    Constant,
}

/// Learning rate for optimizer step `step` (0-based) of `total`.
pub fn learning_rate(peak: f64, step: u64, warmup: u64, total: u64, decay: Decay) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).clamp(0.0, 1.0);
    match decay {
        Decay::Cosine => peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        Decay::Linear => peak * (1.0 - progress),
        Decay::Constant => peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        assert!((learning_rate(1.0, 0, 4, 20, Decay::Cosine) - 0.25).abs() < 1e-12);
        assert!((learning_rate(1.0, 3, 4, 20, Decay::Cosine) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 4, 4, 20, Decay::Cosine) - 1.0).abs() < 1e-12);
        assert!((learning_rate(1.0, 12, 4, 20, Decay::Cosine) - 0.5).abs() < 1e-12);
        assert!((learning_rate(1.0, 12, 4, 20, Decay::Linear) - 0.5).abs() < 1e-12);
        assert!(learning_rate(1.0, 20, 4, 20, Decay::Cosine).abs() < 1e-12);
        assert_eq!(learning_rate(0.1, 19, 0, 20, Decay::Constant), 0.1);
    }
}
