//! Matrix products with few rows (decode: one to a few tokens per sequence), where a blocked GEMM
//! spends its time packing and the work is bound by reading the weights once from memory.
//!
//! Both kernels stream every weight exactly once, split across the decode [`crew`] (threads
//! that stay awake between a step's many short products) so that each thread reads one
//! contiguous range, and are compiled for the CPU's widest vectors through
//! `pulp`'s run-time dispatch (AVX-512 / AVX2+FMA / baseline), with the inner loops written so
//! LLVM vectorizes them.

use super::{crew, simd_kernel};

/// Weight rows each task reads at least, so tiny matrices are not split into tiny tasks.
const MIN_ROWS_PER_TASK: usize = 64;

/// `x · w` for `x: [m, k]` and `w: [k, n]`, both row-major; returns `[m, n]`.
pub fn matmul_nn(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut outs = matmul_nn_many(x, &[(w, n)], m, k);
    outs.pop().unwrap_or_default()
}

/// `x · wᵢ` for one input `x: [m, k]` and several weights `wᵢ: [k, nᵢ]` (given with their `nᵢ`),
/// in one parallel pass over all of them (a decoder's q/k/v or gate/up projections): one
/// scheduling round instead of one per weight. Returns the `[m, nᵢ]` products in order.
///
/// The `k` rows of every weight are split into one contiguous band per thread; each thread
/// accumulates a private partial sum of all the outputs, and the partials are added at the end
/// (cheap when `m` is small).
pub fn matmul_nn_many(x: &[f32], ws: &[(&[f32], usize)], m: usize, k: usize) -> Vec<Vec<f32>> {
    assert_eq!(x.len(), m * k, "matmul_nn: x is not [m, k]");
    for &(w, n) in ws {
        assert_eq!(w.len(), k * n, "matmul_nn: w is not [k, n]");
    }
    // Offset of each product in the concatenated `[m, Σ nᵢ]` accumulator.
    let offsets: Vec<usize> = ws
        .iter()
        .scan(0, |at, &(_, n)| {
            let here = *at;
            *at += m * n;
            Some(here)
        })
        .collect();
    let total: usize = ws.iter().map(|&(_, n)| m * n).sum();
    let tasks = rayon::current_num_threads()
        .min(k.div_ceil(MIN_ROWS_PER_TASK))
        .max(1);
    let band = k.div_ceil(tasks);
    let partials: Vec<Vec<f32>> = crew::map(tasks, |t| {
        let (k0, k1) = (t * band, ((t + 1) * band).min(k));
        let mut acc = vec![0.0f32; total];
        if k0 < k1 {
            for (&(w, n), &at) in ws.iter().zip(&offsets) {
                let acc = &mut acc[at..at + m * n];
                simd_kernel!(Band { x: &'a [f32], w: &'a [f32], k: usize, n: usize, k0: usize, k1: usize, acc: &'a mut [f32] }
                    => accumulate_band(x, w, k, n, k0, k1, acc));
            }
        }
        acc
    });
    let mut partials = partials.into_iter();
    let mut out = partials.next().unwrap_or_else(|| vec![0.0; total]);
    for p in partials {
        let (out, p) = (&mut out[..], &p[..]);
        simd_kernel!(Add { out: &'a mut [f32], p: &'a [f32] } => add_into(out, p));
    }
    if ws.len() == 1 {
        return vec![out];
    }
    ws.iter()
        .zip(&offsets)
        .map(|(&(_, n), &at)| out[at..at + m * n].to_vec())
        .collect()
}

/// `acc[m, n] += x[:, k0..k1] · w[k0..k1, :]`.
///
/// For one or two rows of `x`, one weight row after the other, so the band is read as a single
/// sequential stream: four rows at a time (four streams a row apart, each restarting the
/// hardware prefetcher at every page) decoded ≈ 10 % slower, and `acc` stays in L1 either way.
/// With more rows, `acc` outgrows L1 and four weight rows per pass over it win instead.
#[inline(always)]
fn accumulate_band(
    x: &[f32],
    w: &[f32],
    k: usize,
    n: usize,
    k0: usize,
    k1: usize,
    acc: &mut [f32],
) {
    let mut i = k0;
    if acc.len() <= 2 * n {
        for i in k0..k1 {
            accumulate_row(x, &w[i * n..(i + 1) * n], k, i, acc);
        }
        return;
    }
    while i + 4 <= k1 {
        let w0 = &w[i * n..(i + 1) * n];
        let w1 = &w[(i + 1) * n..(i + 2) * n];
        let w2 = &w[(i + 2) * n..(i + 3) * n];
        let w3 = &w[(i + 3) * n..(i + 4) * n];
        for (b, out) in acc.chunks_exact_mut(n).enumerate() {
            let xs = &x[b * k + i..b * k + i + 4];
            let (a0, a1, a2, a3) = (xs[0], xs[1], xs[2], xs[3]);
            for ((((o, &v0), &v1), &v2), &v3) in out.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                *o += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3;
            }
        }
        i += 4;
    }
    for i in i..k1 {
        accumulate_row(x, &w[i * n..(i + 1) * n], k, i, acc);
    }
}

/// `acc[b, :] += x[b, i] · wi` for every row `b`.
#[inline(always)]
fn accumulate_row(x: &[f32], wi: &[f32], k: usize, i: usize, acc: &mut [f32]) {
    for (b, out) in acc.chunks_exact_mut(wi.len()).enumerate() {
        let a = x[b * k + i];
        for (o, &v) in out.iter_mut().zip(wi) {
            *o += a * v;
        }
    }
}

