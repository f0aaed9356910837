//! Fused element-wise kernels of the decoder's inference pass: SwiGLU's `silu(gate) · up` and the
//! half rotation of RoPE, each one pass over its inputs instead of burn's chain of temporaries.

use rayon::prelude::*;

use super::simd_kernel;

/// `e^x` for `x` in `[-87, 0]` (callers clamp), relative error below 2e-7; written so that
/// loops over it vectorize, with fused multiply-adds where the CPU has them (the kernels run
/// under `pulp`'s dispatch, which enables FMA together with AVX2 and AVX-512).
#[inline(always)]
pub(crate) fn exp_nonpositive(x: f32) -> f32 {
    // e^x = 2^n · e^r, n = round(x / ln 2), r = x − n ln 2 ∈ [−ln2/2, ln2/2].
    // Round to nearest with the 1.5·2^23 trick: `f32::round` is a libm call on baseline x86-64
    // and would keep the loop from vectorizing.
    let shifted = x.mul_add(std::f32::consts::LOG2_E, SHIFT);
    let n = shifted - SHIFT;
    let r = n.mul_add(-1.428_606_8e-6, n.mul_add(-0.693_145_75, x));
    // Degree-6 Taylor polynomial of e^r on the reduced range, in Horner form.
    let mut p: f32 = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(r, c);
    }
    p * pow2_of_shifted(shifted)
}

/// `1.5 · 2^23`: adding it to a float of magnitude below 2^22 rounds it to an integer, which
/// then sits in the low bits of the sum's mantissa.
const SHIFT: f32 = 12_582_912.0;

/// `2^n` for the integer `n` in `shifted = n + SHIFT` (its bits are `0x4B40_0000 + n`), built
/// from those bits: an `as i32` cast would be a scalar, saturating conversion per element.
#[inline(always)]
fn pow2_of_shifted(shifted: f32) -> f32 {
    let bits = shifted
        .to_bits()
        .wrapping_sub(0x4B40_0000)
        .wrapping_add(127)
        << 23;
    f32::from_bits(bits)
}

/// `2^y` for `y` in `[-126, 126]` (callers clamp), relative error below 3e-7: the same range
/// reduction as [`exp_nonpositive`] without the `ln 2` split, and a degree-5 minimax polynomial
/// of `2^f` on `[-½, ½]` (fitted for this kernel; five fused multiply-adds). Loops that can work
/// in base 2 (the token statistics) save the reduction's multiplications this way.
///
/// The last step adds `n` to the exponent field of `p ∈ [1/√2, √2]`, which multiplies it by `2^n`
/// exactly: `shifted`'s bits are `0x4B40_0000 + n`, and shifted left by 23 they are `n << 23`
/// (the constant's bits leave the word). Within `[-126, 126]` the result stays a normal float:
/// `n = -126` comes with `f ≥ 0`, so `p ≥ 1`.
#[inline(always)]
pub(crate) fn exp2_bounded(y: f32) -> f32 {
    let shifted = y + SHIFT;
    let f = y - (shifted - SHIFT);
    let mut p = EXP2_POLY[0];
    for &c in &EXP2_POLY[1..] {
        p = p.mul_add(f, c);
    }
    f32::from_bits(p.to_bits().wrapping_add(shifted.to_bits() << 23))
}

/// [`exp2_bounded`] on one vector of `S`, for kernels written with `pulp`'s explicit vectors:
/// the same operations, so the same bits lane by lane.
#[inline(always)]
pub(crate) fn exp2_bounded_f32s<S: pulp::Simd>(simd: S, y: S::f32s) -> S::f32s {
    let shift = simd.splat_f32s(SHIFT);
    let shifted = simd.add_f32s(y, shift);
    let f = simd.sub_f32s(y, simd.sub_f32s(shifted, shift));
    let mut p = simd.splat_f32s(EXP2_POLY[0]);
    for &c in &EXP2_POLY[1..] {
        p = simd.mul_add_f32s(p, f, simd.splat_f32s(c));
    }
    let n = simd.wrapping_dyn_shl_u32s(simd.transmute_u32s_f32s(shifted), simd.splat_u32s(23));
    simd.transmute_f32s_u32s(simd.add_u32s(simd.transmute_u32s_f32s(p), n))
}

