//! Fused and specialised CPU kernels, plugged into burn as backend extensions
//! (`#[backend_extension]`): flex runs the kernels here on the raw f32 data; under autodiff the
//! fused kernels (silu·up, RoPE, the token loss, the attention softmax) are single graph nodes
//! with hand-written backward passes (`autodiff`), and the small-row products run the trait's
//! default body of ordinary burn ops. The bottom layer of the engine: it names nothing above it.
//!
//! The model calls [`fused`], the facade: each of its functions takes these kernels where the
//! device's backend has them and composes burn ops everywhere else, so no model code asks which
//! backend it runs on. A backend added later gets the composed bodies until it lists itself in
//! the extension attributes below with kernels of its own.
//!
//! - [`fused`]: the facade (silu·up, RoPE, the token loss, projections, attention per pass).
//! - [`gemv`]: matrix products with few rows (decode), bound by reading the weights once.
//! - [`gemm`]: products with many rows (prompts) through the `gemm` crate into outputs it
//!   allocates itself, without burn's zeroed-and-copied output.
//! - `crew`: the threads those products and decode attention run on, awake between a decode
//!   step's many short parallel regions (rayon's sleep and wake-up cost a tenth of each step).
//! - [`elementwise`]: SwiGLU's `silu(gate) · up` and RoPE in one pass each way, RMSNorm in one
//!   pass at inference, and the vectorizable `exp` and `exp2` they, the loss and the token
//!   statistics share.
//! - [`attention`]: one new query per sequence against the KV cache, read in place (decode).
//! - [`loss`]: the language-model loss over the vocabulary and its gradient, fused.
//! - [`softmax`]: attention probabilities of training passes (scale, mask, softmax) and their
//!   gradient, one pass each.
//! - [`token_stats`]: log-sum-exp, entropy and top-k of logits rows in one pass, with the
//!   lane width and lane-wise maximum the other kernels share.
//! - [`simd`]: the instruction-set path the kernels take (`STUDIO_SIMD` caps it).

pub mod attention;
mod autodiff;
mod crew;
pub mod device_stats;
pub mod elementwise;
pub mod fused;
pub mod gemm;
pub mod gemv;
pub mod loss;
pub mod simd;
pub mod softmax;
pub mod token_stats;

/// Runs a kernel body inside a function compiled for the instruction set [`simd::current`]
/// names (the best this CPU has: AVX-512, AVX2+FMA, NEON or the baseline, unless `STUDIO_SIMD`
/// caps it), dispatched by `pulp`. The body must be
/// `#[inline(always)]` so it is compiled for those features; a closure is not (it stays a
/// separate function for the baseline target). `Name(simd) { … }` names the `pulp::Simd` value,
/// for bodies written with pulp's explicit vector operations.
macro_rules! simd_kernel {
    ($name:ident { $($field:ident : $ty:ty),* $(,)? } => $body:expr) => {
        $crate::kernels::simd_kernel!($name { $($field: $ty),* } -> () => $body)
    };
    ($name:ident { $($field:ident : $ty:ty),* $(,)? } -> $out:ty => $body:expr) => {
        $crate::kernels::simd_kernel!($name(_simd) { $($field: $ty),* } -> $out => $body)
    };
    ($name:ident($simd:ident) { $($field:ident : $ty:ty),* $(,)? } -> $out:ty => $body:expr) => {{
        struct $name<'a> { $($field: $ty,)* _life: std::marker::PhantomData<&'a ()> }
        impl pulp::WithSimd for $name<'_> {
            type Output = $out;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, $simd: S) -> $out {
                let Self { $($field,)* .. } = self;
                $body
            }
        }
        $crate::kernels::simd::arch()
            .dispatch($name { $($field,)* _life: std::marker::PhantomData })
    }};
}
pub(crate) use simd_kernel;

pub use fused::{
    AttentionMask, AttentionPass, Keys, PassShape, matmul, matmul_many, matmul_nt, padding_mask,
    rms_norm, rope, silu_mul, token_nll,
};

use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension};
use burn::tensor::{DType, TensorData};
use gemm::Stored;

