//! Per-token statistics from a row of logits in one fused pass: log-sum-exp (hence the
//! log-probability of any token), the entropy of the predictive distribution in nats, and the
//! top-k tokens, without materializing a softmax copy.
//!
//! The row is walked in blocks of `BLOCK` (512) logits, each read once from memory: one pass
//! gathers `s = Σ e^(x−m)` and `t = Σ e^(x−m)·(x−m)` relative to the reference maximum `m` of the
//! blocks before, and the block's own maximum alongside. A term may sit up to `HEADROOM` (64)
//! powers of two above `m` and still be exact in f32; a block reaching higher (a few times per
//! row at most) is summed again from L1 against its own maximum. When the maximum grows, the f64
//! totals are rescaled once. At the end `H = ln s − t / s` and `lse = m + ln s`.
//!
//! The pass is written with `pulp`'s explicit vectors (AVX-512, AVX2+FMA, NEON or scalar, picked
//! at run time, capped by `STUDIO_SIMD`): per vector one load, the exponential's polynomial and
//! the sums, about 17 operations and no spills. Before this, each block had its own maximum pass,
//! a chain of dependent `max`es that waited on each load, and the auto-vectorized sums kept their
//! accumulators on the stack under AVX2's 16 registers.

use rayon::prelude::*;

use std::f32::consts::LOG2_E;

use super::elementwise::{exp2_bounded, exp2_bounded_f32s};

/// Statistics of one predictive distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct RowStats {
    /// `log Σ exp(logits)`; the log-probability of token `i` is `logits[i] - log_sum_exp`.
    pub log_sum_exp: f32,
    /// Entropy in nats.
    pub entropy: f32,
    /// The `k` most likely tokens as `(id, logprob)`, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Width of the lane accumulators.
pub const LANES: usize = 16;

/// Keeps the `k` largest `(value, id)` pairs, sorted descending.
struct TopK {
    k: usize,
    items: Vec<(f32, u32)>,
    threshold: f32,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            items: Vec::with_capacity(k + 1),
            threshold: f32::NEG_INFINITY,
        }
    }

    #[inline]
    fn offer(&mut self, value: f32, id: u32) {
        if self.k == 0 || (self.items.len() == self.k && value <= self.threshold) {
            return;
        }
        // Ties keep the lower id first, as a stable sort would.
        let pos = self.items.partition_point(|&(v, _)| v >= value);
        self.items.insert(pos, (value, id));
        self.items.truncate(self.k);
        if self.items.len() == self.k {
            self.threshold = self.items[self.k - 1].0;
        }
    }

    /// Offers every element of `chunk` (whose maximum is `max`) at ids from `base`.
    #[inline(always)]
    fn offer_chunk(&mut self, chunk: &[f32], max: f32, base: usize) {
        // Most chunks hold nothing above the threshold.
        if self.k == 0 || (self.items.len() == self.k && max <= self.threshold) {
            return;
        }
        for (j, part) in chunk.chunks(LANES).enumerate() {
            // A branch-free vector compare finds the few parts holding a candidate.
            let threshold = if self.items.len() == self.k {
                self.threshold
            } else {
                f32::NEG_INFINITY
            };
            let mut hit = false;
            for &v in part {
                hit |= v > threshold;
            }
            if hit || self.items.len() < self.k {
                for (i, &v) in part.iter().enumerate() {
                    self.offer(v, (base + j * LANES + i) as u32);
                }
            }
        }
    }
}

/// The largest element (`-∞` for an empty slice), over [`LANES`] independent lanes: a single
/// running `f32::max` is a serial dependency chain the compiler cannot vectorize.
#[inline(always)]
pub(crate) fn max_of(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            acc[l] = if chunk[l] > acc[l] { chunk[l] } else { acc[l] };
        }
    }
    for &x in tail {
        acc[0] = if x > acc[0] { x } else { acc[0] };
    }
    acc.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Elements per block: the running sums are rescaled at most once per block, and a block whose
/// maximum lies far above the reference (rare past the first blocks) is summed again from L1.
const BLOCK: usize = 512;

/// How far above the reference maximum, in powers of two, an element may sit and still be summed
/// exactly in f32 (`2^y` stays a normal float, and 512 such terms are far below f32's 2^128).
const HEADROOM: f32 = 64.0;

