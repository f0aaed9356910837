//! Rotary position embeddings as Hugging Face computes them: `inv_freq` in f32, the "rotate half"
//! layout (the first half of each head pairs with the second half), and the Llama 3 frequency
//! scaling (`rope_type = "llama3"`).

use serde::{Deserialize, Serialize};

/// Llama 3's frequency-dependent scaling of the rotary base (`rope_scaling` with `rope_type` llama3).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// Rotary settings of a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RopeConfig {
    /// Base of the geometric frequency progression (`rope_theta`).
    pub theta: f64,
    /// Llama 3 scaling, when the checkpoint uses it.
    pub llama3: Option<Llama3Scaling>,
    /// Linear position interpolation factor (`rope_type = "linear"`), 1.0 when absent.
    pub linear_factor: f64,
}

impl RopeConfig {
    /// Inverse frequencies, `head_dim / 2` of them, in f32 as transformers computes them.
    pub fn inv_freq(&self, head_dim: usize) -> Vec<f32> {
        let half = head_dim / 2;
        let mut inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = (2 * i) as f32 / head_dim as f32;
                1.0 / (self.theta as f32).powf(exponent)
            })
            .collect();
        if let Some(s) = self.llama3 {
            let low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor;
            let high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor;
            for f in &mut inv_freq {
                let wavelen = 2.0 * std::f64::consts::PI / f64::from(*f);
                let scaled = if wavelen < high_freq_wavelen {
                    f64::from(*f)
                } else if wavelen > low_freq_wavelen {
                    f64::from(*f) / s.factor
                } else {
                    let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor)
                        / (s.high_freq_factor - s.low_freq_factor);
                    (1.0 - smooth) * f64::from(*f) / s.factor + smooth * f64::from(*f)
                };
                *f = scaled as f32;
            }
        }
        if self.linear_factor != 1.0 {
            for f in &mut inv_freq {
                *f /= self.linear_factor as f32;
            }
        }
        inv_freq
    }

    /// `(cos, sin)` tables for the given positions, each `[positions.len(), head_dim]` row-major,
    /// with the half-split layout (`cat(freqs, freqs)`).
    pub fn tables(&self, head_dim: usize, positions: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let inv_freq = self.inv_freq(head_dim);
        let half = head_dim / 2;
        let mut cos = vec![0.0f32; positions.len() * head_dim];
        let mut sin = vec![0.0f32; positions.len() * head_dim];
        for (row, &pos) in positions.iter().enumerate() {
            let base = row * head_dim;
            for (i, f) in inv_freq.iter().enumerate() {
                let angle = pos as f32 * f;
                let (s, c) = angle.sin_cos();
                cos[base + i] = c;
                cos[base + half + i] = c;
                sin[base + i] = s;
                sin[base + half + i] = s;
            }
        }
        (cos, sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_inv_freq_is_geometric() {
        let rope = RopeConfig {
            theta: 10000.0,
            llama3: None,
            linear_factor: 1.0,
        };
        let f = rope.inv_freq(8);
        assert_eq!(f.len(), 4);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[1] - 0.1).abs() < 1e-6);
        assert!((f[2] - 0.01).abs() < 1e-7);
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let plain = RopeConfig {
            theta: 500000.0,
            llama3: None,
            linear_factor: 1.0,
        };
        let scaled = RopeConfig {
            llama3: Some(Llama3Scaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            }),
            ..plain
        };
        let (a, b) = (plain.inv_freq(128), scaled.inv_freq(128));
        assert_eq!(a[0], b[0]);
        assert!((a[63] / 8.0 - b[63]).abs() < 1e-12);
    }

    #[test]
    fn tables_repeat_halves() {
        let rope = RopeConfig {
            theta: 10000.0,
            llama3: None,
            linear_factor: 1.0,
        };
        let (cos, sin) = rope.tables(4, &[0, 3]);
        assert_eq!(&cos[0..4], &[1.0, 1.0, 1.0, 1.0]);
        assert_eq!(cos[4], cos[6]);
        assert_eq!(sin[5], sin[7]);
        assert!((sin[4] - 3.0f32.sin()).abs() < 1e-6);
    }
}
