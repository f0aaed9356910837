//! The operations the model calls, whatever backend it runs on. Each function takes the
//! engine's kernel where the device's backend has one (burn's flex, with or without autodiff)
//! and composes ordinary burn ops everywhere else, so model code never asks which backend it
//! runs on: a new backend gets the composed bodies until it lists itself in the extensions of
//! `kernels/mod.rs` with kernels of its own.
//!
//! - [`silu_mul`], [`rope`]: SwiGLU's gate and the rotary embedding, one pass each way.
//! - [`matmul`], [`matmul_many`], [`matmul_nt`]: projections; few rows (decode) read the
//!   weights once through `gemv`.
//! - [`token_nll`]: the language-model loss without a log-softmax copy.
//! - [`AttentionPass`]: attention for one model pass, with its mask prepared once for every
//!   layer (decode reads the KV cache in place, training takes the fused softmax).

use burn::backend::DispatchDevice;
use burn::tensor::activation::{log_softmax, silu};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::{ext, small_rows};

/// Whether `device` runs the engine's fused kernels with backward passes (flex, with or
/// without autodiff).
fn has_fused_kernels(device: &Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(**inner, DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Whether `device` is a GPU runtime (burn's cubecl backend), where the engine's
/// [`DeviceKernels`](super::DeviceKernels) run.
fn is_cube(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Cube(_))
}

/// Whether `device` runs the engine's inference-only kernels (flex without autodiff): decode
/// attention over the cache, the few-row products. flex's own attention also takes fewer
/// key/value heads than query heads there.
fn has_inference_kernels(device: &Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Flex(_))
}

/// `norm` applied to the last axis of `x`: one pass per row on flex at inference, burn's
/// `RmsNorm` (differentiable, any backend) elsewhere.
pub fn rms_norm<const D: usize>(norm: &burn::nn::RmsNorm, x: Tensor<D>) -> Tensor<D> {
    if has_inference_kernels(&x.device()) {
        ext::rms_norm(x, norm.gamma.val(), norm.epsilon as f32)
    } else {
        norm.forward(x)
    }
}

/// `silu(gate) · up`, same shapes, differentiable.
pub fn silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if has_fused_kernels(&gate.device()) {
        ext::silu_mul(gate, up)
    } else {
        composed_silu_mul(gate, up)
    }
}

fn composed_silu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    silu(gate) * up
}

/// RoPE's half rotation `x · cos + rotate_half(x) · sin` of `x [batch, heads, seq, head_dim]`
/// with `[batch, 1, seq, head_dim]` tables, differentiable with respect to `x`.
pub fn rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    if has_fused_kernels(&x.device()) {
        ext::rope(x, cos.clone(), sin.clone())
    } else {
        composed_rope(x, cos, sin)
    }
}

fn composed_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, hd] = x.dims();
    let half = hd / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// The negative log-likelihood `[rows]` of `targets` under `logits [rows, vocab]`,
/// differentiable with respect to the logits.
pub fn token_nll(logits: Tensor<2>, targets: Vec<u32>) -> Tensor<1> {
    if has_fused_kernels(&logits.device()) {
        ext::token_nll(logits, targets)
    } else {
        composed_token_nll(logits, targets)
    }
}

fn composed_token_nll(logits: Tensor<2>, targets: Vec<u32>) -> Tensor<1> {
    let rows = targets.len();
    let at: Vec<i64> = targets.iter().map(|&t| i64::from(t)).collect();
    let at = Tensor::<2, Int>::from_data(TensorData::new(at, [rows, 1]), &logits.device());
    log_softmax(logits, 1).gather(1, at).reshape([rows]).neg()
}

/// The statistics of one logits row and the log-probability of the token it scored.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredRow {
    pub stats: super::token_stats::RowStats,
    /// log p(target), or `None` where no target was given (`u32::MAX`) or it is out of range.
    pub target_logprob: Option<f32>,
}