/// [`exp2_bounded`]'s polynomial of `2^f` on `[-½, ½]`, highest degree first.
const EXP2_POLY: [f32; 6] = [
    1.327_646_4e-3,
    9.675_541e-3,
    5.550_713_5e-2,
    0.240_221_2,
    0.693_146_94,
    1.000_000_1,
];

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// `silu(gate) · up` element-wise, `silu(g) = g · σ(g)`.
pub fn silu_mul(gate: &[f32], up: &[f32]) -> Vec<f32> {
    assert_eq!(gate.len(), up.len(), "silu_mul: shapes differ");
    let mut out = vec![0.0f32; gate.len()];
    out.par_chunks_mut(CHUNK)
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .for_each(|(o, (g, u))| {
            simd_kernel!(SiluMul { o: &'a mut [f32], g: &'a [f32], u: &'a [f32] }
                => silu_mul_into(o, g, u))
        });
    out
}

#[inline(always)]
fn silu_mul_into(out: &mut [f32], gate: &[f32], up: &[f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g * sigmoid(g) * u;
    }
}

/// RMSNorm of each row of `x` (rows of `gamma.len()` values): `x / √(mean(x²) + ε) · γ`, as
/// burn's `RmsNorm` computes it (the mean of squares in f32, then a division), in one pass per
/// row instead of seven tensor ops with three temporaries.
pub fn rms_norm(x: &[f32], gamma: &[f32], epsilon: f32) -> Vec<f32> {
    let d = gamma.len();
    assert!(
        d > 0 && x.len().is_multiple_of(d),
        "rms_norm: x is not rows of gamma's length"
    );
    let mut out = vec![0.0f32; x.len()];
    // A decode step's row or two stay on the calling thread (at least `CHUNK` values per task).
    out.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(CHUNK.div_ceil(d))
        .for_each(|(o, row)| {
            simd_kernel!(RmsNorm { o: &'a mut [f32], row: &'a [f32], gamma: &'a [f32], epsilon: f32 }
                => rms_norm_row(o, row, gamma, epsilon))
        });
    out
}

#[inline(always)]
fn rms_norm_row(out: &mut [f32], x: &[f32], gamma: &[f32], epsilon: f32) {
    let mean = super::gemv::dot(x, x) / x.len() as f32;
    let rms = (mean + epsilon).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gamma) {
        *o = v / rms * g;
    }
}

/// The gradients of [`silu_mul`] with respect to `gate` and `up`, given the output gradient:
/// `∂up = g·silu(gate)` and `∂gate = g·up·σ(gate)·(1 + gate·(1 − σ(gate)))`.
pub fn silu_mul_backward(gate: &[f32], up: &[f32], grad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    assert!(
        gate.len() == up.len() && up.len() == grad.len(),
        "silu_mul_backward: shapes differ"
    );
    let mut d_gate = vec![0.0f32; gate.len()];
    let mut d_up = vec![0.0f32; gate.len()];
    d_gate
        .par_chunks_mut(CHUNK)
        .zip(d_up.par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
        .zip(grad.par_chunks(CHUNK))
        .for_each(|(((dg, du), (g, u)), d)| {
            simd_kernel!(SiluMulGrad { dg: &'a mut [f32], du: &'a mut [f32], g: &'a [f32], u: &'a [f32], d: &'a [f32] }
                => silu_mul_backward_into(dg, du, g, u, d))
        });
    (d_gate, d_up)
}

#[inline(always)]
fn silu_mul_backward_into(
    d_gate: &mut [f32],
    d_up: &mut [f32],
    gate: &[f32],
    up: &[f32],
    grad: &[f32],
) {
    for ((((dg, du), &g), &u), &d) in d_gate
        .iter_mut()
        .zip(d_up.iter_mut())
        .zip(gate)
        .zip(up)
        .zip(grad)
    {
        let sigmoid = sigmoid(g);
        *du = d * g * sigmoid;
        *dg = d * u * sigmoid * (1.0 + g * (1.0 - sigmoid));
    }
}

/// `σ(g)` from `e^(−|g|) ≤ 1`, so the exponential never overflows.
#[inline(always)]
fn sigmoid(g: f32) -> f32 {
    let e = exp_nonpositive((-g.abs()).max(-87.0));
    if g >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// RoPE with the half rotation (transformers' `rotate_half`): for each row of `head_dim`
/// values, `x · cos + [−x₂, x₁] · sin`. `x` is `[batch, heads, seq, head_dim]`; `cos` and `sin`
/// are `[batch, seq, head_dim]` (shared by the heads).
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], heads: usize, seq: usize, hd: usize) -> Vec<f32> {
    rope_pass(x, cos, sin, [heads, seq, hd], false)
}

/// The gradient of [`rope`] with respect to `x`, given the output gradient `grad` (RoPE is
/// linear, so this is its transpose: `∂x₁ = g₁·cos₁ + g₂·sin₂`, `∂x₂ = g₂·cos₂ − g₁·sin₁`).
pub fn rope_backward(
    grad: &[f32],
    cos: &[f32],
    sin: &[f32],
    heads: usize,
    seq: usize,
    hd: usize,
) -> Vec<f32> {
    rope_pass(grad, cos, sin, [heads, seq, hd], true)
}

fn rope_pass(
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    [heads, seq, hd]: [usize; 3],
    transpose: bool,
) -> Vec<f32> {
    assert_eq!(cos.len(), sin.len(), "rope: cos and sin differ");
    assert!(
        hd.is_multiple_of(2) && seq > 0 && heads > 0,
        "rope: bad shape"
    );
    assert_eq!(
        x.len() / (heads * seq * hd) * seq * hd,
        cos.len(),
        "rope: tables"
    );
    let mut out = vec![0.0f32; x.len()];
    // One task per (batch, head): `seq` rows of `hd`; a decode step's few heads run on the
    // calling thread (at least `CHUNK` elements per task).
    out.par_chunks_mut(seq * hd)
        .zip(x.par_chunks(seq * hd))
        .with_min_len(CHUNK.div_ceil(seq * hd))
        .enumerate()
        .for_each(|(bh, (o, xs))| {
            let b = bh / heads;
            let (c, s) = (&cos[b * seq * hd..][..seq * hd], &sin[b * seq * hd..][..seq * hd]);
            simd_kernel!(Rope { o: &'a mut [f32], xs: &'a [f32], c: &'a [f32], s: &'a [f32], hd: usize, transpose: bool }
                => rope_rows(o, xs, c, s, hd, transpose))
        });
    out
}

/// RoPE over rows of `hd` values, or its transpose (the gradient): `∂x₁ = g₁·cos₁ + g₂·sin₂`,
/// `∂x₂ = g₂·cos₂ − g₁·sin₁` (the branch is loop-invariant, so each loop compiles branch-free).
#[inline(always)]
fn rope_rows(out: &mut [f32], x: &[f32], cos: &[f32], sin: &[f32], hd: usize, transpose: bool) {
    let half = hd / 2;
    for (((o, x), c), s) in out
        .chunks_exact_mut(hd)
        .zip(x.chunks_exact(hd))
        .zip(cos.chunks_exact(hd))
        .zip(sin.chunks_exact(hd))
    {
        let (x1, x2) = x.split_at(half);
        let (o1, o2) = o.split_at_mut(half);
        let (c1, c2) = c.split_at(half);
        let (s1, s2) = s.split_at(half);
        if transpose {
            for i in 0..half {
                o1[i] = x1[i] * c1[i] + x2[i] * s2[i];
                o2[i] = x2[i] * c2[i] - x1[i] * s1[i];
            }
        } else {
            for i in 0..half {
                o1[i] = x1[i] * c1[i] - x2[i] * s1[i];
                o2[i] = x2[i] * c2[i] + x1[i] * s2[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp2_is_accurate_over_its_range() {
        for i in -126_000..=126_000 {
            // The domain's ends as callers clamp to them (−126_000 · 1e-3 rounds below −126).
            let y = (i as f32 * 1e-3).clamp(-126.0, 126.0);
            let want = 2f64.powf(f64::from(y));
            let got = f64::from(exp2_bounded(y));
            assert!((got / want - 1.0).abs() < 3e-7, "2^{y}: {got} vs {want}");
        }
    }

    /// The vector form gives the scalar form's bits, lane by lane, on every path.
    #[test]
    fn exp2_vectors_equal_the_scalar_form() {
        /// Every vector of `ys` through [`exp2_bounded_f32s`] into `out`.
        #[inline(always)]
        fn vectors<S: pulp::Simd>(simd: S, ys: &[f32], out: &mut [f32]) {
            let (ys, _) = S::as_simd_f32s(ys);
            let (out, _) = S::as_mut_simd_f32s(out);
            for (o, &y) in out.iter_mut().zip(ys) {
                *o = exp2_bounded_f32s(simd, y);
            }
        }
        crate::kernels::simd::on_every_path(|path| {
            // A multiple of every lane count, so no element is left to a scalar tail.
            let ys: Vec<f32> = (0..252 * 64).map(|i| i as f32 / 64.0 - 126.0).collect();
            let mut got = vec![f32::NAN; ys.len()];
            let (ys, out) = (&ys[..], &mut got[..]);
            simd_kernel!(Check(simd) { ys: &'a [f32], out: &'a mut [f32] } -> ()
                => vectors(simd, ys, out));
            for (&y, &g) in ys.iter().zip(&got) {
                assert_eq!(g.to_bits(), exp2_bounded(y).to_bits(), "{path:?}: 2^{y}");
            }
        });
    }

    #[test]
    fn silu_mul_matches_the_definition() {
        crate::kernels::simd::on_every_path(|_path| {
            let gate: Vec<f32> = (0..40_000).map(|i| (i as f32 - 20_000.0) * 0.005).collect();
            let up: Vec<f32> = (0..40_000)
                .map(|i| ((i % 17) as f32 - 8.0) * 0.25)
                .collect();
            let got = silu_mul(&gate, &up);
            for ((&g, &u), &o) in gate.iter().zip(&up).zip(&got) {
                let want = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
                assert!(
                    (f64::from(o) - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{g} {u}: {o} vs {want}"
                );
            }
        });
    }

    #[test]
    fn rms_norm_matches_an_f64_reference_and_burns_module() {
        crate::kernels::simd::on_every_path(|_path| {
            // Rows of an odd width (a lane tail), one decode row and many prompt rows (threads).
            for (rows, d) in [(1, 37), (300, 576)] {
                let x = crate::kernels::test_values(rows * d, 5);
                let gamma = crate::kernels::test_values(d, 6);
                let eps = 1e-5f32;
                let got = rms_norm(&x, &gamma, eps);
                for (r, (row, out)) in x.chunks(d).zip(got.chunks(d)).enumerate() {
                    let mean = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d as f64;
                    let rms = (mean + f64::from(eps)).sqrt();
                    for ((&v, &g), &o) in row.iter().zip(&gamma).zip(out) {
                        let want = f64::from(v) / rms * f64::from(g);
                        assert!(
                            (f64::from(o) - want).abs() <= 1e-5,
                            "row {r}: {o} vs {want}"
                        );
                    }
                }
            }
        });
        // Through the facade on flex (this kernel) against burn's module (any backend's path).
        let device = burn::tensor::Device::flex();
        let norm = burn::nn::RmsNormConfig::new(48)
            .with_epsilon(1e-6)
            .init(&device);
        let x = burn::tensor::Tensor::<3>::random(
            [2, 5, 48],
            burn::tensor::Distribution::Uniform(-3.0, 3.0),
            &device,
        );
        let ours = crate::kernels::rms_norm(&norm, x.clone());
        let burns = norm.forward(x);
        let diff: f32 = (ours - burns).abs().max().into_scalar();
        assert!(diff < 1e-5, "facade vs burn's RmsNorm: {diff}");
    }

    #[test]
    fn rope_matches_rotate_half() {
        crate::kernels::simd::on_every_path(|_path| {
            let (batch, heads, seq, hd) = (2, 3, 5, 8);
            let x: Vec<f32> = (0..batch * heads * seq * hd)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let cos: Vec<f32> = (0..batch * seq * hd)
                .map(|i| (i as f32 * 0.11).cos())
                .collect();
            let sin: Vec<f32> = (0..batch * seq * hd)
                .map(|i| (i as f32 * 0.11).sin())
                .collect();
            let got = rope(&x, &cos, &sin, heads, seq, hd);
            for b in 0..batch {
                for h in 0..heads {
                    for t in 0..seq {
                        let row = ((b * heads + h) * seq + t) * hd;
                        let tab = (b * seq + t) * hd;
                        for i in 0..hd {
                            let rotated = if i < hd / 2 {
                                -x[row + i + hd / 2]
                            } else {
                                x[row + i - hd / 2]
                            };
                            let want = x[row + i] * cos[tab + i] + rotated * sin[tab + i];
                            assert!((got[row + i] - want).abs() < 1e-6);
                        }
                    }
                }
            }
        });
    }
}
