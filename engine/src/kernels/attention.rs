//! Attention on the CPU, two kernels:
//!
//! - [`decode_attention`]: one new query per sequence over a preallocated KV cache, reading the
//!   cache in place: no copy of the keys and values per step, grouped-query heads by index.
//! - [`causal_attention`] and its gradient: every query of a prompt or training sequence, in
//!   blocks of [`BLOCK`] queries that each score only the keys they may see, so the products
//!   skip the hidden upper triangle (about 40 % of a 256-token sequence's attention work), and
//!   an inference pass holds one block's scores at a time instead of the whole score matrix.

use rayon::prelude::*;

use super::elementwise::exp_nonpositive;
use super::gemm::{View, product_into};
use super::gemv::dot;
use super::softmax::{softmax_grad_rows, softmax_window_rows};
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

/// Queries per block of [`causal_attention`]: each block's two products are small GEMMs against
/// the keys it sees.
pub const BLOCK: usize = 64;

/// Shapes of one [`causal_attention`] call.
#[derive(Debug, Clone, Copy)]
pub struct CausalShape {
    pub batch: usize,
    pub kv_heads: usize,
    /// Query heads per key/value head; they are stacked along the query axis.
    pub group: usize,
    /// New positions per sequence.
    pub queries: usize,
    /// Key positions per sequence: those cached before the pass, then one per query.
    pub keys: usize,
    pub head_dim: usize,
}

/// One block of queries `start..end` of a sequence and the keys `lo..hi` any of them sees.
#[derive(Debug, Clone, Copy)]
struct Block {
    start: usize,
    end: usize,
    lo: usize,
    hi: usize,
}

impl Block {
    fn rows(&self) -> usize {
        self.end - self.start
    }

    fn cols(&self) -> usize {
        self.hi - self.lo
    }
}

impl CausalShape {
    /// The dimensions of `q` and of the output.
    pub fn q_dims(&self) -> [usize; 4] {
        [
            self.batch,
            self.kv_heads,
            self.group * self.queries,
            self.head_dim,
        ]
    }

    /// The dimensions of `k` and `v`.
    pub fn kv_dims(&self) -> [usize; 4] {
        [self.batch, self.kv_heads, self.keys, self.head_dim]
    }

    fn cached(&self) -> usize {
        self.keys - self.queries
    }

    /// The query blocks of a sequence whose query `i` sees keys `first[i]..=cached + i` (`first`
    /// empty: from key 0).
    fn blocks<'a>(&self, first: &'a [usize]) -> impl Iterator<Item = Block> + 'a {
        let (queries, cached) = (self.queries, self.cached());
        (0..queries).step_by(BLOCK).map(move |start| {
            let end = (start + BLOCK).min(queries);
            let lo = first
                .get(start..end)
                .map_or(0, |f| f.iter().copied().min().unwrap_or(0));
            Block {
                start,
                end,
                lo,
                hi: cached + end,
            }
        })
    }

    /// The first visible key of each query of sequence `b` (empty: all from 0).
    fn first_of<'a>(&self, first: &'a [usize], b: usize) -> &'a [usize] {
        first
            .get(b * self.queries..(b + 1) * self.queries)
            .unwrap_or(&[])
    }

    /// Probabilities [`causal_attention`] keeps per query head of sequence `b`: each block's
    /// `[rows, cols]`, one after the other.
    fn probs_per_head(&self, first: &[usize], b: usize) -> usize {
        self.blocks(self.first_of(first, b))
            .map(|k| k.rows() * k.cols())
            .sum()
    }

    fn check(&self, q: usize, k: usize, v: usize, first: &[usize]) {
        assert!(
            self.keys >= self.queries,
            "causal_attention: fewer keys than queries"
        );
        let heads = self.batch * self.kv_heads * self.group;
        assert_eq!(
            q,
            heads * self.queries * self.head_dim,
            "causal_attention: q"
        );
        let kv = self.batch * self.kv_heads * self.keys * self.head_dim;
        assert_eq!(k, kv, "causal_attention: k");
        assert_eq!(v, kv, "causal_attention: v");
        if !first.is_empty() {
            assert_eq!(
                first.len(),
                self.batch * self.queries,
                "causal_attention: first"
            );
            let cached = self.cached();
            assert!(
                first
                    .iter()
                    .enumerate()
                    .all(|(i, &f)| f <= cached + i % self.queries),
                "causal_attention: a query's first key is after the query"
            );
        }
    }

    /// The kept probabilities of every query head, split per head.
    fn split_probs<'a>(&self, probs: &'a mut [f32], first: &[usize]) -> Vec<&'a mut [f32]> {
        let per_seq = self.kv_heads * self.group;
        let mut rest = probs;
        let mut heads = Vec::with_capacity(self.batch * per_seq);
        for b in 0..self.batch {
            let len = self.probs_per_head(first, b);
            for _ in 0..per_seq {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(len);
                heads.push(head);
                rest = tail;
            }
        }
        heads
    }

    /// How many probabilities [`causal_attention`] keeps for every query head.
    fn probs_len(&self, first: &[usize]) -> usize {
        let per_seq = self.kv_heads * self.group;
        (0..self.batch)
            .map(|b| per_seq * self.probs_per_head(first, b))
            .sum()
    }
}

