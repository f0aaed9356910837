//! Matrix products with few rows (decode: one to a few tokens per sequence), where a blocked GEMM
//! spends its time packing and the work is bound by reading the weights once from memory.
//!
//! Both kernels stream every weight exactly once, split across the decode `crew` (threads
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
                simd_kernel!(Band(simd) { x: &'a [f32], w: &'a [f32], k: usize, n: usize, k0: usize, k1: usize, acc: &'a mut [f32] } -> ()
                    => accumulate_band(simd, x, w, k, n, k0, k1, acc));
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
/// sequential stream (four rows at a time, four streams a row apart that each restart the
/// hardware prefetcher at every page, decoded ≈ 10 % slower), and `acc` stays in L1. With more
/// rows `acc` outgrows L1, and register tiles keep the partial sums out of it.
#[allow(clippy::too_many_arguments)] // one band's coordinates, inlined into its one caller
#[inline(always)]
fn accumulate_band<S: pulp::Simd>(
    simd: S,
    x: &[f32],
    w: &[f32],
    k: usize,
    n: usize,
    k0: usize,
    k1: usize,
    acc: &mut [f32],
) {
    if acc.len() <= 2 * n {
        for i in k0..k1 {
            accumulate_row(x, &w[i * n..(i + 1) * n], k, i, acc, 0);
        }
    } else {
        accumulate_tiled(simd, x, w, k, n, k0..k1, acc);
    }
}

/// Weight rows the tiled kernel reads per chunk of its band: a chunk's column strip is re-read
/// from L1 by every group of `x` rows, and `acc` is read and written once per chunk.
const CHUNK_ROWS: usize = 32;

/// Whether the path has 32 vector registers (AVX-512, NEON) rather than AVX2's 16: the register
/// tiles below hold twice the rows there.
fn has_32_registers<S: pulp::Simd>() -> bool {
    S::F32_LANES >= 16 || cfg!(target_arch = "aarch64")
}

/// Rows of `x` one register tile holds: with two vectors of columns, 8 accumulators of the 16
/// AVX2 registers, 16 of the 32 AVX-512 or NEON ones.
fn tile_rows<S: pulp::Simd>() -> usize {
    if has_32_registers::<S>() { 8 } else { 4 }
}

/// `acc[m, n] += x[:, band] · w[band, :]` in register tiles:
/// each tile holds `tile_rows` rows × two vectors of output columns in registers while it runs
/// down a chunk of weight rows, so every weight vector loaded feeds one fused multiply-add per
/// row of the tile (the row-at-a-time loop loads and stores `acc`, which outgrows L1, for every
/// one). The chunks of the band are read in order, strip after strip of columns.
#[inline(always)]
fn accumulate_tiled<S: pulp::Simd>(
    simd: S,
    x: &[f32],
    w: &[f32],
    k: usize,
    n: usize,
    band: std::ops::Range<usize>,
    acc: &mut [f32],
) {
    let m = acc.len() / n;
    let k1 = band.end;
    let width = 2 * S::F32_LANES;
    let full = n - n % width;
    let tile = tile_rows::<S>();
    for c0 in band.step_by(CHUNK_ROWS) {
        let c1 = (c0 + CHUNK_ROWS).min(k1);
        for j in (0..full).step_by(width) {
            let mut b0 = 0;
            while b0 < m {
                let rows = tile.min(m - b0);
                let at = Tile {
                    k,
                    n,
                    c0,
                    c1,
                    b0,
                    j,
                };
                match rows {
                    1 => tile_pass::<S, 1>(simd, x, w, acc, at),
                    2 => tile_pass::<S, 2>(simd, x, w, acc, at),
                    3 => tile_pass::<S, 3>(simd, x, w, acc, at),
                    4 => tile_pass::<S, 4>(simd, x, w, acc, at),
                    5 => tile_pass::<S, 5>(simd, x, w, acc, at),
                    6 => tile_pass::<S, 6>(simd, x, w, acc, at),
                    7 => tile_pass::<S, 7>(simd, x, w, acc, at),
                    _ => tile_pass::<S, 8>(simd, x, w, acc, at),
                }
                b0 += rows;
            }
        }
        // The columns past the last whole strip.
        if full < n {
            for i in c0..c1 {
                accumulate_row(x, &w[i * n..(i + 1) * n], k, i, acc, full);
            }
        }
    }
}

/// Where one register tile works: weight rows `c0..c1`, rows `b0..` of `x`, columns from `j`.
#[derive(Clone, Copy)]
struct Tile {
    k: usize,
    n: usize,
    c0: usize,
    c1: usize,
    b0: usize,
    j: usize,
}

/// One register tile of [`accumulate_tiled`]: `R` rows × two vectors of columns.
#[inline(always)]
fn tile_pass<S: pulp::Simd, const R: usize>(
    simd: S,
    x: &[f32],
    w: &[f32],
    acc: &mut [f32],
    Tile {
        k,
        n,
        c0,
        c1,
        b0,
        j,
    }: Tile,
) {
    let width = 2 * S::F32_LANES;
    let mut t = [[simd.splat_f32s(0.0); 2]; R];
    for (r, tr) in t.iter_mut().enumerate() {
        let (v, _) = S::as_simd_f32s(&acc[(b0 + r) * n + j..][..width]);
        *tr = [v[0], v[1]];
    }
    let rows = &x[b0 * k..(b0 + R) * k];
    for i in c0..c1 {
        let (wv, _) = S::as_simd_f32s(&w[i * n + j..][..width]);
        let (w0, w1) = (wv[0], wv[1]);
        for (r, tr) in t.iter_mut().enumerate() {
            let a = simd.splat_f32s(rows[r * k + i]);
            tr[0] = simd.mul_add_e_f32s(a, w0, tr[0]);
            tr[1] = simd.mul_add_e_f32s(a, w1, tr[1]);
        }
    }
    for (r, tr) in t.iter().enumerate() {
        let (out, _) = S::as_mut_simd_f32s(&mut acc[(b0 + r) * n + j..][..width]);
        out[0] = tr[0];
        out[1] = tr[1];
    }
}

/// `acc[b, from..] += x[b, i] · wi[from..]` for every row `b`.
#[inline(always)]
fn accumulate_row(x: &[f32], wi: &[f32], k: usize, i: usize, acc: &mut [f32], from: usize) {
    for (b, out) in acc.chunks_exact_mut(wi.len()).enumerate() {
        let a = x[b * k + i];
        for (o, &v) in out[from..].iter_mut().zip(&wi[from..]) {
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
        if m == 1 {
            simd_kernel!(Dots { x: &'a [f32], rows: &'a [f32], out: &'a mut [f32], m: usize, k: usize }
                => dot_rows(x, rows, out, m, k))
        } else {
            simd_kernel!(DotTiles(simd) { x: &'a [f32], rows: &'a [f32], out: &'a mut [f32], m: usize, k: usize } -> ()
                => dot_rows_tiled(simd, x, rows, out, m, k))
        }
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

/// Weight rows one tile of [`dot_rows_tiled`] reads at once.
const DOT_TILE_ROWS: usize = 4;

/// [`dot_rows`] for two rows of `x` or more, in register tiles of 4 weight rows × 2 rows of `x`
/// (4 with AVX-512 or NEON) whose partial sums stay in registers: each vector loaded feeds 2–4
/// fused multiply-adds where a single dot product loads two vectors for one.
#[inline(always)]
fn dot_rows_tiled<S: pulp::Simd>(
    simd: S,
    x: &[f32],
    rows: &[f32],
    out: &mut [f32],
    m: usize,
    k: usize,
) {
    let tile = if has_32_registers::<S>() { 4 } else { 2 };
    let whole = rows.len() / k / DOT_TILE_ROWS * DOT_TILE_ROWS;
    for j in (0..whole).step_by(DOT_TILE_ROWS) {
        let mut b0 = 0;
        while b0 < m {
            let r = tile.min(m - b0);
            match r {
                1 => dot_tile::<S, 1>(simd, (x, rows), out, DotTile { m, k, j, b0 }),
                2 => dot_tile::<S, 2>(simd, (x, rows), out, DotTile { m, k, j, b0 }),
                3 => dot_tile::<S, 3>(simd, (x, rows), out, DotTile { m, k, j, b0 }),
                _ => dot_tile::<S, 4>(simd, (x, rows), out, DotTile { m, k, j, b0 }),
            }
            b0 += r;
        }
    }
    dot_rows(x, &rows[whole * k..], &mut out[whole * m..], m, k);
}

/// Where one tile of [`dot_rows_tiled`] works: `m` rows of `x` of length `k`, weight rows from
/// `j`, rows of `x` from `b0`.
#[derive(Clone, Copy)]
struct DotTile {
    m: usize,
    k: usize,
    j: usize,
    b0: usize,
}

/// Weight rows `j..j + 4` against rows `b0..b0 + R` of `x`, into `out[j * m + b]`.
#[inline(always)]
fn dot_tile<S: pulp::Simd, const R: usize>(
    simd: S,
    (x, rows): (&[f32], &[f32]),
    out: &mut [f32],
    DotTile { m, k, j, b0 }: DotTile,
) {
    let lanes = S::F32_LANES;
    let full = k - k % lanes;
    let w: [&[f32]; DOT_TILE_ROWS] = std::array::from_fn(|q| &rows[(j + q) * k..(j + q + 1) * k]);
    let xs: [&[f32]; R] = std::array::from_fn(|r| &x[(b0 + r) * k..(b0 + r + 1) * k]);
    let wv: [&[S::f32s]; DOT_TILE_ROWS] = std::array::from_fn(|q| S::as_simd_f32s(&w[q][..full]).0);
    let xv: [&[S::f32s]; R] = std::array::from_fn(|r| S::as_simd_f32s(&xs[r][..full]).0);
    let mut t = [[simd.splat_f32s(0.0); R]; DOT_TILE_ROWS];
    for c in 0..full / lanes {
        let ws: [S::f32s; DOT_TILE_ROWS] = std::array::from_fn(|q| wv[q][c]);
        for r in 0..R {
            let xr = xv[r][c];
            for q in 0..DOT_TILE_ROWS {
                t[q][r] = simd.mul_add_e_f32s(ws[q], xr, t[q][r]);
            }
        }
    }
    for q in 0..DOT_TILE_ROWS {
        for r in 0..R {
            let tail: f32 = w[q][full..]
                .iter()
                .zip(&xs[r][full..])
                .map(|(a, b)| a * b)
                .sum();
            out[(j + q) * m + b0 + r] = simd.reduce_sum_f32s(t[q][r]) + tail;
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

    /// Both products against the f64 reference on every path, on shapes that exercise one
    /// and two rows (the streaming loops), register tiles with and without a remainder of rows,
    /// columns past the last whole tile and an inner dimension shorter than one vector.
    #[test]
    fn products_match_reference_on_odd_shapes() {
        crate::kernels::simd::on_every_path(|_path| {
            for &(m, k, n) in &[
                (1, 1, 1),
                (1, 7, 5),
                (1, 576, 1536),
                (1, 576, 2051),
                (2, 17, 5),
                (3, 130, 33),
                (5, 64, 1030),
                (8, 1536, 576),
                (9, 3, 8),
                (11, 40, 48),
                (16, 67, 129),
                (16, 576, 192),
                (16, 576, 37),
            ] {
                let x = values(m * k, 1);
                let w = values(k * n, 2);
                let got = matmul_nn(&x, &w, m, k, n);
                assert_close(&got, &reference(&x, m, k, n, |i, j| w[i * n + j]), k);
                // The same values read as `[n, k]`.
                let got = matmul_nt(&x, &w, m, k, n);
                assert_close(&got, &reference(&x, m, k, n, |i, j| w[j * k + i]), k);
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
    fn empty_inner_dimension_gives_zeros() {
        assert_eq!(matmul_nt(&[], &[], 2, 0, 3), vec![0.0; 6]);
        assert_eq!(matmul_nn(&[], &[], 2, 0, 3), vec![0.0; 6]);
    }
}
