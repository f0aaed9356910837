//! Attention of one new query per sequence over a preallocated KV cache (decode), reading the
//! cache in place: no copy of the keys and values per step, grouped-query heads by index.

use rayon::prelude::*;

use super::elementwise::exp_nonpositive;
use super::gemv::dot;
use super::{crew, simd_kernel};

/// Shapes of one decode-attention call.
#[derive(Debug, Clone, Copy)]
pub struct DecodeShape {
    pub batch: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Allocated positions per sequence in the cache.
    pub capacity: usize,
    /// Valid positions (the new one included).
    pub len: usize,
}

/// `softmax(q·Kᵀ / √d) · V` for `q: [batch, heads, head_dim]` against keys and values
/// `[batch, kv_heads, capacity, head_dim]`, of which positions `pads[b]..len` are visible to
/// sequence `b` (left padding hides the rest). Returns `[batch, heads, head_dim]`.
pub fn decode_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pads: &[usize],
    s: DecodeShape,
) -> Vec<f32> {
    let hd = s.head_dim;
    assert_eq!(q.len(), s.batch * s.heads * hd, "decode_attention: q");
    assert_eq!(
        k.len(),
        s.batch * s.kv_heads * s.capacity * hd,
        "decode_attention: k"
    );
    assert_eq!(v.len(), k.len(), "decode_attention: v");
    assert!(s.len <= s.capacity && pads.len() == s.batch && s.heads.is_multiple_of(s.kv_heads));
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0.0f32; s.batch * s.heads * hd];
    let head = |bh: usize, o: &mut [f32]| {
        let (b, h) = (bh / s.heads, bh % s.heads);
        let base = (b * s.kv_heads + h / group) * s.capacity * hd;
        let first = pads[b].min(s.len.saturating_sub(1));
        let keys = &k[base + first * hd..base + s.len * hd];
        let values = &v[base + first * hd..base + s.len * hd];
        let query = &q[bh * hd..(bh + 1) * hd];
        simd_kernel!(Head { query: &'a [f32], keys: &'a [f32], values: &'a [f32], o: &'a mut [f32], scale: f32 }
            => attend(query, keys, values, o, scale));
    };
    // A batch small enough for the bandwidth-bound products runs on their crew, which is awake
    // between them; larger batches' products run on rayon, and so does their attention.
    if s.batch <= super::small_rows() {
        crew::for_each_chunk_mut(&mut out, hd, head);
    } else {
        out.par_chunks_mut(hd)
            .enumerate()
            .for_each(|(bh, o)| head(bh, o));
    }
    out
}

/// One query head against its keys and values. Plain loops over preallocated buffers, no
/// iterator adapters that collect: those compile to separate functions outside the caller's
/// instruction set (a `Vec` built from a `map` ran the scores at SSE2 width).
#[inline(always)]
fn attend(q: &[f32], keys: &[f32], values: &[f32], out: &mut [f32], scale: f32) {
    let hd = q.len();
    let mut scores = vec![0.0f32; keys.len() / hd];
    let mut max = f32::NEG_INFINITY;
    for (s, key) in scores.iter_mut().zip(keys.chunks_exact(hd)) {
        *s = dot(q, key) * scale;
        max = max.max(*s);
    }
    let mut total = 0.0f32;
    for s in scores.iter_mut() {
        *s = exp_nonpositive((*s - max).max(-87.0));
        total += *s;
    }
    out.fill(0.0);
    for (&w, value) in scores.iter().zip(values.chunks_exact(hd)) {
        let p = w / total;
        for (o, &x) in out.iter_mut().zip(value) {
            *o += p * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    #[test]
    fn matches_a_plain_reference_with_gqa_and_padding() {
        crate::kernels::simd::on_every_path(|_path| {
            let s = DecodeShape {
                batch: 2,
                heads: 6,
                kv_heads: 2,
                head_dim: 8,
                capacity: 11,
                len: 7,
            };
            let pads = [0usize, 3];
            let q = values(s.batch * s.heads * s.head_dim, 1);
            let k = values(s.batch * s.kv_heads * s.capacity * s.head_dim, 2);
            let v = values(k.len(), 3);
            let got = decode_attention(&q, &k, &v, &pads, s);
            let hd = s.head_dim;
            for b in 0..s.batch {
                for h in 0..s.heads {
                    let g = h / (s.heads / s.kv_heads);
                    let at = |t: usize, d: usize| ((b * s.kv_heads + g) * s.capacity + t) * hd + d;
                    let qv = &q[(b * s.heads + h) * hd..][..hd];
                    let scores: Vec<f64> = (pads[b]..s.len)
                        .map(|t| {
                            (0..hd)
                                .map(|d| f64::from(qv[d]) * f64::from(k[at(t, d)]))
                                .sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                    for d in 0..hd {
                        let want: f64 = (pads[b]..s.len)
                            .zip(&scores)
                            .map(|(t, x)| (x - m).exp() / z * f64::from(v[at(t, d)]))
                            .sum();
                        let g = got[(b * s.heads + h) * hd + d];
                        assert!(
                            (f64::from(g) - want).abs() < 1e-5,
                            "b{b} h{h} d{d}: {g} vs {want}"
                        );
                    }
                }
            }
        });
    }
}
