//! LoRA (low-rank adaptation, Hu et al. 2021) as PEFT computes it: a frozen projection `W` plus a
//! trainable low-rank update, `y = x·W + b + dropout(x)·A·B · (alpha / rank)`, with `A` drawn
//! from a seeded Kaiming-uniform initialization and `B` zero, so training starts from the base
//! model exactly. [`Proj`] is every projection of the decoder, adapted or not.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// LoRA settings of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank of the update. Default 16.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`. Default 32.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Dropout on the adapter's input during training. Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// Projections to adapt, by name (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`,
    /// `up_proj`, `down_proj`). Default: the four attention projections.
    #[serde(default = "default_targets")]
    pub target_modules: Vec<String>,
}

fn default_rank() -> usize {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"]
        .map(String::from)
        .to_vec()
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: default_rank(),
            alpha: default_alpha(),
            dropout: 0.0,
            target_modules: default_targets(),
        }
    }
}

/// Projection names LoRA can target.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The trainable low-rank pair.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// `[in, rank]` (PEFT's `lora_A.weight` transposed).
    pub a: Param<Tensor<2>>,
    /// `[rank, out]` (PEFT's `lora_B.weight` transposed).
    pub b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: f64,
}

/// A linear projection of the decoder, optionally with a LoRA adapter.
#[derive(Module, Debug)]
pub struct Proj {
    pub base: Linear,
    pub lora: Option<LoraAdapter>,
}

impl Proj {
    pub fn new(base: Linear) -> Self {
        Self { base, lora: None }
    }