/// The first visible key of each query, `[batch, queries]`, when every query of `hidden`
/// (`[batch, queries, keys]`, `true` = hidden) sees one unbroken run of keys ending at its own
/// position (`keys − queries + i`): causal, left padding, packed segments. `None` for any other
/// mask.
pub fn causal_windows(
    hidden: &[bool],
    batch: usize,
    queries: usize,
    keys: usize,
) -> Option<Vec<usize>> {
    if keys < queries || hidden.len() != batch * queries * keys {
        return None;
    }
    let cached = keys - queries;
    let mut first = Vec::with_capacity(batch * queries);
    for row in hidden.chunks_exact(keys.max(1)).take(batch * queries) {
        let last = cached + first.len() % queries;
        let start = row.iter().position(|&h| !h)?;
        let window = start..=last;
        if !row
            .iter()
            .enumerate()
            .all(|(j, &h)| h != window.contains(&j))
        {
            return None;
        }
        first.push(start);
    }
    Some(first)
}

/// Causal `softmax(scale · q·kᵀ) · v` for `q [batch, kv_heads, group · queries, head_dim]` (the
/// query heads that share a key/value head stacked along the query axis) against
/// `k, v [batch, kv_heads, keys, head_dim]`: query `i` of sequence `b` sees keys
/// `first[b · queries + i]..=i + keys − queries` (`first` empty: from key 0; a window from
/// [`causal_windows`]). Returns the output, shaped like `q`, and with `keep_probs` the
/// probabilities [`causal_attention_backward`] reads (empty otherwise).
pub fn causal_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    first: &[usize],
    s: CausalShape,
    scale: f32,
    keep_probs: bool,
) -> (Vec<f32>, Vec<f32>) {
    s.check(q.len(), k.len(), v.len(), first);
    let hd = s.head_dim;
    let (head_len, kv_len) = (s.queries * hd, s.keys * hd);
    let mut out = vec![0.0f32; q.len()];
    if head_len == 0 {
        return (out, Vec::new());
    }
    let heads_per_seq = s.kv_heads * s.group;
    // One query head: for each block, its scores against the keys it sees, their softmax, then
    // those probabilities times the values. `probs` is the head's kept probabilities, or one
    // block's scratch (`advance` false).
    let head = |h: usize, o: &mut [f32], probs: &mut [f32], advance: bool| {
        let kv = h / s.group;
        let first = s.first_of(first, h / heads_per_seq);
        let keys = &k[kv * kv_len..][..kv_len];
        let values = &v[kv * kv_len..][..kv_len];
        let queries = &q[h * head_len..][..head_len];
        let mut at = 0;
        for block in s.blocks(first) {
            let Block { start, end, lo, hi } = block;
            let (rows, cols) = (block.rows(), block.cols());
            let p = &mut probs[at..][..rows * cols];
            let q_block = View::new(&queries[start * hd..], rows, hd, hd);
            let k_seen = View::new(&keys[lo * hd..], cols, hd, hd);
            product_into(p, cols, false, q_block, k_seen.t());
            let starts = first.get(start..end).unwrap_or(&[]);
            softmax_window_rows(p, cols, starts, lo, hi - lo + 1 - rows, scale);
            let v_seen = View::new(&values[lo * hd..], cols, hd, hd);
            let o = &mut o[start * hd..end * hd];
            product_into(o, hd, false, View::new(p, rows, cols, cols), v_seen);
            if advance {
                at += rows * cols;
            }
        }
    };
    if keep_probs {
        let mut probs = vec![0.0f32; s.probs_len(first)];
        out.par_chunks_mut(head_len)
            .zip(s.split_probs(&mut probs, first))
            .enumerate()
            .for_each(|(h, (o, p))| head(h, o, p, true));
        (out, probs)
    } else {
        let scratch = BLOCK.min(s.queries) * s.keys;
        out.par_chunks_mut(head_len)
            .enumerate()
            .for_each_init(|| vec![0.0f32; scratch], |p, (h, o)| head(h, o, p, false));
        (out, Vec::new())
    }
}

