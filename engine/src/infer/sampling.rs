//! Choosing the next token from a row of logits: greedy, or temperature with top-k, top-p
//! (nucleus) and min-p filtering and a repetition penalty, applied in transformers' order
//! (penalty → temperature → top-k → top-p → min-p). Seeded, so a run can be repeated.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::InferError;

/// Sampling settings. `temperature == 0` means greedy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 picks the most likely token. Default 0.7.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all. Default 0.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1 keeps all. Default 1.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the top token's probability; 0 keeps all. Default 0.
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of tokens already seen; 1 is off. Default 1.
    pub repetition_penalty: f32,
    /// Random seed. Default 0.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), InferError> {
        let bad = |setting, problem: &str| {
            Err(InferError::BadSetting {
                setting,
                problem: problem.to_string(),
            })
        };
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", "must be ≥ 0 (0 is greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", "must be > 0");
        }
        Ok(())
    }
}

/// Draws tokens according to a [`SamplingConfig`].
#[derive(Debug)]
pub struct Sampler {
    config: SamplingConfig,
    rng: StdRng,
}

impl Sampler {
    pub fn new(config: SamplingConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    /// Picks the next token. `logits` is modified in place; `history` is the sequence so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let c = &self.config;
        if c.repetition_penalty != 1.0 {
            for &id in history {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l = if *l > 0.0 {
                        *l / c.repetition_penalty
                    } else {
                        *l * c.repetition_penalty
                    };
                }
            }
        }
        if c.temperature == 0.0 {
            return argmax(logits);
        }
        let inv_t = 1.0 / c.temperature;
        let mut candidates: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l * inv_t))
            .filter(|(_, l)| l.is_finite())
            .collect();
        candidates.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            candidates.truncate(c.top_k.max(1));
        }
        let Some(&(_, max)) = candidates.first() else {
            return argmax(logits);
        };
        let mut probs: Vec<f32> = candidates.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if c.top_p < 1.0 {
            let mut cumulative = 0.0;
            let mut keep = probs.len();
            for (i, p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= c.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
        }
        if c.min_p > 0.0 {
            let floor = c.min_p * probs[0];
            let keep = probs.iter().take_while(|&&p| p >= floor).count().max(1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut draw = self.rng.random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            draw -= p;
            if draw <= 0.0 {
                return candidates[i].0;
            }
        }
        candidates[probs.len() - 1].0
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_maximum() {
        let mut s = Sampler::new(SamplingConfig::greedy());
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_repeats() {
        let logits = vec![0.5f32, 2.0, 1.9, -3.0, 1.0];
        let cfg = SamplingConfig {
            temperature: 1.0,
            top_k: 1,
            ..SamplingConfig::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..20 {
            assert_eq!(s.sample(&mut logits.clone(), &[]), 1);
        }
        let cfg = SamplingConfig {
            temperature: 1.0,
            seed: 42,
            ..SamplingConfig::default()
        };
        let draws = |cfg: &SamplingConfig| {
            let mut s = Sampler::new(cfg.clone());
            (0..50)
                .map(|_| s.sample(&mut logits.clone(), &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(&cfg), draws(&cfg));
        assert!(
            draws(&cfg).iter().any(|&t| t != 1),
            "temperature 1 should explore"
        );
    }

    #[test]
    fn top_p_and_min_p_cut_the_tail() {
        // probabilities ≈ [0.64, 0.24, 0.09, 0.03]
        let logits = vec![3.0f32, 2.0, 1.0, 0.0];
        for cfg in [
            SamplingConfig {
                temperature: 1.0,
                top_p: 0.6,
                ..SamplingConfig::default()
            },
            SamplingConfig {
                temperature: 1.0,
                min_p: 0.5,
                ..SamplingConfig::default()
            },
        ] {
            let mut s = Sampler::new(cfg);
            for _ in 0..100 {
                assert_eq!(s.sample(&mut logits.clone(), &[]), 0);
            }
        }
    }

    #[test]
    fn repetition_penalty_discourages_seen_tokens() {
        let mut s = Sampler::new(SamplingConfig {
            repetition_penalty: 2.0,
            ..SamplingConfig::greedy()
        });
        assert_eq!(s.sample(&mut [2.0, 1.5], &[0]), 1);
    }

    #[test]
    fn invalid_settings_are_named() {
        let e = SamplingConfig {
            top_p: 0.0,
            ..SamplingConfig::default()
        }
        .validate();
        assert!(e.expect_err("invalid").to_string().contains("top_p"));
    }
}
