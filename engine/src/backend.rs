//! Where tensors live: the compute backend chosen for a model or a run.
//!
//! - `cpu` is burn's `flex` backend (pure Rust, SIMD, rayon; AVX-512 kernels through the
//!   `x86-v4` feature, chosen at run time), the default that always works, with the engine's
//!   fused kernels.
//! - `wgpu` is burn's cubecl backend on the wgpu runtime: Vulkan, Metal or DX12, whichever GPU
//!   the machine has, or Mesa's lavapipe (Vulkan on the CPU) on a machine without one. The model
//!   runs the same code there, through composed burn ops where the engine has no GPU kernel;
//!   the token statistics have one (`kernels::device_stats`).
//! - `cuda` is named so settings and messages are stable, but this build does not compile it
//!   in: burn's CUDA runtime (`cubecl-cuda` 0.11) downloads a prebuilt LLVM from the network
//!   while it builds, which an offline build cannot do. Choosing it says so.
//!
//! [`devices`] says what is present here and, for what is not, why.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use burn::tensor::{Device, Tensor};
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

impl BackendKind {
    /// Every backend the studio knows, in the order menus list them.
    pub const ALL: [BackendKind; 3] = [Self::Cpu, Self::Wgpu, Self::Cuda];
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

/// Why this build has no CUDA backend.
pub const CUDA_NOT_COMPILED: &str = "not compiled into this build: burn's CUDA runtime \
     (cubecl-cuda 0.11) downloads a prebuilt LLVM while it builds, which an offline build \
     cannot do";

/// Why a backend cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("backend `{0}` is unknown (choose cpu, wgpu or cuda)")]
    Unknown(String),
    #[error("backend `{0}` is {CUDA_NOT_COMPILED}; use `cpu` or `wgpu`")]
    NotCompiled(BackendKind),
    #[error("backend `{kind}` is not available on this machine: {reason}")]
    Unavailable { kind: BackendKind, reason: String },
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

    /// The backend of that kind, if this build has it and this machine can run it. The wgpu
    /// runtime is started once per process (its adapter is chosen then) and shared after.
    pub fn new(kind: BackendKind) -> Result<Self, BackendError> {
        match kind {
            BackendKind::Cpu => Ok(Self::cpu()),
            BackendKind::Wgpu => wgpu_device().map(|device| Self { kind, device }),
            BackendKind::Cuda => Err(BackendError::NotCompiled(kind)),
        }
    }

    /// The same backend with automatic differentiation, for training.
    pub fn autodiff(&self) -> Self {
        Self {
            kind: self.kind,
            device: self.device.clone().autodiff(),
        }
    }

    /// Whether tensors of this backend live on a GPU runtime (cubecl), where the engine's CPU
    /// kernels do not apply.
    pub fn is_cube(&self) -> bool {
        self.kind != BackendKind::Cpu
    }
}

/// The wgpu device of this process, started on first use.
fn wgpu_device() -> Result<Device, BackendError> {
    static DEVICE: OnceLock<Result<Device, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            if adapters().is_empty() {
                return Err(no_adapter_reason());
            }
            Device::wgpu_options().init().map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|reason| BackendError::Unavailable {
            kind: BackendKind::Wgpu,
            reason,
        })
}

/// What `studio devices` says of one backend.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub backend: BackendKind,
    /// Whether a model can run there now (for wgpu: the runtime started and computed a sum).
    pub present: bool,
    /// The adapter or processor, when known.
    pub name: Option<String>,
    /// Its memory in bytes, when the driver says (wgpu does not; a CPU adapter has the host's).
    pub memory_bytes: Option<u64>,
    /// More about it: the graphics API and driver, or the instruction sets.
    pub detail: String,
    /// Why it cannot be used, when it cannot.
    pub reason: Option<String>,
}

/// One report per backend, in [`BackendKind::ALL`] order. Starts the wgpu runtime (and runs one
/// small computation there) to tell that it really works.
pub fn devices() -> Vec<DeviceReport> {
    BackendKind::ALL.into_iter().map(report).collect()
}