/// Statistics of one row of logits, with the `k` most likely tokens.
pub fn row_stats(logits: &[f32], k: usize) -> RowStats {
    crate::kernels::simd_kernel!(Stats(simd) { logits: &'a [f32], k: usize } -> RowStats
        => row_stats_simd(simd, logits, k))
}

/// [`row_stats`]' body, compiled for the CPU's widest vectors `S`.
#[inline(always)]
fn row_stats_simd<S: pulp::Simd>(simd: S, logits: &[f32], k: usize) -> RowStats {
    // Reference maximum `m`; relative to it, in base 2 (which saves the exponential's
    // range-reduction multiplications), `s = Σ 2^y` and `t = Σ 2^y·y` for `y = (x − m)·log₂e`.
    let mut m = f32::NEG_INFINITY;
    let (mut s, mut t) = (0.0f64, 0.0f64);
    let mut top = TopK::new(k.min(logits.len()));
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        if m == f32::NEG_INFINITY {
            m = max_of(block);
        }
        let block_max = if m == f32::NEG_INFINITY {
            m // every logit so far is −∞
        } else {
            let mut sums = block_sums(simd, block, m);
            if (sums.max - m) * LOG2_E > HEADROOM {
                // Terms above the headroom were not summed exactly: move the reference to the
                // block's maximum and sum the block again (from L1).
                rescale(&mut s, &mut t, m, sums.max);
                m = sums.max;
                sums = block_sums(simd, block, m);
            }
            s += f64::from(sums.s);
            t += f64::from(sums.t);
            if sums.max > m {
                rescale(&mut s, &mut t, m, sums.max);
                m = sums.max;
            }
            sums.max
        };
        top.offer_chunk(block, block_max, b * BLOCK);
    }
    let t = t * std::f64::consts::LN_2;
    let log_sum_exp = (f64::from(m) + s.ln()) as f32;
    let entropy = (s.ln() - t / s).max(0.0) as f32;
    RowStats {
        log_sum_exp,
        entropy,
        top: top
            .items
            .into_iter()
            .map(|(v, id)| (id, v - log_sum_exp))
            .collect(),
    }
}

/// Re-expresses `s` and `t` relative to a new reference maximum `to > from`: every term is
/// scaled by `2^d` and every `y` moves by `d`, for `d = (from − to)·log₂e`.
fn rescale(s: &mut f64, t: &mut f64, from: f32, to: f32) {
    let d = (f64::from(from) - f64::from(to)) * std::f64::consts::LOG2_E;
    let scale = d.exp2();
    *t = scale * d.mul_add(*s, *t);
    *s *= scale;
}

/// One block's sums relative to the reference `m`, and its maximum.
struct BlockSums {
    s: f32,
    t: f32,
    max: f32,
}

/// One pass over `block`: `s = Σ 2^y`, `t = Σ 2^y·y` for `y = (x − m)·log₂e` clamped below at
/// −126 (−∞ logits, masked tokens, stay finite and negligible), and the block's maximum. Terms
/// with `y` above [`HEADROOM`] are not exact; the caller sums such a block again.
#[inline(always)]
fn block_sums<S: pulp::Simd>(simd: S, block: &[f32], m: f32) -> BlockSums {
    let (vecs, tail) = S::as_simd_f32s(block);
    let m2 = m * LOG2_E;
    let (log2e, neg_m2) = (simd.splat_f32s(LOG2_E), simd.splat_f32s(-m2));
    let lowest = simd.splat_f32s(-126.0);
    // One accumulator vector per sum: each iteration's ~17 operations outlast an add's latency.
    let (mut s, mut t) = (simd.splat_f32s(0.0), simd.splat_f32s(0.0));
    let mut max = simd.splat_f32s(f32::NEG_INFINITY);
    for &x in vecs {
        max = simd.max_f32s(max, x);
        let y = simd.max_f32s(simd.mul_add_f32s(x, log2e, neg_m2), lowest);
        let e = exp2_bounded_f32s(simd, y);
        s = simd.add_f32s(s, e);
        t = simd.mul_add_f32s(e, y, t);
    }
    let mut sums = BlockSums {
        s: simd.reduce_sum_f32s(s),
        t: simd.reduce_sum_f32s(t),
        max: simd.reduce_max_f32s(max),
    };
    for &x in tail {
        sums.max = sums.max.max(x);
        let y = x.mul_add(LOG2_E, -m2).max(-126.0);
        let e = exp2_bounded(y);
        sums.s += e;
        sums.t = e.mul_add(y, sums.t);
    }
    sums
}

