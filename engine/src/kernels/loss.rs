//! The language-model loss over a vocabulary row, fused: each target's negative log-likelihood
//! `lse(row) − row[target]` in one read of the logits (no log-softmax copy), and its gradient
//! `g · (softmax(row) − onehot(target))` written in one pass.

use rayon::prelude::*;

use super::elementwise::exp_nonpositive;
use super::simd_kernel;
use super::token_stats::{LANES, max_of};

/// Per-row negative log-likelihood of `targets` under `logits` (`[rows, vocab]`, row-major),
/// with each row's log-sum-exp: `(nll, lse)`.
pub fn token_nll(logits: &[f32], vocab: usize, targets: &[u32]) -> (Vec<f32>, Vec<f32>) {
    check(logits, vocab, targets);
    let lse: Vec<f32> = logits
        .par_chunks(vocab)
        .with_min_len(4)
        .map(|row| simd_kernel!(Lse { row: &'a [f32] } -> f32 => row_lse(row)))
        .collect();
    let nll = lse
        .iter()
        .zip(logits.chunks_exact(vocab).zip(targets))
        .map(|(&l, (row, &t))| l - row[t as usize])
        .collect();
    (nll, lse)
}

/// The gradient of `Σ grad[i] · nll[i]` with respect to the logits, `[rows, vocab]`, from the
/// log-sum-exps [`token_nll`] returned.
pub fn token_nll_backward(
    logits: &[f32],
    vocab: usize,
    lse: &[f32],
    targets: &[u32],
    grad: &[f32],
) -> Vec<f32> {
    check(logits, vocab, targets);
    assert!(
        lse.len() == targets.len() && grad.len() == targets.len(),
        "token_nll_backward: one lse and one gradient per row"
    );
    let mut out = vec![0.0f32; logits.len()];
    out.par_chunks_mut(vocab)
        .with_min_len(4)
        .zip(logits.par_chunks(vocab))
        .enumerate()
        .for_each(|(i, (o, row))| {
            let (l, g) = (lse[i], grad[i]);
            simd_kernel!(NllGrad { o: &'a mut [f32], row: &'a [f32], l: f32, g: f32 }
                => softmax_scaled(o, row, l, g));
            o[targets[i] as usize] -= g;
        });
    out
}

fn check(logits: &[f32], vocab: usize, targets: &[u32]) {
    assert!(
        vocab > 0 && logits.len() == targets.len() * vocab,
        "token_nll: logits are not [targets, vocab]"
    );
    assert!(
        targets.iter().all(|&t| (t as usize) < vocab),
        "token_nll: a target is outside the vocabulary"
    );
}

/// `log Σ e^x` of one row: its maximum, then [`LANES`] partial sums of `e^(x − max)`.
#[inline(always)]
fn row_lse(row: &[f32]) -> f32 {
    let m = max_of(row);
    if !m.is_finite() {
        return m;
    }
    let mut s = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for l in 0..LANES {
            s[l] += exp_nonpositive((chunk[l] - m).max(-87.0));
        }
    }
    for &x in tail {
        s[0] += exp_nonpositive((x - m).max(-87.0));
    }
    let total: f64 = s.iter().map(|&v| f64::from(v)).sum();
    (f64::from(m) + total.ln()) as f32
}

/// `out = g · e^(row − lse)`.
#[inline(always)]
fn softmax_scaled(out: &mut [f32], row: &[f32], lse: f32, g: f32) {
    for (o, &x) in out.iter_mut().zip(row) {
        *o = g * exp_nonpositive((x - lse).max(-87.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    #[test]
    fn nll_and_gradient_match_an_f64_reference() {
        crate::kernels::simd::on_every_path(|_path| {
            let (rows, vocab) = (5, 1031);
            let logits: Vec<f32> = test_values(rows * vocab, 7)
                .iter()
                .map(|v| v * 12.0)
                .collect();
            let targets = [0u32, 1030, 17, 512, 3];
            let grad = [1.0f32, -0.5, 0.25, 0.0, 2.0];
            let (nll, lse) = token_nll(&logits, vocab, &targets);
            let d = token_nll_backward(&logits, vocab, &lse, &targets, &grad);
            for (i, row) in logits.chunks(vocab).enumerate() {
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let z: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
                let want_lse = m + z.ln();
                let want_nll = want_lse - row[targets[i] as usize] as f64;
                assert!(
                    (nll[i] as f64 - want_nll).abs() < 1e-5,
                    "row {i}: {} vs {want_nll}",
                    nll[i]
                );
                for (j, &x) in row.iter().enumerate() {
                    let p = (x as f64 - want_lse).exp();
                    let onehot = if j == targets[i] as usize { 1.0 } else { 0.0 };
                    let want = grad[i] as f64 * (p - onehot);
                    let got = d[i * vocab + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-6 + 1e-5 * want.abs(),
                        "({i}, {j}): {got} vs {want}"
                    );
                }
            }
        });
    }

    #[test]
    fn masked_logits_stay_finite() {
        crate::kernels::simd::on_every_path(|_path| {
            let mut logits = vec![0.0f32; 64];
            logits[..32].fill(f32::NEG_INFINITY);
            let (nll, lse) = token_nll(&logits, 64, &[40]);
            assert!((nll[0] - 32f32.ln()).abs() < 1e-5 && lse[0].is_finite());
            let d = token_nll_backward(&logits, 64, &lse, &[40], &[1.0]);
            assert!(d.iter().all(|v| v.is_finite()));
            assert!(d[..32].iter().all(|&v| v.abs() < 1e-30));
        });
    }
}
