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
    let view = |data, [rows, cols]: [usize; 2], stored| match stored {
        Stored::AsIs => View::new(data, rows, cols, cols),
        Stored::Transposed => View::new(data, cols, rows, rows).t(),
    };
    product_of(view(a, [m, k], a_stored), view(b, [k, n], b_stored))
}

/// `a · b` of two views into a fresh row-major `[m, n]` output, on rayon's pool from
/// `PARALLEL_MACS` multiply-adds. Panics when the inner dimensions differ.
pub fn product_of(a: View<'_>, b: View<'_>) -> Vec<f32> {
    let ((m, k), (k2, n)) = (a.logical(), b.logical());
    assert_eq!(k, k2, "gemm::product: inner dimensions differ");
    let len = m * n;
    if k == 0 || len == 0 {
        return vec![0.0; len];
    }
    let parallel = m.saturating_mul(n).saturating_mul(k) >= PARALLEL_MACS;
    let mut out = Vec::<f32>::with_capacity(len);
    // SAFETY: `View::new` checked that each operand's storage holds every element its strides
    // address; `out` has capacity for m × n values at row stride n, column stride 1, and aliases
    // neither input. With `read_dst` false gemm writes every output element and reads none, so
    // after the call all `len` elements are initialized.
    unsafe {
        call(
            out.as_mut_ptr(),
            n,
            false,
            (a.data.as_ptr(), a.strides()),
            (b.data.as_ptr(), b.strides()),
            [m, k, n],
            parallel,
        );
        out.set_len(len);
    }
    out
}

/// Values a `rows × cols` matrix spans at row stride `stride`.
fn span(rows: usize, cols: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    }
}

/// A matrix read in place: `rows × cols` values of which row `i` starts at `data[i · stride]`,
/// stored as [`Stored`] says (a transposed operand's `rows` and `cols` are those of its storage).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
    pub stored: Stored,
}

impl<'a> View<'a> {
    /// The `rows × cols` matrix at the start of `data`, rows `stride` apart.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        let need = span(rows, cols, stride);
        assert!(
            cols <= stride && data.len() >= need,
            "gemm::View: {rows} × {cols} at stride {stride} needs {need} values, has {}",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            stride,
            stored: Stored::AsIs,
        }
    }

    /// The same storage read as stored: [`Stored::Transposed`] reads its transpose.
    pub fn read_as(self, stored: Stored) -> Self {
        Self { stored, ..self }
    }

    /// The same storage read as its transpose.
    pub fn t(self) -> Self {
        self.read_as(Stored::Transposed)
    }

    /// `(rows, cols)` as the product reads it.
    pub fn logical(&self) -> (usize, usize) {
        match self.stored {
            Stored::AsIs => (self.rows, self.cols),
            Stored::Transposed => (self.cols, self.rows),
        }
    }

    /// Column and row strides as the product reads it.
    fn strides(&self) -> (isize, isize) {
        match self.stored {
            Stored::AsIs => (1, self.stride as isize),
            Stored::Transposed => (self.stride as isize, 1),
        }
    }
}

/// `out = a · b`, or with `accumulate` `out += a · b`, on the calling thread, for the small
/// products that callers already run in parallel (attention blocks): `out` holds the `[m, n]`
/// result at row stride `out_stride`.
pub fn product_into(
    out: &mut [f32],
    out_stride: usize,
    accumulate: bool,
    a: View<'_>,
    b: View<'_>,
) {
    let ((m, k), (k2, n)) = (a.logical(), b.logical());
    assert_eq!(k, k2, "gemm::product_into: inner dimensions differ");
    let need = span(m, n, out_stride);
    assert!(
        n <= out_stride && out.len() >= need,
        "gemm::product_into: the output holds {} values, [{m}, {n}] at stride {out_stride} needs {need}",
        out.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in out.chunks_mut(out_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: `View::new` checked that each operand's storage holds every element its strides
    // address, and the assertion above that `out` holds the `[m, n]` result at its stride; `out`
    // is a unique borrow, so it aliases neither operand.
    unsafe {
        call(
            out.as_mut_ptr(),
            out_stride,
            accumulate,
            (a.data.as_ptr(), a.strides()),
            (b.data.as_ptr(), b.strides()),
            [m, k, n],
            false,
        );
    }
}

/// gemm's `dst [m, n] (+)= a [m, k] · b [k, n]`, `dst` row-major at row stride `dst_rs`, each
/// operand given as a pointer with its (column, row) strides.
///
/// # Safety
/// Every element the strides address inside `[m, k]`, `[k, n]` and `[m, n]` must be valid for
/// reads (operands) and writes (`dst`, and reads too with `accumulate`), and `dst` must not
/// overlap an operand.
unsafe fn call(
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    (a, (a_cs, a_rs)): (*const f32, (isize, isize)),
    (b, (b_cs, b_rs)): (*const f32, (isize, isize)),
    [m, k, n]: [usize; 3],
    parallel: bool,
) {
    let parallelism = if parallel {
        ::gemm::Parallelism::Rayon(0)
    } else {
        ::gemm::Parallelism::None
    };
    // SAFETY: the caller's contract.
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            a,
            a_cs,
            a_rs,
            b,
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
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
    fn strided_views_write_or_accumulate_into_a_strided_output() {
        let (m, k, n) = (9, 13, 6);
        // a [m, k] inside rows of 17, b stored transposed ([n, k]) inside rows of 15, the output
        // [m, n] inside rows of 8 whose last two columns must stay untouched.
        let a_store = test_values(m * 17, 4);
        let b_store = test_values(n * 15, 5);
        let a: Vec<f32> = (0..m * k).map(|i| a_store[i / k * 17 + i % k]).collect();
        let b: Vec<f32> = (0..k * n).map(|i| b_store[i % n * 15 + i / n]).collect();
        let want = reference(&a, &b, m, k, n);
        for accumulate in [false, true] {
            let mut out = vec![0.5f32; m * 8];
            let a_view = View::new(&a_store, m, k, 17);
            let b_view = View::new(&b_store, n, k, 15).t();
            product_into(&mut out, 8, accumulate, a_view, b_view);
            for (i, row) in out.chunks(8).enumerate() {
                for (j, &got) in row.iter().enumerate() {
                    let w = match j < n {
                        true => want[i * n + j] + if accumulate { 0.5 } else { 0.0 },
                        false => 0.5,
                    };
                    assert!(
                        (f64::from(got) - w).abs() < 1e-5,
                        "[{i}, {j}]: {got} vs {w}"
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
