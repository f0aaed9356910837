//! AdamW (Loshchilov & Hutter, decoupled weight decay, as `torch.optim.AdamW`) with global-norm
//! gradient clipping (as `torch.nn.utils.clip_grad_norm_`) over every trainable parameter of a
//! burn module. State is keyed by the parameter's path in the module (e.g.
//! `layers.3.self_attn.q_proj.lora.a`), so it survives rebuilding the model from a
//! checkpoint and is saved as plain named tensors.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::models::params::ModulePath;

/// AdamW hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// First and second moments of one parameter, flattened, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

/// The optimizer with its state.
#[derive(Debug, Clone)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Steps taken (for bias correction).
    pub step: u64,
    pub state: BTreeMap<String, Moments>,
}

/// Gradients of the trainable parameters, by path, flattened on the host, accumulated over
/// micro-batches.
#[derive(Debug, Default, Clone)]
pub struct GradBuffer {
    pub grads: BTreeMap<String, Vec<f32>>,
    pub micro_batches: usize,
}

struct Collect<'a> {
    paths: ModulePath,
    grads: &'a Gradients,
    into: &'a mut GradBuffer,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = param.val().grad(self.grads) else {
            return;
        };
        let values: Vec<f32> = grad.into_data().try_into_vec::<f32>().unwrap_or_default();
        let slot = self
            .into
            .grads
            .entry(self.paths.current())
            .or_insert_with(|| vec![0.0; values.len()]);
        for (s, g) in slot.iter_mut().zip(values) {
            *s += g;
        }
    }
}

impl GradBuffer {
    /// Adds this backward pass's gradients.
    pub fn accumulate<M: Module>(&mut self, module: &M, grads: &Gradients) {
        let mut c = Collect {
            paths: ModulePath::default(),
            grads,
            into: self,
        };
        module.visit(&mut c);
        self.micro_batches += 1;
    }

    /// L2 norm over all accumulated gradients (averaged over micro-batches).
    pub fn global_norm(&self) -> f64 {
        let scale = 1.0 / self.micro_batches.max(1) as f64;
        self.grads
            .values()
            .flat_map(|g| g.iter())
            .map(|&g| (f64::from(g) * scale).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

struct Update<'a> {
    paths: ModulePath,
    optimizer: &'a mut AdamW,
    grads: &'a GradBuffer,
    /// Multiplies every gradient (micro-batch averaging and clipping).
    grad_scale: f32,
    lr: f64,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.paths.current();
        let Some(grad) = self.grads.grads.get(&path) else {
            return param;
        };
        let c = &self.optimizer.config;
        let t = self.optimizer.step as f64;
        let (b1, b2) = (c.beta1, c.beta2);
        let bc1 = 1.0 - b1.powf(t);
        let bc2 = 1.0 - b2.powf(t);
        let (lr, wd, eps) = (self.lr, c.weight_decay, c.eps);
        let grad_scale = self.grad_scale;
        let moments = self.optimizer.state.entry(path).or_insert_with(|| Moments {
            m: vec![0.0; grad.len()],
            v: vec![0.0; grad.len()],
        });
        param.map(|tensor| {
            let device = tensor.device();
            let dims = tensor.dims();
            let mut values: Vec<f32> = tensor
                .clone()
                .inner()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            for i in 0..values.len() {
                let g = f64::from(grad[i] * grad_scale);
                let m = b1 * f64::from(moments.m[i]) + (1.0 - b1) * g;
                let v = b2 * f64::from(moments.v[i]) + (1.0 - b2) * g * g;
                moments.m[i] = m as f32;
                moments.v[i] = v as f32;
                let p = f64::from(values[i]) * (1.0 - lr * wd);
                let update = (m / bc1) / ((v / bc2).sqrt() + eps);
                values[i] = (p - lr * update) as f32;
            }
            Tensor::<D>::from_data(TensorData::new(values, dims), &device).require_grad()
        })
    }
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// One optimizer step with the accumulated gradients, clipped to `max_grad_norm` (if any).
    /// Returns the updated module and the gradient norm before clipping.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &GradBuffer,
        lr: f64,
        max_grad_norm: Option<f64>,
    ) -> (M, f64) {
        let norm = grads.global_norm();
        let mut scale = 1.0 / grads.micro_batches.max(1) as f64;
        if let Some(max) = max_grad_norm
            && norm > max
        {
            scale *= max / (norm + 1e-6);
        }
        self.step += 1;
        let mut update = Update {
            paths: ModulePath::default(),
            optimizer: self,
            grads,
            grad_scale: scale as f32,
            lr,
        };
        (module.map(&mut update), norm)
    }
}