/// Runs `f` on a thread of rayon's pool (inline when already on one). A model pass issues
/// hundreds of parallel kernels; started from an outside thread, each of them parks that thread
/// and wakes the pool (≈ 10 % of a decode step here), while from a pool thread they are pushed
/// on its own queue and the other workers are still spinning from the previous one.
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Rows up to which a product goes through [`gemv`] instead of the GEMM: above it, a blocked
/// GEMM reuses each weight from cache across enough rows to win. Where the `gemm` crate runs its
/// AVX-512 kernels that is past 8 rows; with its AVX2 kernels the bandwidth-bound kernel still
/// wins at 16 (decode at batch 16 on AVX2: 123 tokens/s through gemm, 174 through [`gemv`]; on
/// AVX-512 gemm 180, gemv 160; Intel Xeon VM). NEON and the baseline take 16 as AVX2 does,
/// unmeasured.
pub fn small_rows() -> usize {
    if simd::gemm_path() == "avx512" { 8 } else { 16 }
}

/// The engine's own operations, on flex and under autodiff (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait CpuKernels: Backend {
    /// `x [m, k] · w [k, n]` for small `m`.
    fn matmul_small(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, w)
    }

    /// `x [m, k] · w [n, k]ᵀ` for small `m` (the tied LM head reads the embedding this way).
    fn matmul_small_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, Self::float_transpose(w))
    }

    /// `x [m, k] · w [k, n]` for many rows: [`gemm::product`] on flex (no zeroed and copied
    /// output), and under autodiff one node whose two gradients are [`gemm::product`]s too.
    fn matmul_large(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, w)
    }

    /// `x [m, k] · w [n, k]ᵀ` for many rows, the transpose read through strides on flex.
    fn matmul_large_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(x, Self::float_transpose(w))
    }

    /// [`elementwise::silu_mul`]: `silu(gate) · up`, same shapes.
    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;

    /// [`elementwise::rope`]: `x [batch, heads, seq, head_dim]` rotated with the
    /// `[batch, 1, seq, head_dim]` cos and sin tables (differentiable with respect to `x`).
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// [`loss::token_nll`]: the negative log-likelihood `[rows]` of `targets` under
    /// `logits [rows, vocab]`, without a log-softmax copy.
    fn token_nll(logits: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self>;

    /// [`softmax::masked_softmax`]: `softmax(scale · scores)` over the last axis of
    /// `scores [batch, heads, q, k]`, with `hidden` a `[batch, q, k]` mask (`true` = hidden,
    /// shared by the heads).
    fn attention_softmax(
        scores: FloatTensor<Self>,
        hidden: Vec<bool>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// [`attention::causal_attention`]: `q [batch, kv_heads, group · queries, head_dim]` (the
    /// query heads that share a key/value head stacked along the query axis) against
    /// `k, v [batch, kv_heads, keys, head_dim]`, query `i` of sequence `b` seeing keys
    /// `first[b · queries + i]..=i + keys − queries` (`first` empty: from 0), scores scaled by
    /// `scale`; shaped like `q`.
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: Vec<usize>,
        queries: usize,
        scale: f32,
    ) -> FloatTensor<Self>;
}

