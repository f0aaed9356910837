//! LoRA (low-rank adaptation, Hu et al. 2021) as PEFT computes it: a frozen projection `W` plus a
//! trainable low-rank update, `y = x·W + b + dropout(x)·A·B · (alpha / rank)`, with `A` drawn
//! from a seeded Kaiming-uniform initialization and `B` zero, so training starts from the base
//! model exactly. [`Proj`] is every projection of the decoder, adapted or not.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor};
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

    /// Several projections of the same input (q/k/v, or gate/up). For a few rows on flex
    /// inference (decode), their weights are read in one parallel pass
    /// ([`crate::kernels::matmul_small_many`]) instead of one pass each.
    pub fn forward_many<const D: usize, const N: usize>(
        projs: [&Proj; N],
        x: Tensor<D>,
    ) -> [Tensor<D>; N] {
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        if !(2..=3).contains(&N)
            || rows > crate::kernels::SMALL_ROWS
            || !crate::backend::is_flex_inference(&x.device())
        {
            return projs.map(|p| p.forward(x.clone()));
        }
        let weights = projs.iter().map(|p| p.base.weight.val()).collect();
        let flat = x.clone().reshape([rows, dims[D - 1]]);
        let mut products = crate::kernels::matmul_small_many(flat, weights).into_iter();
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

    /// The frozen projection `x·W + b`. Inference with a few rows (decode) reads `W` through the
    /// engine's bandwidth-bound kernel instead of a GEMM.
    fn base_forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let rows: usize = dims[..D - 1].iter().product();
        let w = self.base.weight.val();
        let [d_in, d_out] = w.dims();
        let x = x.reshape([rows, d_in]);
        // Rows flattened into one 2-d product: a `[batch, seq, in]` input would run as `batch`
        // separate GEMMs (each packing the weight again) and, in training, reduce a
        // `[batch, in, out]` weight gradient afterwards.
        let mut y = if rows <= crate::kernels::SMALL_ROWS
            && crate::backend::is_flex_inference(&x.device())
        {
            crate::kernels::matmul_small(x, w)
        } else {
            x.matmul(w)
        };
        if let Some(b) = &self.base.bias {
            y = y + b.val().unsqueeze();
        }
        let mut out_dims = dims;
        out_dims[D - 1] = d_out;
        y.reshape(out_dims)
    }

    /// Attaches a fresh adapter (A Kaiming-uniform, B zero) and freezes the base weights.
    pub fn attach_lora(self, config: &LoraConfig, device: &Device) -> Self {
        let [d_in, d_out] = self.base.weight.val().dims();
        let bound = (1.0 / d_in as f64).sqrt() * 3f64.sqrt() / 5f64.sqrt();
        let a = Tensor::<2>::random(
            [d_in, config.rank],
            Distribution::Uniform(-bound, bound),
            device,
        );
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
