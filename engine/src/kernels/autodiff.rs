//! Hand-written backward passes for the fused kernels, so training runs them as single nodes of
//! burn's autodiff graph instead of the chain of element-wise ops (and their saved temporaries)
//! the composed forms would record.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};
use burn::tensor::TensorData;

use super::gemm::Stored;
use super::{
    CpuKernels, attention, elementwise, flex_causal, flex_f32, flex_product, loss, softmax, values,
};

/// The gradients of the fused kernels, on the backend that runs them.
pub trait KernelGrads: Backend {
    /// `(∂gate, ∂up)` of `silu(gate) · up` given the output gradient.
    fn silu_mul_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `∂x` of RoPE given the output gradient.
    fn rope_backward(
        grad: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self>;

    /// The negative log-likelihoods `[rows]` with each row's log-sum-exp.
    fn token_nll_with_lse(
        logits: FloatTensor<Self>,
        targets: &[u32],
    ) -> (FloatTensor<Self>, Vec<f32>);

    /// `∂scores` of the attention probabilities `probs` given their gradient.
    fn attention_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `a · b` of two 2-d tensors, each stored as given (the gradients of a product read the
    /// other operand transposed, without a transposed copy).
    fn product(
        a: FloatTensor<Self>,
        a_stored: Stored,
        b: FloatTensor<Self>,
        b_stored: Stored,
    ) -> FloatTensor<Self>;

    /// [`CpuKernels::causal_attention`], and with `keep_probs` the probabilities its gradient
    /// reads.
    #[allow(clippy::too_many_arguments)]
    fn causal_attention_with_probs(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: &[usize],
        queries: usize,
        scale: f32,
        keep_probs: bool,
    ) -> (FloatTensor<Self>, Vec<f32>);

    /// `(∂q, ∂k, ∂v)` of [`CpuKernels::causal_attention`] given its output gradient and the
    /// probabilities it kept.
    #[allow(clippy::too_many_arguments)]
    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: &[usize],
        probs: &[f32],
        grad: FloatTensor<Self>,
        queries: usize,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `∂logits` of `Σ grad[i] · nll[i]`.
    fn token_nll_backward(
        logits: FloatTensor<Self>,
        lse: &[f32],
        targets: &[u32],
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl KernelGrads for Flex {
    fn product(
        a: FloatTensor<Self>,
        a_stored: Stored,
        b: FloatTensor<Self>,
        b_stored: Stored,
    ) -> FloatTensor<Self> {
        flex_product(a, a_stored, b, b_stored)
    }

    fn silu_mul_backward(
        gate: FloatTensor<Self>,
        up: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (gate, shape) = flex_f32(gate);
        let (up, _) = flex_f32(up);
        let (grad, _) = flex_f32(grad);
        let (dg, du) = elementwise::silu_mul_backward(values(&gate), values(&up), values(&grad));
        (
            FlexTensor::from_data(TensorData::new(dg, shape.clone())),
            FlexTensor::from_data(TensorData::new(du, shape)),
        )
    }

    fn rope_backward(
        grad: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        super::flex_rope(grad, cos, sin, true)
    }

    fn token_nll_with_lse(
        logits: FloatTensor<Self>,
        targets: &[u32],
    ) -> (FloatTensor<Self>, Vec<f32>) {
        let (logits, shape) = flex_f32(logits);
        let [rows, vocab] = shape[..] else {
            panic!("token_nll: logits must be [rows, vocab]")
        };
        let (nll, lse) = loss::token_nll(values(&logits), vocab, targets);
        (FlexTensor::from_data(TensorData::new(nll, [rows])), lse)
    }

    fn attention_softmax_backward(
        probs: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        let (probs, shape) = flex_f32(probs);
        let (grad, _) = flex_f32(grad);
        let k = shape.last().copied().unwrap_or(0);
        let out = softmax::masked_softmax_backward(values(&probs), values(&grad), k, scale);
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn causal_attention_with_probs(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: &[usize],
        queries: usize,
        scale: f32,
        keep_probs: bool,
    ) -> (FloatTensor<Self>, Vec<f32>) {
        let ((q, k, v), s) = flex_causal(q, k, v, queries);
        let (q, k, v) = (values(&q), values(&k), values(&v));
        let (out, probs) = attention::causal_attention(q, k, v, first, s, scale, keep_probs);
        (
            FlexTensor::from_data(TensorData::new(out, s.q_dims())),
            probs,
        )
    }

    fn causal_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: &[usize],
        probs: &[f32],
        grad: FloatTensor<Self>,
        queries: usize,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let ((q, k, v), s) = flex_causal(q, k, v, queries);
        let (grad, _) = flex_f32(grad);
        let (dq, dk, dv) = attention::causal_attention_backward(
            values(&q),
            values(&k),
            values(&v),
            first,
            probs,
            values(&grad),
            s,
            scale,
        );
        (
            FlexTensor::from_data(TensorData::new(dq, s.q_dims())),
            FlexTensor::from_data(TensorData::new(dk, s.kv_dims())),
            FlexTensor::from_data(TensorData::new(dv, s.kv_dims())),
        )
    }

    fn token_nll_backward(
        logits: FloatTensor<Self>,
        lse: &[f32],
        targets: &[u32],
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (logits, shape) = flex_f32(logits);
        let (grad, _) = flex_f32(grad);
        let [rows, vocab] = shape[..] else {
            panic!("token_nll: logits must be [rows, vocab]")
        };
        let out = loss::token_nll_backward(values(&logits), vocab, lse, targets, values(&grad));
        FlexTensor::from_data(TensorData::new(out, [rows, vocab]))
    }
}

#[derive(Debug)]
struct SiluMulBackward;

impl<B: KernelGrads> Backward<B, 2> for SiluMulBackward {
    /// The inputs, `(gate, up)`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (gate, up) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (d_gate, d_up) = B::silu_mul_backward(gate, up, grad);
        let [gate_node, up_node] = ops.parents;
        if let Some(node) = gate_node {
            grads.register::<B>(node.id, d_gate);
        }
        if let Some(node) = up_node {
            grads.register::<B>(node.id, d_up);
        }
    }
}

#[derive(Debug)]
struct RopeBackward;

impl<B: KernelGrads> Backward<B, 1> for RopeBackward {
    /// The tables, `(cos, sin)`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (cos, sin) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [x_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<B>(node.id, B::rope_backward(grad, cos, sin));
        }
    }
}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: KernelGrads> Backward<B, 1> for SoftmaxBackward {
    /// The probabilities and the scale.
    type State = (FloatTensor<B>, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (probs, scale) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [scores_node] = ops.parents;
        if let Some(node) = scores_node {
            grads.register::<B>(node.id, B::attention_softmax_backward(probs, grad, scale));
        }
    }
}

#[derive(Debug)]
struct CausalAttentionBackward;

impl<B: KernelGrads> Backward<B, 3> for CausalAttentionBackward {
    /// The inputs `(q, k, v)`, each query's first key, the kept probabilities, the queries per
    /// head and the scale.
    type State = (
        (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>),
        Vec<usize>,
        Vec<f32>,
        usize,
        f32,
    );

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ((q, k, v), first, probs, queries, scale) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (dq, dk, dv) =
            B::causal_attention_backward(q, k, v, &first, &probs, grad, queries, scale);
        for (node, d) in ops.parents.into_iter().zip([dq, dk, dv]) {
            if let Some(node) = node {
                grads.register::<B>(node.id, d);
            }
        }
    }
}

