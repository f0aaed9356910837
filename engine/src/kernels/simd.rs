//! Which instruction-set path the engine's kernels take: the widest this CPU has (AVX-512,
//! AVX2 with FMA, NEON, or the baseline), capped by the `STUDIO_SIMD` environment variable
//! (`avx512`, `avx2`, `neon` or `scalar`), so a developer on an AVX-512 machine can run and
//! measure the AVX2 path and the scalar fallback. Benchmarks and tests may override it for the
//! whole process ([`set_override`]).
//!
//! The GEMM (the `gemm` crate, through burn) picks its own path from the CPU's features and
//! does not honour this setting.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// An instruction-set path, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdPath {
    /// The target's baseline (SSE2 on x86-64): no FMA, 4-wide at most.
    Scalar = 1,
    /// ARM NEON, 4 lanes of f32 (aarch64).
    Neon = 2,
    /// AVX2 with FMA, 8 lanes of f32 (x86-64-v3).
    Avx2 = 3,
    /// AVX-512, 16 lanes of f32 (x86-64-v4).
    Avx512 = 4,
}

impl SimdPath {
    pub const ALL: [Self; 4] = [Self::Scalar, Self::Neon, Self::Avx2, Self::Avx512];

    /// The name `STUDIO_SIMD` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Scalar => "scalar",
            Self::Neon => "neon",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|p| *p as u8 == v)
    }
}

