//! Token statistics on a GPU runtime: log-sum-exp, the chosen token's log-probability, the
//! entropy and the top-k of each logits row in one pass over the row, in one CubeCL kernel that
//! cubecl compiles for whichever runtime the tensor lives on (WGSL or SPIR-V for wgpu, CUDA C
//! for CUDA). Only `3 + 2k` numbers per row come back to the host; no softmax is materialized.
//!
//! One cube (workgroup) per row. Each of its units walks a strided share of the row keeping an
//! online `(m, s = Σ e^(x−m), t = Σ e^(x−m)·(x−m))` and its own sorted top-k; the units' partial
//! results then merge pairwise in shared memory (a tree of `log₂ units` steps), which is also
//! more accurate than one long f32 sum. `H = ln s − t / s`, `lse = m + ln s`. Ties in the top-k
//! keep the lower id first, as the CPU kernel does.

use burn::backend::Cube;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{DType, Shape};
use burn_cubecl::cubecl;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;

use super::DeviceKernels;

/// Units (threads) per row's cube.
const UNITS: usize = 256;

/// Most top-k entries a row returns on a GPU runtime.
pub const MAX_TOP_K: usize = 32;

/// A finite stand-in for −∞ as the starting maximum: `m − x` stays finite, so the first
/// rescale multiplies sums of 0 by 0 instead of making NaN from `0 · ∞`.
const LOWEST: f32 = -3.0e38;

/// The floor of `x − m` before `exp`: a −∞ (masked) logit then adds `0` and `0 · y = 0`.
const FLOOR: f32 = -1.0e30;

/// Whether candidate `(va, ia)` ranks before `(vb, ib)`: larger value, then lower id.
#[cube]
fn ranks_before(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    va > vb || (va == vb && ia < ib)
}

