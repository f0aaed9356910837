//! Products with many rows (a prompt's projections, a scoring pass's LM head) through the `gemm`
//! crate, called directly into an output this module allocates.
//!
//! burn's flex backend runs the same crate, but it allocates the output as a zeroed byte vector
//! that cubecl's `Bytes` then copies to raise its alignment: a memset and a memcpy of every
//! product's output, 8 % of a 512-token prompt pass in a profile. Here gemm writes the output
//! once (it never reads it: `read_dst` is false), and the vector goes into the tensor as it is.
//! The transposed weight of a tied LM head is read through its strides, without a transposed
//! copy.

#![allow(unsafe_code)] // gemm takes raw pointers and strides; each call says why they are valid

/// How a weight of `k` inputs and `n` outputs lies in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[k, n]` row-major (a projection stored input-major).
    InputMajor,
    /// `[n, k]` row-major (an embedding used as the LM head: `x · wᵀ`).
    OutputMajor,
}

/// Products below this many multiply-adds run on one thread (burn's flex threshold).
const PARALLEL_MACS: usize = 192 * 192 * 192;

/// `x [m, k]` (row-major) times the weight `w` of `k` inputs and `n` outputs laid out as `layout`
/// says; returns `[m, n]` row-major.
pub fn matmul(
    x: &[f32],
    w: &[f32],
    m: usize,
    k: usize,
    n: usize,
    layout: WeightLayout,
) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "gemm::matmul: x is not [m, k]");
    assert_eq!(w.len(), k * n, "gemm::matmul: w does not hold k × n values");
    let len = m * n;
    if k == 0 {
        return vec![0.0; len];
    }
    // Column and row strides of the weight seen as [k, n].
    let (w_cs, w_rs) = match layout {
        WeightLayout::InputMajor => (1, n as isize),
        WeightLayout::OutputMajor => (k as isize, 1),
    };
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        ::gemm::Parallelism::Rayon(0)
    } else {
        ::gemm::Parallelism::None
    };
    let mut out = Vec::<f32>::with_capacity(len);
    // SAFETY: `x` holds m × k values at row stride k, column stride 1, and `w` k × n values at
    // the strides above (lengths asserted), so every element gemm addresses is inside them;
    // `out` has capacity for m × n values at row stride n, column stride 1, and aliases neither
    // input. With `read_dst` false gemm writes every output element and reads none, so after
    // the call all `len` elements are initialized.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            w_cs,
            w_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values;

    /// `x · w` in f64, `w` given `[k, n]` row-major.
    fn reference(x: &[f32], w_kn: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                let a = f64::from(x[i * k + p]);
                for j in 0..n {
                    out[i * n + j] += a * f64::from(w_kn[p * n + j]);
                }
            }
        }
        out
    }

    #[test]
    fn both_layouts_match_an_f64_product_on_odd_and_threaded_shapes() {
        // One small shape on one thread, one above the threshold on rayon's pool.
        for (m, k, n) in [(7, 13, 5), (200, 197, 211), (1, 64, 3)] {
            let x = test_values(m * k, 1);
            let w_kn = test_values(k * n, 2);
            let mut w_nk = vec![0.0f32; k * n];
            for p in 0..k {
                for j in 0..n {
                    w_nk[j * k + p] = w_kn[p * n + j];
                }
            }
            let want = reference(&x, &w_kn, m, k, n);
            for (w, layout) in [
                (&w_kn, WeightLayout::InputMajor),
                (&w_nk, WeightLayout::OutputMajor),
            ] {
                let got = matmul(&x, w, m, k, n, layout);
                assert_eq!(got.len(), m * n);
                for (g, r) in got.iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "{m}×{k}×{n} {layout:?}: {g} vs {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn an_empty_inner_dimension_gives_zeros() {
        assert_eq!(
            matmul(&[], &[], 3, 0, 2, WeightLayout::InputMajor),
            vec![0.0; 6]
        );
    }
}
