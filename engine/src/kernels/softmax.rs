//! Attention probabilities in one pass each way: `softmax(scale · s)` over each row of scores
//! with hidden keys left out, and its gradient. The row kernels serve the causal block kernel
//! ([`attention`](super::attention)); [`masked_softmax`] serves passes with any other mask, over
//! the whole `[batch, heads, queries, keys]` scores. burn's composed attention records a scale,
//! two mask fills and a five-op softmax, each a full pass with libm's scalar `exp`.

use rayon::prelude::*;

use super::elementwise::exp_nonpositive;
use super::gemv::dot;
use super::simd_kernel;
use super::token_stats::max_of;

/// `softmax(scale · scores)` over the last axis of `scores [batch, heads, q, k]`, the keys that
/// `hidden[(b · q + i) · k + j]` hides from query `i` of sequence `b` (shared by the heads) at
/// probability 0 (a row with every key hidden is all 0). Causal passes take
/// [`causal_attention`](super::attention::causal_attention) instead.
pub fn masked_softmax(scores: &[f32], shape: [usize; 4], hidden: &[bool], scale: f32) -> Vec<f32> {
    let mut out = scores.to_vec();
    masked_softmax_in_place(&mut out, shape, hidden, scale);
    out
}

/// [`masked_softmax`] over `scores` in place, the probabilities replacing the scores: a pass over
/// a uniquely held score tensor allocates (and page-faults) no second one.
pub fn masked_softmax_in_place(
    scores: &mut [f32],
    [batch, heads, q, k]: [usize; 4],
    hidden: &[bool],
    scale: f32,
) {
    assert_eq!(
        scores.len(),
        batch * heads * q * k,
        "masked_softmax: scores"
    );
    assert_eq!(hidden.len(), batch * q * k, "masked_softmax: mask");
    if k == 0 {
        return;
    }
    scores
        .par_chunks_mut(k)
        .with_min_len(16)
        .enumerate()
        .for_each(|(row, s)| {
            let (b, i) = (row / (heads * q), row % q);
            let h = &hidden[(b * q + i) * k..][..k];
            simd_kernel!(Masked { s: &'a mut [f32], h: &'a [bool], scale: f32 }
                => softmax_masked(s, h, scale))
        });
}

/// The gradient with respect to the scores, given the probabilities `probs` that
/// [`masked_softmax`] returned and their gradient: `scale · p ⊙ (g − Σ g ⊙ p)` per row (hidden
/// keys have `p = 0`, so their gradient is 0).
pub fn masked_softmax_backward(probs: &[f32], grad: &[f32], k: usize, scale: f32) -> Vec<f32> {
    assert_eq!(
        probs.len(),
        grad.len(),
        "masked_softmax_backward: shapes differ"
    );
    let mut out = grad.to_vec();
    if k == 0 {
        return out;
    }
    out.par_chunks_mut(k)
        .zip(probs.par_chunks(k))
        .with_min_len(16)
        .for_each(|(g, p)| softmax_grad_rows(g, p, k, scale));
    out
}

/// Each row `r` of `s [rows, cols]` replaced by the softmax of `scale ·` its values
/// `starts[r] − offset .. first_end + r` (`starts` empty: from 0), the rest 0: a block of causal
/// query rows, whose first row sees `first_end` columns.
pub(crate) fn softmax_window_rows(
    s: &mut [f32],
    cols: usize,
    starts: &[usize],
    offset: usize,
    first_end: usize,
    scale: f32,
) {
    simd_kernel!(WindowRows { s: &'a mut [f32], cols: usize, starts: &'a [usize], offset: usize, first_end: usize, scale: f32 } => {
        for (r, row) in s.chunks_exact_mut(cols).enumerate() {
            let from = starts.get(r).map_or(0, |&f| f - offset);
            softmax_window(row, from, (first_end + r).min(cols), scale);
        }
    })
}

/// Each row of `g [rows, cols]`, the gradient of probabilities `p` (same shape), replaced by the
/// gradient of their scores, `scale · p ⊙ (g − Σ g ⊙ p)`.
pub(crate) fn softmax_grad_rows(g: &mut [f32], p: &[f32], cols: usize, scale: f32) {
    simd_kernel!(GradRows { g: &'a mut [f32], p: &'a [f32], cols: usize, scale: f32 } => {
        for (g, p) in g.chunks_exact_mut(cols).zip(p.chunks_exact(cols)) {
            softmax_grad(g, p, scale);
        }
    })
}