#[inline(always)]
fn add_into(out: &mut [f32], other: &[f32]) {
    for (o, &v) in out.iter_mut().zip(other) {
        *o += v;
    }
}

/// Weight rows per task of [`matmul_nt`]: enough work per task to hide scheduling, small enough
/// to balance across threads.
const NT_ROWS_PER_TASK: usize = 512;

/// `x · wᵀ` for `x: [m, k]` and `w: [n, k]` (the layout of an embedding matrix used as the LM
/// head), both row-major; returns `[m, n]`. Each output is a dot product of two contiguous rows.
pub fn matmul_nt(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "matmul_nt: x is not [m, k]");
    assert_eq!(w.len(), n * k, "matmul_nt: w is not [n, k]");
    if k == 0 {
        return vec![0.0; m * n];
    }
    // Computed as [n, m] so each task owns a contiguous range of rows of w and of the output.
    let mut out_t = vec![0.0f32; n * m];
    crew::for_each_chunk_mut(&mut out_t, NT_ROWS_PER_TASK * m.max(1), |t, out| {
        let rows = &w[t * NT_ROWS_PER_TASK * k..][..out.len() / m.max(1) * k];
        simd_kernel!(Dots { x: &'a [f32], rows: &'a [f32], out: &'a mut [f32], m: usize, k: usize }
            => dot_rows(x, rows, out, m, k))
    });
    if m == 1 {
        return out_t;
    }
    let mut out = vec![0.0f32; m * n];
    for (j, row) in out_t.chunks_exact(m).enumerate() {
        for (b, &v) in row.iter().enumerate() {
            out[b * n + j] = v;
        }
    }
    out
}

/// `out[j * m + b] = x[b] · rows[j]` for each row `j` of `rows` and each row `b` of `x`.
#[inline(always)]
fn dot_rows(x: &[f32], rows: &[f32], out: &mut [f32], m: usize, k: usize) {
    for (o, row) in out.chunks_exact_mut(m).zip(rows.chunks_exact(k)) {
        for (b, slot) in o.iter_mut().enumerate() {
            *slot = dot(&x[b * k..(b + 1) * k], row);
        }
    }
}

/// Dot product with 16 independent partial sums (one AVX-512 register, or two AVX2 ones).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut acc = [0.0f32; LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (ca, cb) in ac.zip(bc) {
        for l in 0..LANES {
            acc[l] += ca[l] * cb[l];
        }
    }
    let mut tail = 0.0f32;
    for (&p, &q) in ar.iter().zip(br) {
        tail += p * q;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// f64 reference for `x · w` with `w` given by an element accessor.
    fn reference(
        x: &[f32],
        m: usize,
        k: usize,
        n: usize,
        w: impl Fn(usize, usize) -> f32,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for b in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|i| f64::from(x[b * k + i]) * f64::from(w(i, j)))
                    .sum();
                out[b * n + j] = s as f32;
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], k: usize) {
        assert_eq!(got.len(), want.len());
        let tol = 1e-6 * k as f32 + 1e-5;
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tol, "element {i}: {g} vs {w} (tol {tol})");
        }
    }

    #[test]
    fn matmul_nn_matches_reference_on_odd_shapes() {
        crate::kernels::simd::on_every_path(|_path| {
            for &(m, k, n) in &[
                (1, 1, 1),
                (1, 7, 5),
                (1, 576, 1536),
                (3, 130, 33),
                (8, 1536, 576),
                (16, 67, 129),
            ] {
                let x = values(m * k, 1);
                let w = values(k * n, 2);
                let got = matmul_nn(&x, &w, m, k, n);
                assert_close(&got, &reference(&x, m, k, n, |i, j| w[i * n + j]), k);
            }
        });
    }

    #[test]
    fn matmul_nn_many_equals_one_product_per_weight() {
        crate::kernels::simd::on_every_path(|_path| {
            let (m, k) = (2, 300);
            let x = values(m * k, 5);
            let ws: Vec<(Vec<f32>, usize)> = [576, 64, 1]
                .iter()
                .enumerate()
                .map(|(i, &n)| (values(k * n, 6 + i as u32), n))
                .collect();
            let views: Vec<(&[f32], usize)> = ws.iter().map(|(w, n)| (&w[..], *n)).collect();
            let got = matmul_nn_many(&x, &views, m, k);
            assert_eq!(got.len(), 3);
            for ((w, n), got) in ws.iter().zip(&got) {
                assert_eq!(got, &matmul_nn(&x, w, m, k, *n));
            }
        });
    }

    #[test]
    fn matmul_nt_matches_reference_on_odd_shapes() {
        crate::kernels::simd::on_every_path(|_path| {
            for &(m, k, n) in &[(1, 1, 1), (1, 576, 2051), (2, 17, 5), (5, 64, 1030)] {
                let x = values(m * k, 3);
                let w = values(n * k, 4);
                let got = matmul_nt(&x, &w, m, k, n);
                assert_close(&got, &reference(&x, m, k, n, |i, j| w[j * k + i]), k);
            }
        });
    }

    #[test]
    fn empty_inner_dimension_gives_zeros() {
        assert_eq!(matmul_nt(&[], &[], 2, 0, 3), vec![0.0; 6]);
        assert_eq!(matmul_nn(&[], &[], 2, 0, 3), vec![0.0; 6]);
    }
}