/// `(∂q, ∂k, ∂v)` of [`causal_attention`] given the gradient of its output `grad` (shaped like
/// `q`) and the probabilities it kept.
#[allow(clippy::too_many_arguments)]
pub fn causal_attention_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    first: &[usize],
    probs: &[f32],
    grad: &[f32],
    s: CausalShape,
    scale: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(q.len(), k.len(), v.len(), first);
    assert_eq!(grad.len(), q.len(), "causal_attention_backward: grad");
    assert_eq!(
        probs.len(),
        s.probs_len(first),
        "causal_attention_backward: probs"
    );
    let hd = s.head_dim;
    let (head_len, kv_len) = (s.queries * hd, s.keys * hd);
    let mut dq = vec![0.0f32; q.len()];
    let (mut dk, mut dv) = (vec![0.0f32; k.len()], vec![0.0f32; v.len()]);
    if head_len == 0 || kv_len == 0 {
        return (dq, dk, dv);
    }
    // Where each sequence's heads start in `probs`.
    let per_seq: Vec<usize> = (0..s.batch).map(|b| s.probs_per_head(first, b)).collect();
    let seq_at: Vec<usize> = per_seq
        .iter()
        .scan(0, |at, &len| {
            let here = *at;
            *at += len * s.kv_heads * s.group;
            Some(here)
        })
        .collect();
    // One key/value head and the query heads that share it: ∂k and ∂v sum over all of them.
    let kv_head = |kv: usize, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]| {
        let b = kv / s.kv_heads;
        let first = s.first_of(first, b);
        let keys = &k[kv * kv_len..][..kv_len];
        let values = &v[kv * kv_len..][..kv_len];
        let mut ds = vec![0.0f32; BLOCK.min(s.queries) * s.keys];
        for r in 0..s.group {
            let h = kv * s.group + r;
            let queries = &q[h * head_len..][..head_len];
            let grad = &grad[h * head_len..][..head_len];
            let head_at = seq_at[b] + (kv % s.kv_heads * s.group + r) * per_seq[b];
            let probs = &probs[head_at..][..per_seq[b]];
            let dq = &mut dq[r * head_len..][..head_len];
            let mut at = 0;
            for block in s.blocks(first) {
                let Block { start, end, lo, hi } = block;
                let (rows, cols) = (block.rows(), block.cols());
                let p = &probs[at..][..rows * cols];
                at += rows * cols;
                let g = View::new(&grad[start * hd..], rows, hd, hd);
                let (k_seen, v_seen) = (&keys[lo * hd..hi * hd], &values[lo * hd..hi * hd]);
                // ∂v += pᵀ · g
                let p_view = View::new(p, rows, cols, cols);
                product_into(&mut dv[lo * hd..hi * hd], hd, true, p_view.t(), g);
                // ∂p = g · vᵀ, then ∂scores in place.
                let ds = &mut ds[..rows * cols];
                product_into(ds, cols, false, g, View::new(v_seen, cols, hd, hd).t());
                softmax_grad_rows(ds, p, cols, scale);
                let ds = View::new(ds, rows, cols, cols);
                // ∂q = ∂scores · k, ∂k += ∂scoresᵀ · q
                let dq_block = &mut dq[start * hd..end * hd];
                product_into(dq_block, hd, false, ds, View::new(k_seen, cols, hd, hd));
                let q_block = View::new(&queries[start * hd..], rows, hd, hd);
                product_into(&mut dk[lo * hd..hi * hd], hd, true, ds.t(), q_block);
            }
        }
    };
    dq.par_chunks_mut(s.group * head_len)
        .zip(dk.par_chunks_mut(kv_len).zip(dv.par_chunks_mut(kv_len)))
        .enumerate()
        .for_each(|(kv, (dq, (dk, dv)))| kv_head(kv, dq, dk, dv));
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_values as values;

    /// [`causal_attention`] and its gradient in f64, one query head at a time:
    /// `(out, ∂q, ∂k, ∂v)`.
    fn causal_reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        first: &[usize],
        grad: &[f32],
        s: CausalShape,
        scale: f64,
    ) -> [Vec<f64>; 4] {
        let (hd, cached) = (s.head_dim, s.keys - s.queries);
        let mut out = vec![0.0f64; q.len()];
        let mut dq = vec![0.0f64; q.len()];
        let (mut dk, mut dv) = (vec![0.0f64; k.len()], vec![0.0f64; v.len()]);
        let f = |x: &[f32], i: usize| f64::from(x[i]);
        for h in 0..s.batch * s.kv_heads * s.group {
            let kv = h / s.group;
            let b = h / (s.kv_heads * s.group);
            let qi = |i: usize, d: usize| (h * s.queries + i) * hd + d;
            let kj = |j: usize, d: usize| (kv * s.keys + j) * hd + d;
            for i in 0..s.queries {
                let from = first.get(b * s.queries + i).copied().unwrap_or(0);
                let visible: Vec<usize> = (from..=cached + i).collect();
                let dot = |x: &[f32], xi: usize, y: &[f32], yj: usize| -> f64 {
                    (0..hd).map(|d| f(x, qi(xi, d)) * f(y, kj(yj, d))).sum()
                };
                let scores: Vec<f64> = visible.iter().map(|&j| scale * dot(q, i, k, j)).collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = scores.iter().map(|x| (x - max).exp()).sum();
                let p: Vec<f64> = scores.iter().map(|x| (x - max).exp() / total).collect();
                // ∂p_j = g · v_j; ∂s_j = scale · p_j (∂p_j − Σ p ∂p)
                let dp: Vec<f64> = visible.iter().map(|&j| dot(grad, i, v, j)).collect();
                let mean: f64 = p.iter().zip(&dp).map(|(p, g)| p * g).sum();
                for (at, &j) in visible.iter().enumerate() {
                    let (p, ds) = (p[at], scale * p[at] * (dp[at] - mean));
                    for d in 0..hd {
                        out[qi(i, d)] += p * f(v, kj(j, d));
                        dv[kj(j, d)] += p * f(grad, qi(i, d));
                        dq[qi(i, d)] += ds * f(k, kj(j, d));
                        dk[kj(j, d)] += ds * f(q, qi(i, d));
                    }
                }
            }
        }
        [out, dq, dk, dv]
    }

    /// Segments of a packed row: query `i` sees from the start of its segment; `pad` leading
    /// queries see only themselves (left padding) — `[batch, queries]` first keys.
    fn windows(batch: usize, queries: usize, cached: usize, segment: usize) -> Vec<usize> {
        (0..batch * queries)
            .map(|at| {
                let (b, i) = (at / queries, at % queries);
                let pad = 3 * b;
                if i < pad {
                    cached + i
                } else {
                    cached + pad + (i - pad) / segment * segment
                }
            })
            .collect()
    }

    #[test]
    fn causal_attention_and_its_gradient_match_an_f64_reference() {
        crate::kernels::simd::on_every_path(|_path| {
            // Grouped heads, a partial last block, keys cached before the queries, a pass
            // shorter than one block; plain causal, then windows (padding and packed segments,
            // one of which crosses a block boundary).
            for (queries, cached) in [(BLOCK + 9, 4), (BLOCK, 0), (5, 0)] {
                let s = CausalShape {
                    batch: 2,
                    kv_heads: 2,
                    group: 3,
                    queries,
                    keys: cached + queries,
                    head_dim: 8,
                };
                let q = values(s.batch * s.kv_heads * s.group * queries * s.head_dim, 1);
                let k: Vec<f32> = values(s.batch * s.kv_heads * s.keys * s.head_dim, 2)
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect();
                let v = values(k.len(), 3);
                let grad = values(q.len(), 4);
                let scale = 0.35;
                for first in [Vec::new(), windows(s.batch, queries, cached, 23)] {
                    let (out, probs) = causal_attention(&q, &k, &v, &first, s, scale, true);
                    let (plain, none) = causal_attention(&q, &k, &v, &first, s, scale, false);
                    assert!(
                        none.is_empty() && plain == out,
                        "kept probabilities change nothing"
                    );
                    let (dq, dk, dv) =
                        causal_attention_backward(&q, &k, &v, &first, &probs, &grad, s, scale);
                    let want = causal_reference(&q, &k, &v, &first, &grad, s, f64::from(scale));
                    let outputs = [("out", &out), ("∂q", &dq), ("∂k", &dk), ("∂v", &dv)];
                    for ((name, got), want) in outputs.into_iter().zip(&want) {
                        assert_eq!(got.len(), want.len());
                        for (i, (g, w)) in got.iter().zip(want).enumerate() {
                            assert!(
                                (f64::from(*g) - w).abs() < 1e-5 * (1.0 + w.abs()),
                                "{queries} queries after {cached}, windows {}: {name}[{i}] {g} vs {w}",
                                !first.is_empty()
                            );
                        }
                    }
                }
            }
        });
    }

    #[test]
    fn windows_are_read_from_masks_that_have_them_only() {
        let (batch, queries, cached) = (2, 40, 2);
        let keys = cached + queries;
        let first = windows(batch, queries, cached, 7);
        let hidden: Vec<bool> = (0..batch * queries * keys)
            .map(|at| {
                let (row, j) = (at / keys, at % keys);
                !(first[row]..=cached + row % queries).contains(&j)
            })
            .collect();
        assert_eq!(causal_windows(&hidden, batch, queries, keys), Some(first));
        // A hole in one row's run, a key after the query, a row with nothing visible.
        for at in [5 * keys + 2 * keys / 3, 7 * keys + cached + 9, 0] {
            let mut broken = hidden.clone();
            if at == 0 {
                broken[..keys].fill(true);
            } else {
                broken[at] = !broken[at];
            }
            assert_eq!(causal_windows(&broken, batch, queries, keys), None, "{at}");
        }
    }

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