/// Softmax of `scale · s[from..to]` in place; the values outside become 0.
#[inline(always)]
fn softmax_window(s: &mut [f32], from: usize, to: usize, scale: f32) {
    let (s, unseen) = s.split_at_mut(to);
    unseen.fill(0.0);
    let (before, s) = s.split_at_mut(from.min(to));
    before.fill(0.0);
    let max = max_of(s) * scale;
    if !max.is_finite() {
        s.fill(0.0);
        return;
    }
    let mut total = 0.0f32;
    for x in s.iter_mut() {
        let e = exp_nonpositive(x.mul_add(scale, -max).max(-87.0));
        *x = e;
        total += e;
    }
    let inv = 1.0 / total;
    for x in s.iter_mut() {
        *x *= inv;
    }
}

/// Softmax of `scale · s` in place over the keys `hidden` does not hide; hidden keys become 0.
#[inline(always)]
fn softmax_masked(s: &mut [f32], hidden: &[bool], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for (&x, &h) in s.iter().zip(hidden) {
        let v = if h { f32::NEG_INFINITY } else { x };
        max = if v > max { v } else { max };
    }
    let max = max * scale;
    if !max.is_finite() {
        s.fill(0.0);
        return;
    }
    let mut total = 0.0f32;
    for (x, &h) in s.iter_mut().zip(hidden) {
        let e = exp_nonpositive(x.mul_add(scale, -max).max(-87.0));
        let e = if h { 0.0 } else { e };
        *x = e;
        total += e;
    }
    let inv = 1.0 / total;
    for x in s.iter_mut() {
        *x *= inv;
    }
}

/// `g ← scale · p ⊙ (g − Σ g ⊙ p)`, in place.
#[inline(always)]
fn softmax_grad(g: &mut [f32], p: &[f32], scale: f32) {
    let dot = dot(p, g);
    for (g, &p) in g.iter_mut().zip(p) {
        *g = scale * p * (*g - dot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    fn reference(s: &[f32], visible: impl Fn(usize) -> bool, scale: f32) -> Vec<f64> {
        let xs: Vec<Option<f64>> = s
            .iter()
            .enumerate()
            .map(|(j, &x)| visible(j).then_some(f64::from(x) * f64::from(scale)))
            .collect();
        let max = xs
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if !max.is_finite() {
            return vec![0.0; s.len()];
        }
        let total: f64 = xs.iter().flatten().map(|x| (x - max).exp()).sum();
        xs.iter()
            .map(|x| x.map_or(0.0, |x| (x - max).exp() / total))
            .collect()
    }

    #[test]
    fn causal_and_masked_rows_match_a_reference() {
        crate::kernels::simd::on_every_path(|_path| {
            let ([b, h, q, k], scale) = ([2, 3, 5, 37], 0.3);
            let scores: Vec<f32> = test_values(b * h * q * k, 11)
                .iter()
                .map(|v| v * 9.0)
                .collect();
            let hidden: Vec<bool> = (0..b * q * k)
                .map(|i| (i * 7) % 5 == 0 || i % 37 > 30)
                .collect();
            // Causal as an explicit mask, and an arbitrary one.
            let causal_mask: Vec<bool> = (0..b * q * k)
                .map(|at| at % k > at / k % q + (k - q))
                .collect();
            let causal = masked_softmax(&scores, [b, h, q, k], &causal_mask, scale);
            let masked = masked_softmax(&scores, [b, h, q, k], &hidden, scale);
            for row in 0..b * h * q {
                let (bi, i) = (row / (h * q), row % q);
                let s = &scores[row * k..][..k];
                let want_c = reference(s, |j| j <= i + (k - q), scale);
                let mrow = &hidden[(bi * q + i) * k..][..k];
                let want_m = reference(s, |j| !mrow[j], scale);
                for j in 0..k {
                    assert!((f64::from(causal[row * k + j]) - want_c[j]).abs() < 1e-6);
                    assert!((f64::from(masked[row * k + j]) - want_m[j]).abs() < 1e-6);
                }
            }
        });
    }

    #[test]
    fn a_fully_hidden_row_is_zero() {
        crate::kernels::simd::on_every_path(|_path| {
            let out = masked_softmax(&[1.0, 2.0], [1, 1, 1, 2], &[true, true], 1.0);
            assert_eq!(out, vec![0.0, 0.0]);
        });
    }
}
