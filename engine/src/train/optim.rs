//! AdamW (Loshchilov & Hutter, decoupled weight decay, as `torch.optim.AdamW`) with global-norm
//! gradient clipping (as `torch.nn.utils.clip_grad_norm_`) over every trainable parameter of a
//! burn module. State is keyed by the parameter's path in the module (e.g.
//! `layers.3.self_attn.q_proj.lora.a`), so it survives rebuilding the model from a
//! checkpoint and is saved as plain named tensors.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Gradients;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::TrainError;
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
    grads: &'a mut Gradients,
    into: &'a mut GradBuffer,
    /// The first gradient that could not be read back.
    failed: Option<TrainError>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Removed rather than read, so the gradient's buffer is moved out without a copy.
        let Some(grad) = param.val().grad_remove(self.grads) else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        let path = self.paths.current();
        let values: Vec<f32> = match grad.into_data().try_into_vec::<f32>() {
            Ok(values) => values,
            Err(e) => {
                self.failed = Some(TrainError::ReadGradient {
                    parameter: path,
                    message: format!("{e:?}"),
                });
                return;
            }
        };
        match self.into.grads.entry(path) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(values);
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                slot.get_mut()
                    .par_chunks_mut(CHUNK)
                    .zip(values.par_chunks(CHUNK))
                    .for_each(|(s, g)| s.iter_mut().zip(g).for_each(|(s, g)| *s += g));
            }
        }
    }
}

impl GradBuffer {
    /// Adds this backward pass's gradients. A gradient the backend cannot read back is an
    /// error naming its parameter (the buffer is then incomplete and must not be applied).
    pub fn accumulate<M: Module>(
        &mut self,
        module: &M,
        grads: &mut Gradients,
    ) -> Result<(), TrainError> {
        let mut c = Collect {
            paths: ModulePath::default(),
            grads,
            into: self,
            failed: None,
        };
        module.visit(&mut c);
        if let Some(e) = c.failed {
            return Err(e);
        }
        self.micro_batches += 1;
        Ok(())
    }

    /// L2 norm over all accumulated gradients (averaged over micro-batches).
    pub fn global_norm(&self) -> f64 {
        let scale = 1.0 / self.micro_batches.max(1) as f64;
        let squares: f64 = self
            .grads
            .values()
            .map(|g| {
                // Chunk sums collected in order, so the total does not depend on scheduling.
                let partial: Vec<f64> = g
                    .par_chunks(CHUNK)
                    .map(|c| c.iter().map(|&g| f64::from(g).powi(2)).sum::<f64>())
                    .collect();
                partial.iter().sum::<f64>()
            })
            .sum();
        squares.sqrt() * scale
    }
}

struct Update<'a> {
    paths: ModulePath,
    optimizer: &'a mut AdamW,
    grads: &'a GradBuffer,
    /// Multiplies every gradient (micro-batch averaging and clipping).
    grad_scale: f32,
    lr: f64,
    /// The first parameter whose values could not be read (it and those after it are left
    /// as they were).
    failed: Option<TrainError>,
}

impl ModuleMapper for Update<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // The updated weights replace the loaded ones, on the same huge pages (decode streams
        // them, `alloc::with_huge_pages`).
        crate::alloc::with_huge_pages(|| self.update(param))
    }
}

impl Update<'_> {
    fn update<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.paths.current();
        let Some(grad) = self.grads.grads.get(&path) else {
            return param;
        };
        if self.failed.is_some() {
            return param;
        }
        let values = match param.val().inner().into_data().try_into_vec::<f32>() {
            Ok(values) => values,
            Err(e) => {
                self.failed = Some(TrainError::ReadBack {
                    what: format!("parameter `{path}`"),
                    message: format!("{e:?}"),
                });
                return param;
            }
        };
        let c = &self.optimizer.config;
        let t = self.optimizer.step as f64;
        let hyper = Hyper {
            b1: c.beta1 as f32,
            b2: c.beta2 as f32,
            bc1: (1.0 - c.beta1.powf(t)) as f32,
            bc2: (1.0 - c.beta2.powf(t)) as f32,
            lr: self.lr as f32,
            decay: (1.0 - self.lr * c.weight_decay) as f32,
            eps: c.eps as f32,
            grad_scale: self.grad_scale,
        };
        let moments = self.optimizer.state.entry(path).or_insert_with(|| Moments {
            m: vec![0.0; grad.len()],
            v: vec![0.0; grad.len()],
        });
        param.map(|tensor| {
            let device = tensor.device();
            let dims = tensor.dims();
            let mut values = values;
            values
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(moments.m.par_chunks_mut(CHUNK))
                .zip(moments.v.par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    crate::kernels::simd_kernel!(Step { p: &'a mut [f32], g: &'a [f32], m: &'a mut [f32], v: &'a mut [f32], hyper: Hyper }
                        => adamw_step(p, g, m, v, hyper))
                });
            Tensor::<D>::from_data(TensorData::new(values, dims), &device).require_grad()
        })
    }
}

/// Elements per parallel task of the optimizer's passes.
const CHUNK: usize = 1 << 15;

/// One step's constants, in f32 as `torch.optim.AdamW` computes.
#[derive(Clone, Copy)]
struct Hyper {
    b1: f32,
    b2: f32,
    /// Bias corrections `1 − βᵗ`.
    bc1: f32,
    bc2: f32,
    lr: f32,
    /// `1 − lr · weight_decay`.
    decay: f32,
    eps: f32,
    grad_scale: f32,
}

/// AdamW on one slice of a parameter, with its gradient and moments.
#[inline(always)]
fn adamw_step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: Hyper) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * h.grad_scale;
        *m = h.b1 * *m + (1.0 - h.b1) * g;
        *v = h.b2 * *v + (1.0 - h.b2) * g * g;
        let update = (*m / h.bc1) / ((*v / h.bc2).sqrt() + h.eps);
        *p = *p * h.decay - h.lr * update;
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
    /// Returns the updated module and the gradient norm before clipping; a parameter the
    /// backend cannot read back is an error naming it.
    pub fn step<M: Module>(
        &mut self,
        module: M,
        grads: &GradBuffer,
        lr: f64,
        max_grad_norm: Option<f64>,
    ) -> Result<(M, f64), TrainError> {
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
            failed: None,
        };
        let module = module.map(&mut update);
        match update.failed {
            Some(e) => Err(e),
            None => Ok((module, norm)),
        }
    }
}
