//! Where tensors live: the compute backend chosen for a model or a run.
//!
//! `cpu` is burn's `flex` backend (pure Rust, SIMD, rayon; AVX-512 kernels through the
//! `x86-v4` feature, chosen at run time), the default that always works. `wgpu` and `cuda` are
//! named here so settings and messages are stable; this build does not compile them in yet, and
//! choosing one says so instead of failing later.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A compute backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Cpu,
    Wgpu,
    Cuda,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        })
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu),
            "cuda" => Ok(Self::Cuda),
            other => Err(BackendError::Unknown(other.to_string())),
        }
    }
}

/// Why a backend cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{0}` is unknown (choose cpu, wgpu or cuda)")]
    Unknown(String),
    #[error("backend `{0}` is not compiled into this build of the studio; use `cpu`")]
    NotCompiled(BackendKind),
}

/// A chosen backend with its device.
#[derive(Debug, Clone)]
pub struct Backend {
    pub kind: BackendKind,
    pub device: Device,
}

impl Backend {
    /// The CPU backend (burn flex).
    pub fn cpu() -> Self {
        Self {
            kind: BackendKind::Cpu,
            device: Device::flex(),
        }
    }

    /// The backend of that kind, if this build has it.
    pub fn new(kind: BackendKind) -> Result<Self, BackendError> {
        match kind {
            BackendKind::Cpu => Ok(Self::cpu()),
            other => Err(BackendError::NotCompiled(other)),
        }
    }

    /// The same backend with automatic differentiation, for training.
    pub fn autodiff(&self) -> Self {
        Self {
            kind: self.kind,
            device: self.device.clone().autodiff(),
        }
    }

    /// One line per backend saying whether it can be used here and why not.
    pub fn report() -> Vec<(BackendKind, Result<(), String>)> {
        [BackendKind::Cpu, BackendKind::Wgpu, BackendKind::Cuda]
            .into_iter()
            .map(|k| (k, Self::new(k).map(|_| ()).map_err(|e| e.to_string())))
            .collect()
    }
}