#[derive(Debug)]
struct TokenNllBackward;

impl<B: KernelGrads> Backward<B, 1> for TokenNllBackward {
    /// The logits, each row's log-sum-exp, and the targets.
    type State = (FloatTensor<B>, Vec<f32>, Vec<u32>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (logits, lse, targets) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [logits_node] = ops.parents;
        if let Some(node) = logits_node {
            let d = B::token_nll_backward(logits, &lse, &targets, grad);
            grads.register::<B>(node.id, d);
        }
    }
}

/// The gradients of `y = x · w` (`w [k, n]`) or, with `transposed_weight`, of `y = x · wᵀ`
/// (`w [n, k]`, the tied LM head), each computed only for an input that needs it.
#[derive(Debug)]
struct ProductBackward {
    transposed_weight: bool,
}

impl<B: KernelGrads> Backward<B, 2> for ProductBackward {
    /// The inputs, `(x, w)`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, w) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let [x_node, w_node] = ops.parents;
        use Stored::{AsIs, Transposed};
        if let Some(node) = x_node {
            // ∂x = g · wᵀ, or g · w for the transposed weight.
            let w_stored = if self.transposed_weight {
                AsIs
            } else {
                Transposed
            };
            grads.register::<B>(node.id, B::product(grad.clone(), AsIs, w, w_stored));
        }
        if let Some(node) = w_node {
            // ∂w = xᵀ · g, or gᵀ · x for the transposed weight.
            let dw = if self.transposed_weight {
                B::product(grad, Transposed, x, AsIs)
            } else {
                B::product(x, Transposed, grad, AsIs)
            };
            grads.register::<B>(node.id, dw);
        }
    }
}