/// Inference-only kernels with no composed equivalent worth keeping: flex only ([`fused`] calls
/// them only on flex without autodiff).
#[backend_extension(Flex)]
pub trait InferenceKernels: Backend {
    /// [`attention::decode_attention`] over tensors: `q [batch, heads, 1, head_dim]`, the cache
    /// buffers `[batch, kv_heads, capacity, head_dim]`, `len` valid positions, `pads[b]` hidden
    /// leading positions of sequence `b`.
    fn decode_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        len: usize,
        pads: Vec<usize>,
    ) -> FloatTensor<Self>;

    /// [`elementwise::rms_norm`]: each row of `x [.., d]` over its root mean square, times
    /// `gamma [d]`.
    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self>;

    /// [`gemv::matmul_nn_many`] over two weights (a SwiGLU's gate and up).
    fn matmul_small_pair(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// [`gemv::matmul_nn_many`] over three weights (attention's q, k and v).
    fn matmul_small_triple(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

/// Kernels of the GPU runtimes (burn's cubecl backend: wgpu, and CUDA where it is compiled in),
/// written once in CubeCL. [`fused`] calls them only on a cubecl device.
#[backend_extension(Cube)]
pub trait DeviceKernels: Backend {
    /// [`device_stats`]: `[rows, 3 + 2k]` per row of `logits [rows, vocab]`: log-sum-exp,
    /// entropy, the log-probability of `targets[row]` (0 for `u32::MAX`), the top-k
    /// log-probabilities and their ids (as f32).
    fn token_stats(logits: FloatTensor<Self>, targets: Vec<u32>, k: usize) -> FloatTensor<Self>;
}

/// The f32 values of a flex tensor in row-major order, with its shape. The engine builds every
/// float tensor in f32, so another dtype is a bug, not an input error.
fn flex_f32(t: FlexTensor) -> (FlexTensor, Vec<usize>) {
    assert_eq!(t.dtype(), DType::F32, "engine kernels take f32 tensors");
    let shape = t.layout().shape().to_vec();
    let t = if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    };
    (t, shape)
}

/// The values of a tensor [`flex_f32`] returned.
fn values(t: &FlexTensor) -> &[f32] {
    match t.as_slice::<f32>() {
        Some(v) => v,
        None => unreachable!("flex_f32 returns contiguous f32 tensors"),
    }
}

/// Deterministic test values in [-1, 1) (a multiplicative hash of the index).
#[cfg(test)]
pub(crate) fn test_values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (h % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

impl InferenceKernels for Flex {
    fn decode_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        len: usize,
        pads: Vec<usize>,
    ) -> FloatTensor<Self> {
        let (q, q_shape) = flex_f32(q);
        let (k, k_shape) = flex_f32(k);
        let (v, _) = flex_f32(v);
        let [batch, heads, one, head_dim] = q_shape[..] else {
            panic!("decode_attention: q must be 4-d")
        };
        let [_, kv_heads, capacity, _] = k_shape[..] else {
            panic!("decode_attention: k must be 4-d")
        };
        assert_eq!(one, 1, "decode_attention takes one query per sequence");
        let shape = attention::DecodeShape {
            batch,
            heads,
            kv_heads,
            head_dim,
            capacity,
            len,
        };
        let out = attention::decode_attention(values(&q), values(&k), values(&v), &pads, shape);
        FlexTensor::from_data(TensorData::new(out, [batch, heads, 1, head_dim]))
    }

    fn rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, epsilon: f32) -> FloatTensor<Self> {
        let (x, shape) = flex_f32(x);
        let (gamma, _) = flex_f32(gamma);
        let out = elementwise::rms_norm(values(&x), values(&gamma), epsilon);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn matmul_small_pair(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let mut outs = flex_matmul_many(x, vec![a, b]).into_iter();
        match (outs.next(), outs.next()) {
            (Some(a), Some(b)) => (a, b),
            _ => unreachable!("one product per weight"),
        }
    }

    fn matmul_small_triple(
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        c: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let mut outs = flex_matmul_many(x, vec![a, b, c]).into_iter();
        match (outs.next(), outs.next(), outs.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => unreachable!("one product per weight"),
        }
    }
}

/// The contiguous values of `q`, `k` and `v` for [`attention::causal_attention`], with its shape.
fn flex_causal(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    queries: usize,
) -> ((FlexTensor, FlexTensor, FlexTensor), attention::CausalShape) {
    let (q, q_shape) = flex_f32(q);
    let (k, k_shape) = flex_f32(k);
    let (v, _) = flex_f32(v);
    let (&[batch, kv_heads, rows, head_dim], &[_, _, keys, _]) = (&q_shape[..], &k_shape[..])
    else {
        panic!("causal_attention: q, k and v must be 4-d")
    };
    assert!(
        queries > 0 && rows % queries == 0,
        "causal_attention: {rows} stacked rows are not whole heads of {queries} queries"
    );
    let shape = attention::CausalShape {
        batch,
        kv_heads,
        group: rows / queries,
        queries,
        keys,
        head_dim,
    };
    ((q, k, v), shape)
}

/// [`elementwise::rope`] on flex tensors, or with `transpose` its gradient
/// ([`elementwise::rope_backward`]) given the output gradient as `x`.
fn flex_rope(x: FlexTensor, cos: FlexTensor, sin: FlexTensor, transpose: bool) -> FlexTensor {
    let (x, shape) = flex_f32(x);
    let (cos, _) = flex_f32(cos);
    let (sin, _) = flex_f32(sin);
    let [_, heads, seq, hd] = shape[..] else {
        panic!("rope: x must be 4-d")
    };
    let (x, cos, sin) = (values(&x), values(&cos), values(&sin));
    let out = if transpose {
        elementwise::rope_backward(x, cos, sin, heads, seq, hd)
    } else {
        elementwise::rope(x, cos, sin, heads, seq, hd)
    };
    FlexTensor::from_data(TensorData::new(out, shape))
}

/// [`gemv::matmul_nn_many`] on flex tensors.
fn flex_matmul_many(x: FlexTensor, ws: Vec<FlexTensor>) -> Vec<FlexTensor> {
    let (x, x_shape) = flex_f32(x);
    let [m, k] = x_shape[..] else {
        panic!("matmul_small_many: x must be 2-d")
    };
    let ws: Vec<(FlexTensor, usize)> = ws
        .into_iter()
        .map(|w| {
            let (w, shape) = flex_f32(w);
            assert!(
                shape.len() == 2 && shape[0] == k,
                "matmul_small_many: a weight is not [k, n]"
            );
            (w, shape[1])
        })
        .collect();
    let views: Vec<(&[f32], usize)> = ws.iter().map(|(w, n)| (values(w), *n)).collect();
    gemv::matmul_nn_many(values(&x), &views, m, k)
        .into_iter()
        .zip(&views)
        .map(|(out, &(_, n))| flex_from(out, m, n))
        .collect()
}

/// A contiguous f32 `[rows, cols]` view of a flex tensor, copying only when it is strided.
fn flex_2d(t: FlexTensor) -> Option<(FlexTensor, usize, usize)> {
    if t.dtype() != DType::F32 || t.layout().shape().num_dims() != 2 {
        return None;
    }
    let (t, shape) = flex_f32(t);
    Some((t, shape[0], shape[1]))
}

/// `a · b` of two 2-d tensors, each stored as its [`Stored`] says, through [`gemm::product_of`]
/// (no transposed copy); burn's matmul of the transposed views when either is not a 2-d f32
/// tensor. Panics when the inner dimensions differ.
fn flex_product(a: FlexTensor, a_stored: Stored, b: FlexTensor, b_stored: Stored) -> FlexTensor {
    match (flex_2d(a.clone()), flex_2d(b.clone())) {
        (Some((at, ar, ac)), Some((bt, br, bc))) => {
            let a_view = gemm::View::new(values(&at), ar, ac, ac).read_as(a_stored);
            let b_view = gemm::View::new(values(&bt), br, bc, bc).read_as(b_stored);
            let (m, n) = (a_view.logical().0, b_view.logical().1);
            flex_from(gemm::product_of(a_view, b_view), m, n)
        }
        _ => {
            let view = |t, stored| match stored {
                Stored::AsIs => t,
                Stored::Transposed => Flex::float_transpose(t),
            };
            Flex::float_matmul(view(a, a_stored), view(b, b_stored))
        }
    }
}

fn flex_from(values: Vec<f32>, rows: usize, cols: usize) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, [rows, cols]))
}