#[cube(launch)]
fn token_stats_kernel(
    logits: &[f32],
    targets: &[u32],
    out: &mut [f32],
    vocab: u32,
    rows: u32,
    #[comptime] k: usize,
    #[comptime] units: usize,
) {
    let row = CUBE_POS;
    // A cube past the last row (the grid is rounded up) has nothing to do; the whole cube
    // leaves together, so no unit misses a barrier.
    if row >= rows as usize {
        terminate!();
    }
    let unit = UNIT_POS as usize;
    let base = row * vocab as usize;
    let slots = comptime![if k == 0 { 1 } else { k }];

    // This unit's share: online maximum and sums, and its sorted top-k.
    let mut m = f32::new(LOWEST);
    let mut s = f32::new(0.0);
    let mut t = f32::new(0.0);
    let mut top_v = Array::<f32>::new(slots);
    let mut top_i = Array::<u32>::new(slots);
    #[unroll]
    for j in 0..slots {
        top_v[j] = LOWEST;
        top_i[j] = u32::MAX;
    }
    let mut i = unit;
    while i < vocab as usize {
        let x = logits[base + i];
        if x > m {
            let d = m - x;
            let scale = f32::exp(d);
            t = scale * (t + d * s);
            s *= scale;
            m = x;
        }
        let y = f32::max(x - m, FLOOR);
        let e = f32::exp(y);
        s += e;
        t += e * y;
        if comptime![k > 0] {
            // Visited in increasing id order, so `>` keeps the lower id first on ties.
            if x > top_v[k - 1] {
                // Shift the smaller entries down; `p - 1` is only read while `p > 0`.
                let mut p = (k - 1).runtime();
                let mut moving = true.runtime();
                while moving {
                    if p == 0 {
                        moving = false;
                    } else if x > top_v[p - 1] {
                        top_v[p] = top_v[p - 1];
                        top_i[p] = top_i[p - 1];
                        p -= 1;
                    } else {
                        moving = false;
                    }
                }
                top_v[p] = x;
                top_i[p] = i as u32;
            }
        }
        i += units;
    }

    // Merge the units' partial results pairwise.
    let mut sm = Shared::<[f32]>::new_slice(units);
    let mut ss = Shared::<[f32]>::new_slice(units);
    let mut st = Shared::<[f32]>::new_slice(units);
    let mut sv = Shared::<[f32]>::new_slice(units * slots);
    let mut si = Shared::<[u32]>::new_slice(units * slots);
    sm[unit] = m;
    ss[unit] = s;
    st[unit] = t;
    #[unroll]
    for j in 0..slots {
        sv[unit * slots + j] = top_v[j];
        si[unit * slots + j] = top_i[j];
    }
    sync_cube();
    let mut stride = (units / 2).runtime();
    while stride > 0 {
        if unit < stride {
            let other = unit + stride;
            let m1 = sm[unit];
            let m2 = sm[other];
            let mx = f32::max(m1, m2);
            let d1 = m1 - mx;
            let d2 = m2 - mx;
            let a = f32::exp(d1);
            let b = f32::exp(d2);
            let s1 = ss[unit];
            let s2 = ss[other];
            st[unit] = a * (st[unit] + d1 * s1) + b * (st[other] + d2 * s2);
            ss[unit] = a * s1 + b * s2;
            sm[unit] = mx;
            if comptime![k > 0] {
                // Two sorted lists of k into the first k of both.
                let mut p = 0usize.runtime();
                let mut q = 0usize.runtime();
                #[unroll]
                for j in 0..slots {
                    let va = sv[unit * slots + p];
                    let ia = si[unit * slots + p];
                    let vb = sv[other * slots + q];
                    let ib = si[other * slots + q];
                    if ranks_before(va, ia, vb, ib) {
                        top_v[j] = va;
                        top_i[j] = ia;
                        p += 1;
                    } else {
                        top_v[j] = vb;
                        top_i[j] = ib;
                        q += 1;
                    }
                }
                #[unroll]
                for j in 0..slots {
                    sv[unit * slots + j] = top_v[j];
                    si[unit * slots + j] = top_i[j];
                }
            }
        }
        sync_cube();
        stride /= 2;
    }

    if unit == 0 {
        let width = 3 + 2 * k;
        let o = row * width;
        let s_total = ss[0];
        let m_total = sm[0];
        let ln_s = f32::ln(s_total);
        out[o] = m_total + ln_s;
        out[o + 1] = f32::max(ln_s - st[0] / s_total, 0.0);
        // Log-probabilities as (x − m) − ln s: `x − m` is exact for the large logits that
        // matter, where x − (m + ln s) would lose the low bits of a log-sum-exp near 1e4.
        let target = targets[row];
        if target < vocab {
            out[o + 2] = (logits[base + target as usize] - m_total) - ln_s;
        } else {
            // No target: the host knows and reads nothing here.
            out[o + 2] = f32::new(0.0);
        }
        if comptime![k > 0] {
            #[unroll]
            for j in 0..slots {
                out[o + 3 + j] = (sv[j] - m_total) - ln_s;
                out[o + 3 + k + j] = f32::cast_from(si[j]);
            }
        }
    }
}

impl DeviceKernels for Cube {
    fn token_stats(logits: FloatTensor<Self>, targets: Vec<u32>, k: usize) -> FloatTensor<Self> {
        assert_eq!(logits.dtype, DType::F32, "token statistics take f32 logits");
        assert!(
            k <= MAX_TOP_K,
            "token statistics return at most {MAX_TOP_K} top entries"
        );
        let logits = into_contiguous(logits);
        let shape = logits.meta.shape().clone();
        let [rows, vocab] = shape[..] else {
            panic!("token statistics take [rows, vocab] logits, not {shape:?}")
        };
        assert_eq!(
            targets.len(),
            rows,
            "one target per row (u32::MAX for none)"
        );
        let client = logits.client.clone();
        let out = empty_device_dtype(
            client.clone(),
            logits.device.clone(),
            Shape::from(vec![rows, 3 + 2 * k]),
            DType::F32,
        );
        let targets = client.create_from_slice(u32::as_bytes(&targets));
        let units = UNITS.min(client.properties().hardware.max_units_per_cube as usize);
        // Round down to a power of two for the pairwise merge.
        let units = 1usize << (usize::BITS - 1 - units.leading_zeros());
        let max_x = 65_535usize;
        let count = if rows <= max_x {
            CubeCount::Static(rows as u32, 1, 1)
        } else {
            CubeCount::Static(max_x as u32, rows.div_ceil(max_x) as u32, 1)
        };
        token_stats_kernel::launch(
            &client,
            count,
            CubeDim::new_1d(units as u32),
            logits.into_buffer_arg(),
            targets_arg(targets, rows),
            out.clone().into_buffer_arg(),
            vocab as u32,
            rows as u32,
            k,
            units,
        );
        out
    }
}