fn report(kind: BackendKind) -> DeviceReport {
    match kind {
        BackendKind::Cpu => DeviceReport {
            backend: kind,
            present: true,
            name: Some(crate::kernels::simd::cpu_model()),
            memory_bytes: host_memory(),
            detail: format!(
                "{} threads; {}",
                rayon::current_num_threads(),
                crate::kernels::simd::cpu_summary()
            ),
            reason: None,
        },
        BackendKind::Wgpu => {
            let found = adapters();
            let first = found.first();
            let works = Backend::new(kind).and_then(|b| smoke_test(&b.device));
            DeviceReport {
                backend: kind,
                present: works.is_ok(),
                name: first.map(|a| a.name.clone()),
                memory_bytes: first
                    .filter(|a| a.device_type == AdapterType::Cpu)
                    .and(host_memory()),
                detail: found
                    .iter()
                    .map(|a| {
                        format!(
                            "{} ({:?}, {}; driver {} {}; buffers up to {:.1} GiB)",
                            a.name,
                            a.device_type,
                            a.api,
                            a.driver,
                            a.driver_info,
                            a.max_buffer_size as f64 / (1u64 << 30) as f64
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                reason: works.err().map(|e| match e {
                    BackendError::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                }),
            }
        }
        BackendKind::Cuda => DeviceReport {
            backend: kind,
            present: false,
            name: None,
            memory_bytes: None,
            detail: match cuda_driver() {
                Some(lib) => format!("an NVIDIA driver is installed ({lib})"),
                None => "no libcuda on this machine".to_string(),
            },
            reason: Some(CUDA_NOT_COMPILED.to_string()),
        },
    }
}

/// A few ops on `device`, read back: the runtime started and computes.
fn smoke_test(device: &Device) -> Result<(), BackendError> {
    let t = Tensor::<1>::from_floats([1.0, 2.0, 3.0, 4.0], device);
    let sum: Vec<f32> =
        t.sum()
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| BackendError::Unavailable {
                kind: BackendKind::Wgpu,
                reason: format!("reading a result back failed: {e:?}"),
            })?;
    if sum.first().copied() == Some(10.0) {
        Ok(())
    } else {
        Err(BackendError::Unavailable {
            kind: BackendKind::Wgpu,
            reason: format!("1 + 2 + 3 + 4 gave {sum:?}"),
        })
    }
}

/// The kind of a wgpu adapter, as `wgpu` reports it.
pub type AdapterType = burn::tensor::wgpu::wgpu::DeviceType;

/// One adapter wgpu finds.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub name: String,
    pub device_type: AdapterType,
    pub api: String,
    pub driver: String,
    pub driver_info: String,
    pub max_buffer_size: u64,
}

/// The adapters wgpu finds on the primary graphics APIs (Vulkan, Metal, DX12), GPUs first.
pub fn adapters() -> Vec<Adapter> {
    use burn::tensor::wgpu::wgpu;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut found: Vec<Adapter> =
        pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
            .into_iter()
            .map(|a| {
                let info = a.get_info();
                Adapter {
                    name: info.name,
                    device_type: info.device_type,
                    api: format!("{:?}", info.backend),
                    driver: info.driver,
                    driver_info: info.driver_info,
                    max_buffer_size: a.limits().max_buffer_size,
                }
            })
            .collect();
    found.sort_by_key(|a| a.device_type == AdapterType::Cpu);
    found
}

/// Why wgpu found no adapter, with the fix for the usual cause.
fn no_adapter_reason() -> String {
    "wgpu found no Vulkan, Metal or DX12 adapter (no GPU driver; on Linux without a GPU, \
     install Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`)"
        .to_string()
}

/// The host's memory in bytes (`/proc/meminfo` on Linux).
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Where the NVIDIA driver's `libcuda` is, if it is installed in a usual place.
fn cuda_driver() -> Option<String> {
    const DIRS: [&str; 6] = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/cuda/lib64",
        "/usr/local/nvidia/lib64",
    ];
    DIRS.iter()
        .map(|d| std::path::Path::new(d).join("libcuda.so.1"))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print_back() {
        for kind in BackendKind::ALL {
            assert_eq!(kind.to_string().parse::<BackendKind>().ok(), Some(kind));
        }
        let err = "metal"
            .parse::<BackendKind>()
            .expect_err("metal is no backend");
        assert!(err.to_string().contains("cpu, wgpu or cuda"), "{err}");
    }

    #[test]
    fn cuda_says_why_it_is_missing() {
        let err = Backend::new(BackendKind::Cuda).expect_err("cuda is not compiled in");
        assert!(
            err.to_string().contains("not compiled into this build"),
            "{err}"
        );
        let report = report(BackendKind::Cuda);
        assert!(!report.present);
        assert!(report.reason.is_some_and(|r| r.contains("LLVM")));
    }
}