/// Log-sum-exp, entropy, the `k` most likely tokens and the log-probability of `targets[row]`
/// (`u32::MAX` for none) for each row of `logits [rows, vocab]`, in one pass over each row.
/// On a GPU runtime the pass runs there ([`device_stats`](super::device_stats)) and only these
/// numbers are read back; elsewhere the logits are read to the host once for the CPU kernel.
pub fn token_stats(logits: Tensor<2>, targets: &[u32], k: usize) -> Result<Vec<ScoredRow>, String> {
    let [rows, vocab] = logits.dims();
    assert_eq!(targets.len(), rows, "one target per row");
    if rows == 0 {
        return Ok(Vec::new());
    }
    let device = logits.device();
    if is_cube(&device) && k <= super::device_stats::MAX_TOP_K {
        let width = 3 + 2 * k;
        let out: Vec<f32> = ext::device_token_stats(logits, targets.to_vec(), k)
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| format!("the token-statistics kernel on {device:?}: {e:?}"))?;
        return Ok(out
            .chunks(width)
            .zip(targets)
            .map(|(r, &target)| ScoredRow {
                stats: super::token_stats::RowStats {
                    log_sum_exp: r[0],
                    entropy: r[1],
                    // A row shorter than k has only that many (as on the CPU).
                    top: (0..k.min(vocab))
                        .map(|j| (r[3 + k + j] as u32, r[3 + j]))
                        .collect(),
                },
                target_logprob: ((target as usize) < vocab).then_some(r[2]),
            })
            .collect());
    }
    let host: Vec<f32> = logits
        .into_data()
        .try_to_vec::<f32>()
        .map_err(|e| format!("reading logits from {device:?} for the token statistics: {e:?}"))?;
    let stats = super::token_stats::rows_stats(&host, vocab, k);
    Ok(stats
        .into_iter()
        .zip(targets)
        .enumerate()
        .map(|(r, (stats, &target))| ScoredRow {
            target_logprob: ((target as usize) < vocab)
                .then(|| host[r * vocab + target as usize] - stats.log_sum_exp),
            stats,
        })
        .collect())
}

/// Whether a product with `rows` rows on `device` goes through the bandwidth-bound kernels.
fn few_rows(rows: usize, device: &Device) -> bool {
    rows <= small_rows() && has_inference_kernels(device)
}

/// `x [m, k] · w [k, n]`.
pub fn matmul(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if few_rows(x.dims()[0], &x.device()) {
        ext::matmul_small(x, w)
    } else if has_fused_kernels(&x.device()) {
        ext::matmul_large(x, w)
    } else {
        x.matmul(w)
    }
}

/// `x [m, k] · wᵢ [k, nᵢ]` for two or three weights of the same input (q/k/v, gate/up): with
/// few rows their weights are read in one parallel pass instead of one pass each.
pub fn matmul_many(x: Tensor<2>, ws: Vec<Tensor<2>>) -> Vec<Tensor<2>> {
    if (2..=3).contains(&ws.len()) && few_rows(x.dims()[0], &x.device()) {
        ext::matmul_small_many(x, ws)
    } else {
        ws.into_iter().map(|w| matmul(x.clone(), w)).collect()
    }
}

/// `x [m, k] · w [n, k]ᵀ` (the tied LM head reads the embedding this way).
pub fn matmul_nt(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if few_rows(x.dims()[0], &x.device()) {
        ext::matmul_small_nt(x, w)
    } else if has_fused_kernels(&x.device()) {
        ext::matmul_large_nt(x, w)
    } else {
        x.matmul(w.transpose())
    }
}

/// Which key positions each query may see.
#[derive(Debug, Clone)]
pub enum AttentionMask {
    /// Causal over the whole cached sequence; every row is real tokens.
    Causal,
    /// Causal, and in row `b` the first `pads[b]` cache positions are left padding: hidden from
    /// every real query (a padding query sees only itself, so its row stays finite).
    LeftPadded(Vec<usize>),
    /// Explicit `[batch, 1, query, key]` mask, `true` = hidden (packing).
    Explicit(Box<Tensor<4, Bool>>),
}

/// `[batch, 1, queries, keys]` mask (`true` = hidden) for left-padded rows: a query slot sees key
/// slots at or before it that are not padding; a padding query sees only itself.
pub fn padding_mask(
    pads: &[usize],
    first_query_slot: usize,
    queries: usize,
    keys: usize,
    device: &Device,
) -> Tensor<4, Bool> {
    let mut hidden = Vec::with_capacity(pads.len() * queries * keys);
    for &pad in pads {
        for q in 0..queries {
            let slot = first_query_slot + q;
            for k in 0..keys {
                let visible = if slot < pad {
                    k == slot
                } else {
                    k <= slot && k >= pad
                };
                hidden.push(!visible);
            }
        }
    }
    Tensor::from_data(
        TensorData::new(hidden, [pads.len(), 1, queries, keys]),
        device,
    )
}