/// `x · w` (or `x · wᵀ`) as one autodiff node whose gradients are [`KernelGrads::product`]s.
fn tracked_product<B: CpuKernels + KernelGrads, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    w: FloatTensor<Autodiff<B, C>>,
    transposed_weight: bool,
) -> FloatTensor<Autodiff<B, C>> {
    let forward = |x, w| {
        if transposed_weight {
            B::matmul_large_nt(x, w)
        } else {
            B::matmul_large(x, w)
        }
    };
    match (ProductBackward { transposed_weight })
        .prepare::<C>([x.node(), w.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, w) = (x.into_primitive(), w.into_primitive());
            let out = forward(x.clone(), w.clone());
            prep.finish((x, w), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive(), w.into_primitive())),
    }
}

impl<B: CpuKernels + KernelGrads, C: CheckpointStrategy> CpuKernels for Autodiff<B, C> {
    fn matmul_large(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked_product::<B, C>(x, w, false)
    }

    fn matmul_large_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        tracked_product::<B, C>(x, w, true)
    }

    fn silu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        match SiluMulBackward
            .prepare::<C>([gate.node(), up.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (gate, up) = (gate.into_primitive(), up.into_primitive());
                let out = B::silu_mul(gate.clone(), up.clone());
                prep.finish((gate, up), out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::silu_mul(gate.into_primitive(), up.into_primitive()))
            }
        }
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (cos, sin) = (cos.into_primitive(), sin.into_primitive());
        match RopeBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::rope(x.into_primitive(), cos.clone(), sin.clone());
                prep.finish((cos, sin), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::rope(x.into_primitive(), cos, sin)),
        }
    }

    fn attention_softmax(
        scores: FloatTensor<Self>,
        hidden: Vec<bool>,
        scale: f32,
    ) -> FloatTensor<Self> {
        match SoftmaxBackward
            .prepare::<C>([scores.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let probs = B::attention_softmax(scores.into_primitive(), hidden, scale);
                prep.finish((probs.clone(), scale), probs)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::attention_softmax(scores.into_primitive(), hidden, scale))
            }
        }
    }

    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        first: Vec<usize>,
        queries: usize,
        scale: f32,
    ) -> FloatTensor<Self> {
        match CausalAttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
                let (out, probs) = B::causal_attention_with_probs(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    &first,
                    queries,
                    scale,
                    true,
                );
                prep.finish(((q, k, v), first, probs, queries, scale), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::causal_attention(
                q.into_primitive(),
                k.into_primitive(),
                v.into_primitive(),
                first,
                queries,
                scale,
            )),
        }
    }

    fn token_nll(logits: FloatTensor<Self>, targets: Vec<u32>) -> FloatTensor<Self> {
        match TokenNllBackward
            .prepare::<C>([logits.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let logits = logits.into_primitive();
                let (nll, lse) = B::token_nll_with_lse(logits.clone(), &targets);
                prep.finish((logits, lse, targets), nll)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::token_nll(logits.into_primitive(), targets)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::{log_softmax, silu};
    use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};

    fn grad<const D: usize>(t: &Tensor<D>, grads: &burn::tensor::Gradients) -> Tensor<D> {
        t.grad(grads).expect("the tensor requires a gradient")
    }

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn uniform<const D: usize>(shape: [usize; D], range: f64, device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Uniform(-range, range), device)
    }

    #[test]
    fn silu_mul_gradients_match_the_composed_ops() {
        let device = Device::flex().autodiff();
        let gate = uniform([7, 33], 6.0, &device).require_grad();
        let up = uniform([7, 33], 2.0, &device).require_grad();
        let upstream = uniform([7, 33], 1.0, &device);
        let fused =
            (super::super::ext::silu_mul(gate.clone(), up.clone()) * upstream.clone()).sum();
        let composed = (silu(gate.clone()) * up.clone() * upstream).sum();
        assert!(max_diff(fused.clone(), composed.clone()) < 1e-4);
        let (gf, gc) = (fused.backward(), composed.backward());
        assert!(max_diff(grad(&gate, &gf), grad(&gate, &gc)) < 1e-5);
        assert!(max_diff(grad(&up, &gf), grad(&up, &gc)) < 1e-5);
    }

    #[test]
    fn rope_gradient_matches_the_composed_ops() {
        let device = Device::flex().autodiff();
        let (batch, heads, seq, hd) = (2, 3, 5, 8);
        let x = uniform([batch, heads, seq, hd], 1.0, &device).require_grad();
        // Tables with different halves, so the test also checks which half each term reads.
        let cos = uniform([batch, 1, seq, hd], 1.0, &device);
        let sin = uniform([batch, 1, seq, hd], 1.0, &device);
        let upstream = uniform([batch, heads, seq, hd], 1.0, &device);
        let fused =
            (super::super::ext::rope(x.clone(), cos.clone(), sin.clone()) * upstream.clone()).sum();
        let half = hd / 2;
        let rotated = Tensor::cat(
            vec![
                x.clone().narrow(3, half, half).neg(),
                x.clone().narrow(3, 0, half),
            ],
            3,
        );
        let composed = ((x.clone() * cos + rotated * sin) * upstream).sum();
        assert!(max_diff(fused.clone(), composed.clone()) < 1e-4);
        let (gf, gc) = (fused.backward(), composed.backward());
        assert!(max_diff(grad(&x, &gf), grad(&x, &gc)) < 1e-5);
    }

    #[test]
    fn product_gradients_match_burns_matmul_for_both_weight_layouts() {
        let device = Device::flex().autodiff();
        // Above gemm's threading threshold, with odd sizes.
        let (m, k, n) = (67, 193, 211);
        let x = uniform([m, k], 1.0, &device).require_grad();
        let w = uniform([k, n], 1.0, &device).require_grad();
        let e = uniform([n, k], 1.0, &device).require_grad();
        let upstream = uniform([m, n], 1.0, &device);
        let cases = [
            (
                "x · w",
                super::super::ext::matmul_large(x.clone(), w.clone()),
                x.clone().matmul(w.clone()),
                &w,
            ),
            (
                "x · eᵀ",
                super::super::ext::matmul_large_nt(x.clone(), e.clone()),
                x.clone().matmul(e.clone().transpose()),
                &e,
            ),
        ];
        for (name, ours, burns, weight) in cases {
            let ours = (ours * upstream.clone()).sum();
            let burns = (burns * upstream.clone()).sum();
            assert!(
                max_diff(ours.clone(), burns.clone()) < 1e-2,
                "{name}: value"
            );
            let (go, gb) = (ours.backward(), burns.backward());
            assert!(max_diff(grad(&x, &go), grad(&x, &gb)) < 1e-3, "{name}: ∂x");
            assert!(
                max_diff(grad(weight, &go), grad(weight, &gb)) < 1e-3,
                "{name}: ∂w"
            );
        }
        // A frozen weight (LoRA's base) gets no gradient, and the input still does.
        let frozen = uniform([k, n], 1.0, &device);
        let g = (super::super::ext::matmul_large(x.clone(), frozen.clone()) * upstream)
            .sum()
            .backward();
        assert!(frozen.grad(&g).is_none(), "a frozen weight has no gradient");
        assert!(x.grad(&g).is_some());
    }

    #[test]
    fn attention_softmax_gradient_matches_the_composed_ops() {
        let device = Device::flex().autodiff();
        let (b, h, q, k) = (2, 3, 4, 6);
        let scores = uniform([b, h, q, k], 4.0, &device).require_grad();
        let hidden: Vec<bool> = (0..b * q * k).map(|i| i % 4 == 1).collect();
        let upstream = uniform([b, h, q, k], 1.0, &device);
        let scale = 0.125f32;
        // Causal as an explicit mask (key j hidden from query i when j > i + k − q), and an
        // arbitrary one.
        let causal: Vec<bool> = (0..b * q * k)
            .map(|at| at % k > at / k % q + (k - q))
            .collect();
        for (name, mask) in [("causal", causal), ("explicit", hidden)] {
            let fused = (super::super::ext::attention_softmax(scores.clone(), mask.clone(), scale)
                * upstream.clone())
            .sum();
            // The composed side hides keys with burn's own causal mask for the causal case.
            let hide: Tensor<4, burn::tensor::Bool> = if name == "causal" {
                Tensor::<2, burn::tensor::Bool>::tril_mask([q, k], (k - q) as i64, &device)
                    .unsqueeze::<4>()
                    .expand([b, 1, q, k])
            } else {
                Tensor::from_data(TensorData::new(mask, [b, 1, q, k]), &device)
            };
            let masked = scores
                .clone()
                .mul_scalar(scale)
                .mask_fill(hide.expand([b, h, q, k]), f32::NEG_INFINITY);
            let composed = (burn::tensor::activation::softmax(masked, 3) * upstream.clone()).sum();
            assert!(max_diff(fused.clone(), composed.clone()) < 1e-4, "{name}");
            let (gf, gc) = (fused.backward(), composed.backward());
            let d = max_diff(grad(&scores, &gf), grad(&scores, &gc));
            assert!(d < 1e-5, "{name}: {d}");
        }
    }

    #[test]
    fn causal_attention_gradients_match_the_composed_ops() {
        let device = Device::flex().autodiff();
        // Two kv heads of three query heads each; 70 queries (a whole block and a partial one)
        // after 5 cached keys.
        let (b, kvh, group, q, cached, hd) = (2, 2, 3, 70, 5, 8);
        let keys = cached + q;
        let scale = 0.3f32;
        let qs = uniform([b, kvh, group * q, hd], 1.5, &device).require_grad();
        let ks = uniform([b, kvh, keys, hd], 1.5, &device).require_grad();
        let vs = uniform([b, kvh, keys, hd], 1.0, &device).require_grad();
        let upstream = uniform([b, kvh, group * q, hd], 1.0, &device);
        // Sequence 0 plain causal; sequence 1 packed, a segment starting every 30 keys.
        let first: Vec<usize> = (0..b * q)
            .map(|at| {
                if at < q {
                    0
                } else {
                    (cached + at % q) / 30 * 30
                }
            })
            .collect();
        let fused = super::super::ext::causal_attention(
            qs.clone(),
            ks.clone(),
            vs.clone(),
            first.clone(),
            q,
            scale,
        );
        let fused = (fused * upstream.clone()).sum();
        let hidden: Vec<bool> = (0..b * q * keys)
            .map(|at| {
                let (row, j) = (at / keys, at % keys);
                !(first[row]..=cached + row % q).contains(&j)
            })
            .collect();
        let hide = Tensor::<4, burn::tensor::Bool>::from_data(
            TensorData::new(hidden, [b, 1, q, keys]),
            &device,
        )
        .repeat_dim(2, group)
        .expand([b, kvh, group * q, keys]);
        let scores = qs
            .clone()
            .matmul(ks.clone().swap_dims(2, 3))
            .mul_scalar(scale)
            .mask_fill(hide, f32::NEG_INFINITY);
        let probs = burn::tensor::activation::softmax(scores, 3);
        let composed = (probs.matmul(vs.clone()) * upstream).sum();
        let d = max_diff(fused.clone(), composed.clone());
        assert!(d < 1e-3, "value: {d}");
        let (gf, gc) = (fused.backward(), composed.backward());
        for (name, t) in [("q", &qs), ("k", &ks), ("v", &vs)] {
            let d = max_diff(grad(t, &gf), grad(t, &gc));
            assert!(d < 1e-4, "∂{name}: {d}");
        }
    }

    #[test]
    fn token_nll_gradient_matches_log_softmax() {
        let device = Device::flex().autodiff();
        let (rows, vocab) = (6, 517);
        let logits = uniform([rows, vocab], 8.0, &device).require_grad();
        let targets: Vec<u32> = vec![0, 516, 3, 200, 200, 77];
        let weights = uniform([rows], 1.0, &device);
        let fused =
            (super::super::ext::token_nll(logits.clone(), targets.clone()) * weights.clone()).sum();
        let at: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
        let at = Tensor::<2, Int>::from_data(TensorData::new(at, [rows, 1]), &device);
        let composed = (log_softmax(logits.clone(), 1)
            .gather(1, at)
            .reshape([rows])
            .neg()
            * weights)
            .sum();
        assert!(max_diff(fused.clone(), composed.clone()) < 1e-4);
        let (gf, gc) = (fused.backward(), composed.backward());
        assert!(max_diff(grad(&logits, &gf), grad(&logits, &gc)) < 1e-6);
    }
}