/// [`row_stats`] over every row of a `[rows, vocab]` buffer, rows in parallel.
pub fn rows_stats(logits: &[f32], vocab: usize, k: usize) -> Vec<RowStats> {
    logits
        .par_chunks(vocab)
        .with_min_len(4)
        .map(|row| row_stats(row, k))
        .collect()
}

/// The plain f64 reference: softmax materialized, entropy and top-k by full sort.
pub fn reference_row_stats(logits: &[f32], k: usize) -> (f64, f64, Vec<(u32, f64)>) {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&x| (x as f64 - m).exp()).sum();
    let lse = m + z.ln();
    let entropy = -logits
        .iter()
        .map(|&x| {
            let lp = x as f64 - lse;
            if lp.is_finite() { lp.exp() * lp } else { 0.0 }
        })
        .sum::<f64>();
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    let top = ids
        .into_iter()
        .take(k)
        .map(|i| (i, logits[i as usize] as f64 - lse))
        .collect();
    (lse, entropy, top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::elementwise::exp_nonpositive;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn exp_is_accurate() {
        for i in 0..10_000 {
            let x = -(i as f32) * 0.0087;
            let (a, b) = (exp_nonpositive(x), x.exp());
            assert!((a - b).abs() <= 3e-7 * b + 1e-38, "x={x} {a} {b}");
        }
    }

    fn check(logits: &[f32], k: usize) {
        let s = row_stats(logits, k);
        let (lse, h, top) = reference_row_stats(logits, k);
        assert!(
            (s.log_sum_exp as f64 - lse).abs() < 1e-4,
            "{} {lse}",
            s.log_sum_exp
        );
        assert!((s.entropy as f64 - h).abs() < 1e-4, "{} {h}", s.entropy);
        assert_eq!(s.top.len(), top.len());
        for ((id, lp), (rid, rlp)) in s.top.iter().zip(&top) {
            assert_eq!(id, rid);
            assert!((*lp as f64 - rlp).abs() < 1e-4);
        }
    }

    #[test]
    fn matches_f64_reference_on_random_rows() {
        crate::kernels::simd::on_every_path(|_path| {
            let mut rng = StdRng::seed_from_u64(7);
            for &(n, scale) in &[
                (49_152usize, 4.0f32),
                (700, 1.0),
                (37, 20.0),
                (1, 1.0),
                (151_936, 8.0),
            ] {
                let row: Vec<f32> = (0..n)
                    .map(|_| (rng.random::<f32>() - 0.5) * 2.0 * scale)
                    .collect();
                check(&row, 5);
            }
        });
    }

    #[test]
    fn peaked_increasing_and_constant_rows() {
        crate::kernels::simd::on_every_path(|_path| {
            // Increasing rows force a rescale at every step.
            let inc: Vec<f32> = (0..1000).map(|i| i as f32 * 0.05).collect();
            check(&inc, 5);
            let mut peaked = vec![-30.0f32; 5000];
            peaked[4321] = 40.0;
            check(&peaked, 3);
            let s = row_stats(&peaked, 1);
            assert!(s.entropy < 1e-6 && s.top[0].0 == 4321);
            let mut masked: Vec<f32> = (0..999).map(|i| (i % 17) as f32 * 0.3).collect();
            for v in masked.iter_mut().step_by(3) {
                *v = f32::NEG_INFINITY;
            }
            masked[0..LANES].fill(f32::NEG_INFINITY);
            check(&masked, 5);
            // The maximum jumps within the summing headroom (44 nats ≈ 63.5 powers of two), far
            // beyond it, then by less than a block's worth; a row ends in a partial vector.
            let mut jumps: Vec<f32> = (0..3001).map(|i| (i % 29) as f32 * 0.1).collect();
            jumps[700] = 44.0;
            jumps[1500] = 89.0;
            jumps[2900] = 90.5;
            jumps[3000] = 200.0;
            check(&jumps, 5);
            let flat = vec![0.25f32; 1024];
            let s = row_stats(&flat, 2);
            assert!((s.entropy - (1024f32).ln()).abs() < 1e-4);
            assert_eq!(s.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 1]);
        });
    }

    #[test]
    fn rows_in_parallel_equal_single_rows() {
        crate::kernels::simd::on_every_path(|_path| {
            let mut rng = StdRng::seed_from_u64(3);
            let data: Vec<f32> = (0..10 * 333).map(|_| rng.random::<f32>() * 10.0).collect();
            let all = rows_stats(&data, 333, 4);
            for (r, s) in all.iter().enumerate() {
                assert_eq!(*s, row_stats(&data[r * 333..(r + 1) * 333], 4));
            }
        });
    }
}
