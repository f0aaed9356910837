//! Products with many rows (a prompt's projections, a scoring pass's LM head) through the `gemm`
//! crate, called directly into an output this module allocates.
//!
//! burn's flex backend runs the same crate, but it allocates the output as a zeroed byte vector
//! that cubecl's `Bytes` then copies to raise its alignment: a memset and a memcpy of every
//! product's output, 8 % of a 512-token prompt pass in a profile. Here gemm writes the output
//! once (it never reads it: `read_dst` is false), and the vector goes into the tensor as it is.
//! Transposed operands (the tied LM head, and the two gradients of a product under autodiff:
//! `∂x = g · wᵀ`, `∂w = xᵀ · g`) are read through their strides, without a transposed copy.

#![allow(unsafe_code)] // gemm takes raw pointers and strides; each call says why they are valid

/// How an operand of a product lies in memory, row-major either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// As the product reads it: `a [m, k]`, `b [k, n]`.
    AsIs,
    /// Transposed: `a` stored `[k, m]`, `b` stored `[n, k]` (an embedding used as the LM head,
    /// a weight in the input gradient, the activations in the weight gradient).
    Transposed,
}

/// Products below this many multiply-adds run on one thread (burn's flex threshold).
const PARALLEL_MACS: usize = 192 * 192 * 192;

/// `a [m, k] · b [k, n]`, each operand stored as its [`Stored`] says; returns `[m, n]`
/// row-major.
pub fn product(
    (a, a_stored): (&[f32], Stored),
    (b, b_stored): (&[f32], Stored),
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f32> {
    assert_eq!(
        a.len(),
        m * k,
        "gemm::product: a does not hold m × k values"
    );
    assert_eq!(
        b.len(),
        k * n,
        "gemm::product: b does not hold k × n values"
    );
    let len = m * n;
    if k == 0 || len == 0 {
        return vec![0.0; len];
    }
    // Column and row strides of each operand as the product reads it.
    let (a_cs, a_rs) = match a_stored {
        Stored::AsIs => (1, k as isize),
        Stored::Transposed => (m as isize, 1),
    };
    let (b_cs, b_rs) = match b_stored {
        Stored::AsIs => (1, n as isize),
        Stored::Transposed => (k as isize, 1),
    };
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS {
        ::gemm::Parallelism::Rayon(0)
    } else {
        ::gemm::Parallelism::None
    };
    let mut out = Vec::<f32>::with_capacity(len);
    // SAFETY: `a` holds m × k values and `b` k × n (asserted), and the strides above address
    // exactly those, so every element gemm reads is inside them; `out` has capacity for m × n
    // values at row stride n, column stride 1, and aliases neither input. With `read_dst` false
    // gemm writes every output element and reads none, so after the call all `len` elements are
    // initialized.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
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

    /// `a [m, k] · b [k, n]` in f64.
    fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                let x = f64::from(a[i * k + p]);
                for j in 0..n {
                    out[i * n + j] += x * f64::from(b[p * n + j]);
                }
            }
        }
        out
    }

    /// `v` stored `[rows, cols]`, returned stored `[cols, rows]`.
    fn transposed(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0.0f32; v.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = v[r * cols + c];
            }
        }
        t
    }

    #[test]
    fn every_storage_matches_an_f64_product_on_odd_and_threaded_shapes() {
        // Small shapes on one thread, one above the threshold on rayon's pool.
        for (m, k, n) in [(7, 13, 5), (200, 197, 211), (1, 64, 3)] {
            let a = test_values(m * k, 1);
            let b = test_values(k * n, 2);
            let (a_t, b_t) = (transposed(&a, m, k), transposed(&b, k, n));
            let want = reference(&a, &b, m, k, n);
            for (a_op, b_op) in [
                ((&a, Stored::AsIs), (&b, Stored::AsIs)),
                ((&a, Stored::AsIs), (&b_t, Stored::Transposed)),
                ((&a_t, Stored::Transposed), (&b, Stored::AsIs)),
                ((&a_t, Stored::Transposed), (&b_t, Stored::Transposed)),
            ] {
                let got = product((a_op.0, a_op.1), (b_op.0, b_op.1), m, k, n);
                assert_eq!(got.len(), m * n);
                for (g, r) in got.iter().zip(&want) {
                    assert!(
                        (f64::from(*g) - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "{m}×{k}×{n} {:?}·{:?}: {g} vs {r}",
                        a_op.1,
                        b_op.1
                    );
                }
            }
        }
    }

    #[test]
    fn empty_dimensions_give_zeros_or_nothing() {
        let empty: &[f32] = &[];
        assert_eq!(
            product((empty, Stored::AsIs), (empty, Stored::AsIs), 3, 0, 2),
            vec![0.0; 6]
        );
        let b = test_values(4 * 5, 3);
        assert!(product((empty, Stored::AsIs), (&b, Stored::AsIs), 0, 4, 5).is_empty());
    }
}