/// The shape of one model pass's attention.
#[derive(Debug, Clone, Copy)]
pub struct PassShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// New positions (queries) of the pass.
    pub queries: usize,
    /// Positions already in the KV cache before the pass.
    pub cached: usize,
    /// Whether the pass reads keys and values from a KV cache (generation).
    pub uses_cache: bool,
}

/// The keys and values a layer's queries attend to.
#[derive(Debug)]
pub enum Keys {
    /// `[batch, kv_heads, keys, head_dim]` tensors holding exactly the visible positions.
    Fresh { k: Tensor<4>, v: Tensor<4> },
    /// KV cache buffers `[batch, kv_heads, capacity, head_dim]` whose first `len` positions are
    /// valid.
    Cache {
        k: Tensor<4>,
        v: Tensor<4>,
        len: usize,
    },
}

/// The largest score matrix (`batch · heads · queries · keys` f32) for which an inference pass
/// with an explicit mask materializes its scores to use the fused softmax; 256 MiB is a
/// 2,700-token prompt of SmolLM2-135M (9 heads) in one pass. A causal pass takes the block
/// kernel at any length: it holds one block of scores per thread.
const FUSED_PREFILL_SCORE_BYTES: usize = 256 << 20;

/// Attention for every layer of one model pass: the mask is turned once into what the chosen
/// path reads (a tensor for burn's attention, host rows for the fused training softmax, the
/// padding counts for the decode kernel).
#[derive(Debug)]
pub struct AttentionPass {
    shape: PassShape,
    mask: AttentionMask,
    /// Decode on a backend with the decode kernel: it reads the cache buffers in place.
    decode_in_place: bool,
    /// Training, or a prefill on flex, where every query sees one run of keys ending at itself
    /// (causal, left padding, packed segments): the first key each query sees (`[batch,
    /// queries]`; empty for plain causal), for the block kernel
    /// ([`attention::causal_attention`]).
    ///
    /// [`attention::causal_attention`]: super::attention::causal_attention
    causal_first: Option<Vec<usize>>,
    /// Training, or a prefill on flex, with any other mask: the hidden keys on the host
    /// (`[batch, queries, keys]`) for the fused softmax between two products.
    fused_hidden: Option<Vec<bool>>,
    /// The backend's attention takes fewer key/value heads than query heads.
    native_gqa: bool,
}

impl AttentionPass {
    pub fn new(mask: AttentionMask, shape: PassShape, device: &Device) -> Self {
        let inference = has_inference_kernels(device);
        let keys = shape.cached + shape.queries;
        let decode_in_place = inference
            && shape.uses_cache
            && shape.queries == 1
            && matches!(mask, AttentionMask::LeftPadded(_));
        // The left-padding mask as a tensor, for the passes that go through burn's attention.
        let mask = match mask {
            AttentionMask::LeftPadded(pads) if !decode_in_place => {
                if pads.iter().all(|&p| p == 0) {
                    AttentionMask::Causal
                } else {
                    AttentionMask::Explicit(Box::new(padding_mask(
                        &pads,
                        shape.cached,
                        shape.queries,
                        keys,
                        device,
                    )))
                }
            }
            other => other,
        };
        // A prefill on flex without autodiff takes the training path too: flex's own attention
        // computes every exponential with a scalar libm call (a fifth of a 512-token prefill),
        // the engine's kernels vectorize them and run the products through gemm. With a mask
        // other than a window per query, only while its scores stay small: longer passes keep
        // flex's attention, which does not hold every score at once.
        let engine_kernels =
            has_fused_kernels(device) && (!inference || (!decode_in_place && shape.queries > 1));
        let small_scores =
            shape.batch * shape.heads * shape.queries * keys * 4 <= FUSED_PREFILL_SCORE_BYTES;
        let (causal_first, fused_hidden) = match &mask {
            _ if !engine_kernels => (None, None),
            AttentionMask::Causal => (Some(Vec::new()), None),
            AttentionMask::Explicit(m) => match host_mask(m) {
                Some(hidden) => {
                    match super::attention::causal_windows(
                        &hidden,
                        shape.batch,
                        shape.queries,
                        keys,
                    ) {
                        Some(first) => (Some(first), None),
                        None if !inference || small_scores => (None, Some(hidden)),
                        None => (None, None),
                    }
                }
                None => (None, None),
            },
            // Turned into `Explicit` above, except for decode in place.
            AttentionMask::LeftPadded(_) => (None, None),
        };
        Self {
            shape,
            mask,
            decode_in_place,
            causal_first,
            fused_hidden,
            native_gqa: inference,
        }
    }