impl CpuKernels for Flex {
    fn matmul_large(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_product(x, Stored::AsIs, w, Stored::AsIs)
    }

    fn matmul_large_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        flex_product(x, Stored::AsIs, w, Stored::Transposed)
    }

    fn matmul_small(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        match (flex_2d(x.clone()), flex_2d(w.clone())) {
            (Some((xt, m, k)), Some((wt, k2, n))) if k == k2 => {
                flex_from(gemv::matmul_nn(values(&xt), values(&wt), m, k, n), m, n)
            }
            _ => Self::float_matmul(x, w),
        }
    }

    fn matmul_small_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        match (flex_2d(x.clone()), flex_2d(w.clone())) {
            (Some((xt, m, k)), Some((wt, n, k2))) if k == k2 => {
                flex_from(gemv::matmul_nt(values(&xt), values(&wt), m, k, n), m, n)
            }
            _ => Self::float_matmul(x, Self::float_transpose(w)),
        }
    }

    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let (gate, shape) = flex_f32(gate);
        let (up, up_shape) = flex_f32(up);
        assert_eq!(shape, up_shape, "silu_mul: shapes differ");
        let out = elementwise::silu_mul(values(&gate), values(&up));
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        flex_rope(x, cos, sin, false)
    }

    fn token_nll(logits: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self> {
        <Self as autodiff::KernelGrads>::token_nll_with_lse(logits, &targets).0
    }

    fn attention_softmax(
        scores: FloatTensor<Self>,
        hidden: Vec<bool>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let (mut scores, shape) = flex_f32(scores);
        let [b, h, q, k] = shape[..] else {
            panic!("attention_softmax: scores must be 4-d")
        };
        // In place when the scores are this pass's own (a product's fresh output, as in every
        // attention pass): a contiguous tensor whose storage holds exactly its elements.
        if let Some(own) = scores.try_storage_mut::<f32>()
            && own.len() == b * h * q * k
        {
            softmax::masked_softmax_in_place(own, [b, h, q, k], &hidden, scale);
            return scores;
        }
        let out = softmax::masked_softmax(values(&scores), [b, h, q, k], &hidden, scale);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: Vec<usize>,
        queries: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        let with_probs = <Self as autodiff::KernelGrads>::causal_attention_with_probs;
        with_probs(q, k, v, &first, queries, scale, false).0
    }
}