/// The targets' buffer as a kernel argument.
#[allow(unsafe_code)]
fn targets_arg(handle: cubecl::server::Handle, len: usize) -> BufferArg {
    // SAFETY: `handle` was just created from exactly `len` u32 values.
    unsafe { BufferArg::from_raw_parts(handle, len) }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};

    use crate::kernels::fused::token_stats;
    use crate::kernels::token_stats::reference_row_stats;

    /// Uniform values in [-1, 1) without ties (xorshift).
    fn distinct_values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The fused kernel on wgpu against the f64 reference (softmax materialized, full sort):
    /// log-sum-exp, entropy, the target's log-probability and the top-k, to 1e-5 relative (to 1e-5
    /// absolute below 1), on rows of 151,936 entries, logits of magnitude 1e4, ties (the lower
    /// id first), −∞ entries, a row shorter than the cube and k = 0.
    #[test]
    fn wgpu_token_stats_match_the_f64_reference() {
        let Some(backend) = crate::test_files::wgpu_backend() else {
            return;
        };
        let cases: [(usize, usize, f32, bool, usize); 6] = [
            (3, 151_936, 12.0, false, 5),
            (2, 151_936, 3.0, true, 8),
            (4, 4096, 1.0e4, false, 5),
            (2, 50_000, 1.0e4, true, 3),
            (2, 7, 1.0, false, 7),
            (5, 1000, 4.0, false, 0),
        ];
        for (case, &(rows, vocab, scale, ties, k)) in cases.iter().enumerate() {
            let mut logits: Vec<f32> = if ties {
                crate::kernels::test_values(rows * vocab, case as u32)
            } else {
                distinct_values(rows * vocab, 0x9e37_79b9 + case as u64)
            };
            for x in &mut logits {
                *x *= scale;
            }
            if vocab > 100 {
                logits[17] = f32::NEG_INFINITY;
            }
            let targets: Vec<u32> = (0..rows)
                .map(|r| {
                    if r == 1 {
                        u32::MAX
                    } else {
                        ((r * 7919 + 3) % vocab) as u32
                    }
                })
                .collect();
            let tensor = Tensor::<2>::from_data(
                TensorData::new(logits.clone(), [rows, vocab]),
                &backend.device,
            );
            let got = token_stats(tensor, &targets, k).expect("statistics");
            assert_eq!(got.len(), rows);
            let close = |a: f64, b: f64, what: &str| {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "case {case} ({rows} × {vocab}, scale {scale}): {what} {a} vs {b}"
                );
            };
            for (r, row) in got.iter().enumerate() {
                let values = &logits[r * vocab..(r + 1) * vocab];
                let (lse, entropy, top) = reference_row_stats(values, k);
                close(f64::from(row.stats.log_sum_exp), lse, "log-sum-exp");
                close(f64::from(row.stats.entropy), entropy, "entropy");
                match targets[r] {
                    u32::MAX => assert_eq!(row.target_logprob, None),
                    t => close(
                        f64::from(row.target_logprob.expect("target")),
                        f64::from(values[t as usize]) - lse,
                        "target log-prob",
                    ),
                }
                let ids: Vec<u32> = row.stats.top.iter().map(|t| t.0).collect();
                let want: Vec<u32> = top.iter().map(|t| t.0).collect();
                assert_eq!(ids, want, "case {case} row {r}: top-{k} ids");
                for (g, w) in row.stats.top.iter().zip(&top) {
                    close(f64::from(g.1), w.1, "top log-prob");
                }
            }
        }
    }

    /// The CPU path of the same facade agrees with the reference too (the GPU test's twin).
    #[test]
    fn cpu_token_stats_give_the_target_log_prob() {
        let logits = distinct_values(3 * 500, 7);
        let tensor = Tensor::<2>::from_data(
            TensorData::new(logits.clone(), [3, 500]),
            &burn::tensor::Device::flex(),
        );
        let got = token_stats(tensor, &[4, u32::MAX, 499], 2).expect("statistics");
        let (lse, _, _) = reference_row_stats(&logits[..500], 2);
        let lp = f64::from(got[0].target_logprob.expect("target"));
        assert!((lp - (f64::from(logits[4]) - lse)).abs() < 1e-5);
        assert_eq!(got[1].target_logprob, None);
    }
}
