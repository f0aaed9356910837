//! Probes of the machine's ceilings, for `studio bench` to print each figure against: how fast
//! memory can be read by every core at once, and how fast the backend multiplies f32 matrices.

use std::time::Instant;

use rayon::prelude::*;

/// The sum of `xs`, each thread reading one contiguous range with 16 independent lanes: a
/// memory-read bandwidth probe when `xs` is much larger than the caches.
pub fn parallel_sum(xs: &[f32]) -> f32 {
    let chunk = xs
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1 << 14);
    xs.par_chunks(chunk)
        .map(|c| pulp::Arch::new().dispatch(Sum(c)))
        .sum()
}

/// [`sum_lanes`] compiled for the best instruction set this CPU has (pulp picks it at run time;
/// the body must be `#[inline(always)]` to be compiled for those features).
struct Sum<'a>(&'a [f32]);

impl pulp::WithSimd for Sum<'_> {
    type Output = f32;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f32 {
        sum_lanes(self.0)
    }
}

/// The machine's f32 matrix-product throughput, GFLOP/s (best of `runs`): `[m, k] · [k, n]`
/// multiplied by the `gemm` crate (the kernels under burn's flex backend, on the instruction set
/// `engine::kernels::simd::gemm_path` names) on every core, into one reused output so page faults
/// do not count.
pub fn matmul_gflops([m, k, n]: [usize; 3], runs: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1 - 0.6).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    let mut c = vec![0.0f32; m * n];
    let mut best = f64::INFINITY;
    for run in 0..=runs.max(1) {
        let t = Instant::now();
        gemm_f32(&a, &b, &mut c, [m, k, n]);
        if run > 0 {
            best = best.min(t.elapsed().as_secs_f64());
        }
        std::hint::black_box(&c);
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

/// `c = a · b` for row-major `a: [m, k]`, `b: [k, n]`, `c: [m, n]`.
#[allow(unsafe_code)]
fn gemm_f32(a: &[f32], b: &[f32], c: &mut [f32], [m, k, n]: [usize; 3]) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n);
    // SAFETY: the slices hold exactly the elements the shapes and row-major strides below
    // address (checked above), and `c` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// Four independent 16-lane accumulators, so the adds never wait on each other and the loop
/// is limited by loads alone.
#[inline(always)]
fn sum_lanes(xs: &[f32]) -> f32 {
    const LANES: usize = 64;
    let mut acc = [0.0f32; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_sum_adds_every_element() {
        let xs: Vec<f32> = (0..100_003).map(|i| (i % 7) as f32).collect();
        let want: f64 = xs.iter().map(|&x| f64::from(x)).sum();
        assert!((f64::from(parallel_sum(&xs)) - want).abs() < 1e-3 * want);
        assert_eq!(parallel_sum(&[]), 0.0);
    }

    #[test]
    fn gemm_probe_multiplies() {
        let (m, k, n) = (3, 5, 4);
        let a: Vec<f32> = (0..m * k).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32).collect();
        let mut c = vec![0.0; m * n];
        gemm_f32(&a, &b, &mut c, [m, k, n]);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert_eq!(c[i * n + j], want);
            }
        }
        assert!(matmul_gflops([8, 16, 8], 1) > 0.0);
    }
}