/// Calls into the extensions above, on tensors. [`fused`] decides where they apply.
pub(crate) mod ext {
    use burn::backend::Dispatch;
    use burn::tensor::Tensor;

    use super::{CpuKernels, DeviceKernels, InferenceKernels};

    /// Token statistics of each logits row on a GPU runtime (see [`DeviceKernels`]).
    pub(crate) fn device_token_stats(logits: Tensor<2>, targets: Vec<u32>, k: usize) -> Tensor<2> {
        Tensor::from_dispatch(<Dispatch as DeviceKernels>::token_stats(
            logits.into_dispatch(),
            targets,
            k,
        ))
    }

    /// `silu(gate) · up` in one pass, differentiable (see [`CpuKernels`]).
    pub(crate) fn silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::silu_mul(
            gate.into_dispatch(),
            up.into_dispatch(),
        ))
    }

    /// RoPE's half rotation in one pass, differentiable with respect to `x` (see [`CpuKernels`]).
    pub(crate) fn rope(x: Tensor<4>, cos: Tensor<4>, sin: Tensor<4>) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::rope(
            x.into_dispatch(),
            cos.into_dispatch(),
            sin.into_dispatch(),
        ))
    }

    /// RMSNorm of the last axis in one pass (flex inference only; see [`InferenceKernels`]).
    pub(crate) fn rms_norm<const D: usize>(
        x: Tensor<D>,
        gamma: Tensor<1>,
        epsilon: f32,
    ) -> Tensor<D> {
        Tensor::from_dispatch(<Dispatch as InferenceKernels>::rms_norm(
            x.into_dispatch(),
            gamma.into_dispatch(),
            epsilon,
        ))
    }

    /// Decode attention over the KV cache buffers, read in place (see [`InferenceKernels`]).
    pub(crate) fn decode_attention(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        len: usize,
        pads: &[usize],
    ) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as InferenceKernels>::decode_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            len,
            pads.to_vec(),
        ))
    }

    /// The negative log-likelihood `[rows]` of `targets` under `logits [rows, vocab]`,
    /// differentiable with respect to the logits (see [`CpuKernels`]).
    pub(crate) fn token_nll(logits: Tensor<2>, targets: Vec<u32>) -> Tensor<1> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::token_nll(
            logits.into_dispatch(),
            targets,
        ))
    }

    /// Attention probabilities `softmax(scale · scores)` over `scores [batch, heads, q, k]`, keys
    /// hidden by `hidden` (`[batch, q, k]`, shared by the heads) at 0;
    /// differentiable (see [`CpuKernels`]).
    pub(crate) fn attention_softmax(scores: Tensor<4>, hidden: Vec<bool>, scale: f32) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::attention_softmax(
            scores.into_dispatch(),
            hidden,
            scale,
        ))
    }

    /// Causal attention of `q [batch, kv_heads, group · queries, head_dim]` (query heads stacked
    /// per key/value head) over `k, v [batch, kv_heads, keys, head_dim]`, each query seeing the
    /// keys from `first` (empty: 0) to its own position, differentiable (see [`CpuKernels`]).
    pub(crate) fn causal_attention(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        first: Vec<usize>,
        queries: usize,
        scale: f32,
    ) -> Tensor<4> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::causal_attention(
            q.into_dispatch(),
            k.into_dispatch(),
            v.into_dispatch(),
            first,
            queries,
            scale,
        ))
    }

    /// `x [m, k] · wᵢ [k, nᵢ]` for several weights in one pass (flex inference only; see
    /// [`InferenceKernels`]).
    pub(crate) fn matmul_small_many(x: Tensor<2>, ws: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
        let x = x.into_dispatch();
        let mut ws = ws.into_iter().map(Tensor::into_dispatch);
        let outs = match (ws.next(), ws.next(), ws.next(), ws.next()) {
            (Some(a), Some(b), None, None) => {
                let (a, b) = <Dispatch as InferenceKernels>::matmul_small_pair(x, a, b);
                vec![a, b]
            }
            (Some(a), Some(b), Some(c), None) => {
                let (a, b, c) = <Dispatch as InferenceKernels>::matmul_small_triple(x, a, b, c);
                vec![a, b, c]
            }
            _ => panic!("matmul_small_many takes two or three weights"),
        };
        outs.into_iter().map(Tensor::from_dispatch).collect()
    }

    /// `x [m, k] · w [k, n]`, through [`gemv::matmul_nn`] on flex when `m` is small.
    pub(crate) fn matmul_small(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::matmul_small(
            x.into_dispatch(),
            w.into_dispatch(),
        ))
    }

    /// `x [m, k] · w [n, k]ᵀ`, through [`gemv::matmul_nt`] on flex when `m` is small.
    pub(crate) fn matmul_small_nt(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::matmul_small_nt(
            x.into_dispatch(),
            w.into_dispatch(),
        ))
    }

    /// `x [m, k] · w [k, n]`, through [`gemm::product`] on flex.
    pub(crate) fn matmul_large(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::matmul_large(
            x.into_dispatch(),
            w.into_dispatch(),
        ))
    }

    /// `x [m, k] · w [n, k]ᵀ`, through [`gemm::product`] on flex.
    pub(crate) fn matmul_large_nt(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
        Tensor::from_dispatch(<Dispatch as CpuKernels>::matmul_large_nt(
            x.into_dispatch(),
            w.into_dispatch(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, Tensor};

    fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn extension_matches_burn_matmul_on_flex_and_autodiff() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            let x = Tensor::<2>::random([3, 96], Distribution::Uniform(-1.0, 1.0), &device);
            let w = Tensor::<2>::random([96, 40], Distribution::Uniform(-1.0, 1.0), &device);
            let e = Tensor::<2>::random([40, 96], Distribution::Uniform(-1.0, 1.0), &device);
            let nn = ext::matmul_small(x.clone(), w.clone());
            assert!(max_diff(nn, x.clone().matmul(w)) < 1e-4);
            let nt = ext::matmul_small_nt(x.clone(), e.clone());
            assert!(max_diff(nt, x.matmul(e.transpose())) < 1e-4);
        }
    }

    #[test]
    fn extension_reads_strided_inputs() {
        let device = Device::flex();
        let x = Tensor::<2>::random([96, 2], Distribution::Uniform(-1.0, 1.0), &device);
        let w = Tensor::<2>::random([96, 40], Distribution::Uniform(-1.0, 1.0), &device);
        let got = ext::matmul_small(x.clone().transpose(), w.clone());
        assert!(max_diff(got, x.transpose().matmul(w)) < 1e-4);
    }
}