/// The widest path this CPU has.
pub fn detected() -> SimdPath {
    static DETECTED: OnceLock<SimdPath> = OnceLock::new();
    *DETECTED.get_or_init(|| path_of(pulp::Arch::new()))
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn path_of(arch: pulp::Arch) -> SimdPath {
    match arch {
        pulp::Arch::V4(_) => SimdPath::Avx512,
        pulp::Arch::V3(_) => SimdPath::Avx2,
        _ => SimdPath::Scalar,
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn path_of(arch: pulp::Arch) -> SimdPath {
    match arch {
        pulp::Arch::Scalar => SimdPath::Scalar,
        _ => SimdPath::Neon,
    }
}

/// Every path this CPU can run, narrowest first.
pub fn available() -> Vec<SimdPath> {
    let best = detected();
    SimdPath::ALL
        .into_iter()
        .filter(|&p| p <= best && (p == SimdPath::Scalar || p == best || on_same_family(p, best)))
        .collect()
}

/// AVX2 is below AVX-512 on x86; NEON has nothing between it and the baseline.
fn on_same_family(p: SimdPath, best: SimdPath) -> bool {
    matches!((p, best), (SimdPath::Avx2, SimdPath::Avx512))
}

/// What `STUDIO_SIMD` asks for, capped at what the CPU has; the CPU's best when unset. A value
/// that names no path is reported once on standard error and ignored.
pub fn configured() -> SimdPath {
    static CONFIGURED: OnceLock<SimdPath> = OnceLock::new();
    *CONFIGURED.get_or_init(|| {
        let best = detected();
        let Ok(value) = std::env::var("STUDIO_SIMD") else {
            return best;
        };
        let Some(wanted) = SimdPath::parse(&value) else {
            eprintln!(
                "STUDIO_SIMD={value:?} names no instruction-set path (avx512, avx2, neon, \
                 scalar); the kernels take this CPU's best, {}",
                best.name()
            );
            return best;
        };
        let chosen = cap(wanted);
        if chosen != wanted {
            eprintln!(
                "STUDIO_SIMD={}: this CPU has no {0} path; the kernels take {}",
                wanted.name(),
                chosen.name()
            );
        }
        chosen
    })
}

/// `wanted`, or the widest path below it this CPU has.
fn cap(wanted: SimdPath) -> SimdPath {
    available()
        .into_iter()
        .filter(|&p| p <= wanted)
        .max()
        .unwrap_or(SimdPath::Scalar)
}

/// 0: no override.
static OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// Makes every kernel of the process take `path` (capped at what the CPU has) until called
/// again; `None` goes back to [`configured`]. For benchmarks and tests, which compare paths.
pub fn set_override(path: Option<SimdPath>) {
    OVERRIDE.store(path.map_or(0, |p| cap(p) as u8), Ordering::SeqCst);
}

/// The path the kernels take now.
pub fn current() -> SimdPath {
    SimdPath::from_u8(OVERRIDE.load(Ordering::Relaxed)).unwrap_or_else(configured)
}

/// `pulp`'s dispatcher for [`current`].
#[inline]
pub fn arch() -> pulp::Arch {
    arch_for(current())
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn arch_for(path: SimdPath) -> pulp::Arch {
    match path {
        SimdPath::Avx512 => pulp::x86::V4::try_new().map_or_else(pulp::Arch::new, pulp::Arch::V4),
        SimdPath::Avx2 => pulp::x86::V3::try_new().map_or(pulp::Arch::Scalar, pulp::Arch::V3),
        SimdPath::Scalar | SimdPath::Neon => pulp::Arch::Scalar,
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
fn arch_for(path: SimdPath) -> pulp::Arch {
    match path {
        SimdPath::Scalar => pulp::Arch::Scalar,
        _ => pulp::Arch::new(),
    }
}

/// The CPU's model name (`/proc/cpuinfo`), or its architecture where that is not readable.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The CPU's model name and the SIMD features it reports, for benchmark headers.
pub fn cpu_summary() -> String {
    let model = cpu_model();
    let features = cpu_features();
    format!(
        "{model}; instruction sets: {}; kernel path: {}{}; gemm path: {}",
        if features.is_empty() {
            "baseline".to_string()
        } else {
            features.join(" ")
        },
        current().name(),
        if current() == detected() {
            String::new()
        } else {
            format!(" (capped from {} by STUDIO_SIMD)", detected().name())
        },
        gemm_path()
    )
}

/// The instruction set of the gemm crate's kernels in this build on this CPU. The crate chooses
/// once, from the CPU alone (STUDIO_SIMD does not reach it); its AVX-512 kernels are compiled in
/// only with the `avx512-gemm` feature (the studio's default), so a build without it runs the
/// AVX2+FMA kernels that AVX2-only CPUs get.
pub fn gemm_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512-gemm") && std::arch::is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "avx2"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            "neon"
        } else {
            "scalar"
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn cpu_features() -> Vec<&'static str> {
    let mut out = Vec::new();
    if std::arch::is_x86_feature_detected!("avx2") {
        out.push("avx2");
    }
    if std::arch::is_x86_feature_detected!("fma") {
        out.push("fma");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        out.push("avx512f");
    }
    out
}

#[cfg(target_arch = "aarch64")]
fn cpu_features() -> Vec<&'static str> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        vec!["neon"]
    } else {
        Vec::new()
    }
}

#[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
fn cpu_features() -> Vec<&'static str> {
    Vec::new()
}

/// Runs `f` once on every path this CPU has, the kernels switched to it (tests of the kernels;
/// one at a time across the process).
#[cfg(test)]
pub(crate) fn on_every_path(mut f: impl FnMut(SimdPath)) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            set_override(None);
        }
    }
    let _reset = Reset;
    for path in available() {
        // A failing assertion's output ends after the path it failed on.
        eprintln!("kernel path: {}", path.name());
        set_override(Some(path));
        f(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lanes;
    impl pulp::WithSimd for Lanes {
        type Output = usize;
        fn with_simd<S: pulp::Simd>(self, _simd: S) -> usize {
            S::F32_LANES
        }
    }

    #[test]
    fn every_path_the_cpu_has_dispatches_with_its_lane_count() {
        let paths = available();
        assert_eq!(paths[0], SimdPath::Scalar);
        assert_eq!(*paths.last().expect("a path"), detected());
        on_every_path(|path| {
            assert_eq!(current(), path);
            let lanes = arch().dispatch(Lanes);
            let expected = match path {
                SimdPath::Avx512 => 16,
                SimdPath::Avx2 => 8,
                SimdPath::Neon => 4,
                SimdPath::Scalar => 1,
            };
            assert_eq!(lanes, expected, "{path:?}");
        });
        assert_eq!(current(), configured());
    }

    #[test]
    fn names_parse_and_a_path_is_capped_at_the_cpus() {
        for p in SimdPath::ALL {
            assert_eq!(SimdPath::parse(p.name()), Some(p));
        }
        assert_eq!(SimdPath::parse(" AVX2 "), Some(SimdPath::Avx2));
        assert_eq!(SimdPath::parse("sse9"), None);
        assert!(cap(SimdPath::Avx512) <= detected());
        assert_eq!(cap(SimdPath::Scalar), SimdPath::Scalar);
        #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
        assert_eq!(cap(SimdPath::Neon), SimdPath::Scalar);
    }
}