    /// `q [batch, heads, queries, head_dim]` attending to `keys`, scaled by `1/√head_dim`:
    /// `[batch, heads, queries, head_dim]`.
    pub fn attend(&self, q: Tensor<4>, keys: Keys) -> Tensor<4> {
        let PassShape {
            batch,
            heads,
            kv_heads,
            head_dim,
            queries,
            ..
        } = self.shape;
        let (k, v) = match keys {
            Keys::Cache { k, v, len } => {
                if let (true, AttentionMask::LeftPadded(pads)) = (self.decode_in_place, &self.mask)
                {
                    return ext::decode_attention(q, k, v, len, pads);
                }
                (k.narrow(2, 0, len), v.narrow(2, 0, len))
            }
            Keys::Fresh { k, v } => (k, v),
        };
        // The engine's kernels take grouped-query heads without repeating keys and values: the
        // query heads that share a kv head are stacked along the query axis.
        let stacked_rows = (heads / kv_heads) * queries;
        let scale = 1.0 / (head_dim as f32).sqrt();
        if let Some(first) = &self.causal_first {
            let q = q.reshape([batch, kv_heads, stacked_rows, head_dim]);
            return ext::causal_attention(q, k, v, first.clone(), queries, scale)
                .reshape([batch, heads, queries, head_dim]);
        }
        if let Some(hidden) = &self.fused_hidden {
            // Two products around the fused softmax (scale, mask and softmax in one pass each
            // way).
            let q = q.reshape([batch, kv_heads, stacked_rows, head_dim]);
            let scores = q.matmul(k.swap_dims(2, 3));
            let keys = scores.dims()[3];
            // The stacked rows are `[batch, heads, queries, keys]` in memory: so shaped, the
            // softmax reads each head's rows against the sequence's own mask (not a mask
            // repeated per stacked head).
            let scores = scores.reshape([batch, heads, queries, keys]);
            let probs = ext::attention_softmax(scores, hidden.clone(), scale);
            let probs = probs.reshape([batch, kv_heads, stacked_rows, keys]);
            return probs.matmul(v).reshape([batch, heads, queries, head_dim]);
        }
        let (k, v) = if self.native_gqa || heads == kv_heads {
            (k, v)
        } else {
            (
                repeat_kv(k, heads / kv_heads),
                repeat_kv(v, heads / kv_heads),
            )
        };
        let (mask, is_causal) = match &self.mask {
            AttentionMask::Causal | AttentionMask::LeftPadded(_) => (None, true),
            AttentionMask::Explicit(m) => (Some(m.as_ref().clone()), false),
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal,
        };
        attention(q, k, v, mask, None, options)
    }
}

/// The keys each query may not see, `[batch, queries, keys]` on the host, read from an
/// explicit mask; `None` when it cannot be read (the pass then takes burn's attention).
fn host_mask(mask: &Tensor<4, Bool>) -> Option<Vec<bool>> {
    mask.clone().into_data().try_into_vec::<bool>().ok()
}