    /// `[.., in]` → `[.., out]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match &self.lora {
            None => self.base_forward(x),
            Some(_) => {
                let y = self.base_forward(x.clone());
                self.add_adapter(x, y)
            }
        }
    }

    /// Several projections of the same input (q/k/v, or gate/up), as one call to
    /// [`crate::kernels::matmul_many`] (which reads their weights in one pass for few rows).
    pub fn forward_many<const D: usize, const N: usize>(
        projs: [&Proj; N],
        x: Tensor<D>,
    ) -> [Tensor<D>; N] {
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let weights = projs.iter().map(|p| p.base.weight.val()).collect();
        let flat = x.clone().reshape([rows, dims[D - 1]]);
        let mut products = crate::kernels::matmul_many(flat, weights).into_iter();
        projs.map(|p| {
            let Some(mut y) = products.next() else {
                unreachable!("one product per projection")
            };
            if let Some(b) = &p.base.bias {
                y = y + b.val().unsqueeze();
            }
            let mut out_dims = dims;
            out_dims[D - 1] = y.dims()[1];
            p.add_adapter(x.clone(), y.reshape(out_dims))
        })
    }

    /// `y` plus the adapter's update of `x`, if there is an adapter.
    fn add_adapter<const D: usize>(&self, x: Tensor<D>, y: Tensor<D>) -> Tensor<D> {
        let Some(l) = &self.lora else {
            return y;
        };
        // Dropout only while training (autodiff device), as nn.Dropout in train mode.
        let input = if l.dropout > 0.0 && x.device().is_autodiff() {
            let keep = 1.0 - l.dropout;
            let mask = x.random_like(Distribution::Bernoulli(keep));
            (x * mask).div_scalar(keep)
        } else {
            x
        };
        let dims = input.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let update = input
            .reshape([rows, dims[D - 1]])
            .matmul(l.a.val())
            .matmul(l.b.val().mul_scalar(l.scale)); // scaling B ([rank, out]) is the cheap side
        let out_dims = y.dims();
        y + update.reshape(out_dims)
    }

    /// The frozen projection `x·W + b` ([`crate::kernels::matmul`] reads `W` once for few rows).
    fn base_forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let w = self.base.weight.val();
        let [d_in, d_out] = w.dims();
        let x = x.reshape([rows, d_in]);
        // Rows flattened into one 2-d product: a `[batch, seq, in]` input would run as `batch`
        // separate GEMMs (each packing the weight again) and, in training, reduce a
        // `[batch, in, out]` weight gradient afterwards.
        let mut y = crate::kernels::matmul(x, w);
        if let Some(b) = &self.base.bias {
            y = y + b.val().unsqueeze();
        }
        let mut out_dims = dims;
        out_dims[D - 1] = d_out;
        y.reshape(out_dims)
    }

    /// Attaches a fresh adapter (A Kaiming-uniform, B zero) and freezes the base weights. `A` is
    /// drawn on the host from `seed`, so the same seed gives the same adapter on every backend.
    pub fn attach_lora(self, config: &LoraConfig, device: &Device, seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let [d_in, d_out] = self.base.weight.val().dims();
        let bound = ((1.0 / d_in as f64).sqrt() * 3f64.sqrt() / 5f64.sqrt()) as f32;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let values: Vec<f32> = (0..d_in * config.rank)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::<2>::from_data(TensorData::new(values, [d_in, config.rank]), device);
        let b = Tensor::<2>::zeros([config.rank, d_out], device);
        Self {
            base: self.base.no_grad(),
            lora: Some(LoraAdapter {
                a: Param::from_tensor(a),
                b: Param::from_tensor(b),
                scale: config.alpha / config.rank as f64,
                dropout: config.dropout,
            }),
        }
    }

    /// `W + A·B·scale` as `[in, out]`: the weight with the adapter merged in.
    pub fn merged_weight(&self) -> Tensor<2> {
        let w = self.base.weight.val();
        match &self.lora {
            None => w,
            Some(l) => w + l.a.val().matmul(l.b.val()).mul_scalar(l.scale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32")
    }

    /// A `[3, 5]` input through a `[5, 4]` projection with bias, on the host in f64.
    fn base() -> (Proj, Vec<f32>, Vec<f32>, Vec<f32>, Device) {
        let device = Device::flex();
        let x: Vec<f32> = (0..15).map(|i| (i as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..20).map(|i| (i as f32 * 0.53).cos()).collect();
        let b: Vec<f32> = vec![0.1, -0.2, 0.3, -0.4];
        let linear = Linear {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w.clone(), [5, 4]),
                &device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b.clone(), [4]),
                &device,
            ))),
        };
        (Proj::new(linear), x, w, b, device)
    }

    fn reference(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        delta: Option<(&[f32], &[f32], usize, f64)>,
    ) -> Vec<f64> {
        let mut out = vec![0.0f64; 12];
        for r in 0..3 {
            for o in 0..4 {
                let mut y = f64::from(b[o]);
                for i in 0..5 {
                    y += f64::from(x[r * 5 + i]) * f64::from(w[i * 4 + o]);
                }
                if let Some((a, bb, rank, scale)) = delta {
                    for k in 0..rank {
                        let xa: f64 = (0..5)
                            .map(|i| f64::from(x[r * 5 + i]) * f64::from(a[i * rank + k]))
                            .sum();
                        y += xa * f64::from(bb[k * 4 + o]) * scale;
                    }
                }
                out[r * 4 + o] = y;
            }
        }
        out
    }

    #[test]
    fn fresh_adapter_gives_the_base_output_and_scales_by_alpha_over_rank() {
        let (proj, x, w, b, device) = base();
        let input = Tensor::<2>::from_data(TensorData::new(x.clone(), [3, 5]), &device);
        let config = LoraConfig {
            rank: 2,
            alpha: 6.0,
            ..LoraConfig::default()
        };
        let adapted = proj.attach_lora(&config, &device, 0);
        let lora = adapted.lora.as_ref().expect("adapter");
        assert_eq!(lora.scale, 3.0, "alpha / rank");
        // B starts at zero: exactly the base projection.
        let want = reference(&x, &w, &b, None);
        for (g, w) in host(adapted.forward(input.clone())).iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-5, "{g} vs {w}");
        }
        // A non-zero B: the update is x·A·B·(alpha/rank), in the forward pass and the merged
        // weight alike.
        let a = host(lora.a.val());
        let bb: Vec<f32> = (0..8).map(|i| 0.25 * (i as f32 - 3.5)).collect();
        let adapted = Proj {
            lora: Some(LoraAdapter {
                b: Param::from_tensor(Tensor::from_data(
                    TensorData::new(bb.clone(), [2, 4]),
                    &device,
                )),
                ..adapted.lora.clone().expect("adapter")
            }),
            ..adapted
        };
        let want = reference(&x, &w, &b, Some((&a, &bb, 2, 3.0)));
        for (g, w) in host(adapted.forward(input.clone())).iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-4, "{g} vs {w}");
        }
        let merged = input.matmul(adapted.merged_weight())
            + adapted.base.bias.as_ref().expect("bias").val().unsqueeze();
        for (g, w) in host(merged).iter().zip(&want) {
            assert!((f64::from(*g) - w).abs() < 1e-4, "merged: {g} vs {w}");
        }
    }
}