/// `[batch, kv_heads, seq, hd]` → `[batch, kv_heads * n, seq, hd]`, each kv head repeated n times.
fn repeat_kv(x: Tensor<4>, n: usize) -> Tensor<4> {
    let [b, kvh, s, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, kvh, n, s, hd])
        .reshape([b, kvh * n, s, hd])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// A prefill on flex takes the engine's kernels; they give what burn's own attention gives:
    /// causal with and without a cached prefix and a left-padding mask through the block kernel,
    /// and a mask with a hole in a row's run of keys through the fused softmax.
    #[test]
    fn engine_prefill_attention_matches_burns() {
        let device = Device::flex();
        let u = Distribution::Uniform(-2.0, 2.0);
        let (batch, heads, kv_heads, head_dim) = (2, 6, 2, 8);
        for (queries, cached, kind) in [
            (5, 0, "causal"),
            (4, 3, "causal"),
            (5, 0, "padded"),
            (3, 2, "padded"),
            (70, 0, "padded"),
            (6, 1, "holed"),
        ] {
            let keys = cached + queries;
            let shape = PassShape {
                batch,
                heads,
                kv_heads,
                head_dim,
                queries,
                cached,
                uses_cache: cached > 0,
            };
            let mask = match kind {
                "causal" => AttentionMask::Causal,
                "padded" => AttentionMask::LeftPadded(vec![0, 2]),
                _ => {
                    // Causal, and key 1 hidden from every later query.
                    let hidden: Vec<bool> = (0..batch * queries * keys)
                        .map(|at| {
                            let (i, j) = (at / keys % queries, at % keys);
                            j > cached + i || (j == 1 && cached + i > 1)
                        })
                        .collect();
                    let data = TensorData::new(hidden, [batch, 1, queries, keys]);
                    AttentionMask::Explicit(Box::new(Tensor::from_data(data, &device)))
                }
            };
            let ours = AttentionPass::new(mask, shape, &device);
            let (block, softmax) = (ours.causal_first.is_some(), ours.fused_hidden.is_some());
            assert_eq!(
                (block, softmax),
                (kind != "holed", kind == "holed"),
                "{kind}: the path a prefill on flex takes"
            );
            let burns = AttentionPass {
                shape,
                mask: ours.mask.clone(),
                decode_in_place: false,
                causal_first: None,
                fused_hidden: None,
                native_gqa: true,
            };
            let q = Tensor::<4>::random([batch, heads, queries, head_dim], u, &device);
            let k = Tensor::<4>::random([batch, kv_heads, keys, head_dim], u, &device);
            let v = Tensor::<4>::random([batch, kv_heads, keys, head_dim], u, &device);
            let keys_of = || Keys::Fresh {
                k: k.clone(),
                v: v.clone(),
            };
            let diff = max_diff(
                ours.attend(q.clone(), keys_of()),
                burns.attend(q, keys_of()),
            );
            assert!(
                diff < 1e-5,
                "{queries} queries after {cached}, {kind}: {diff}"
            );
        }
    }

    /// The composed bodies other backends run give what the fused kernels give on flex, with
    /// and without autodiff.
    #[test]
    fn composed_fallbacks_match_the_fused_kernels() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            let u = Distribution::Uniform(-2.0, 2.0);
            let gate = Tensor::<3>::random([2, 3, 40], u, &device);
            let up = Tensor::<3>::random([2, 3, 40], u, &device);
            let fused = silu_mul(gate.clone(), up.clone());
            assert!(max_diff(fused, composed_silu_mul(gate, up)) < 1e-5);

            let x = Tensor::<4>::random([2, 3, 5, 8], u, &device);
            let cos = Tensor::<4>::random([2, 1, 5, 8], u, &device);
            let sin = Tensor::<4>::random([2, 1, 5, 8], u, &device);
            let fused = rope(x.clone(), &cos, &sin);
            assert!(max_diff(fused, composed_rope(x, &cos, &sin)) < 1e-5);

            let logits = Tensor::<2>::random([4, 70], Distribution::Uniform(-6.0, 6.0), &device);
            let targets = vec![3, 0, 69, 41];
            let fused = token_nll(logits.clone(), targets.clone());
            assert!(max_diff(fused, composed_token_nll(logits, targets)) < 1e-4);
        }
    }

    #[test]
    fn padding_mask_hides_padding_and_future() {
        let device = Device::flex();
        let m = padding_mask(&[0, 2], 0, 3, 3, &device);
        let v: Vec<bool> = m.into_data().try_into_vec().expect("bools");
        // row 0: plain causal
        assert_eq!(
            &v[0..9],
            &[false, true, true, false, false, true, false, false, false]
        );
        // row 1: slots 0,1 are padding; each sees only itself; slot 2 sees only itself (pad=2)
        assert_eq!(
            &v[9..18],
            &[false, true, true, true, false, true, true, true, false]
        );
    }
}
