//! Grouped-query self-attention with rotary positions, and the KV cache it writes during
//! generation. The attention itself is [`crate::kernels::AttentionPass`], which picks the
//! kernel the backend has.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::Tensor;

use super::lora::Proj;
use crate::kernels::{AttentionPass, Keys};

/// Attention block: q/k/v/o projections, optional per-head q/k norms.
#[derive(Module, Debug)]
pub struct SelfAttention {
    pub q_proj: Proj,
    pub k_proj: Proj,
    pub v_proj: Proj,
    pub o_proj: Proj,
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

/// Keys and values of the positions already processed, per layer, in buffers
/// `[batch, kv_heads, capacity, head_dim]` written in place as positions arrive (a buffer held
/// by the cache alone is updated without a copy). A pass that needs more room reallocates
/// once, doubling.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    /// Positions the buffers are allocated for.
    capacity: usize,
    /// `false` for training passes, which never reuse keys and values.
    enabled: bool,
}

impl KvCache {
    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl KvCache {
    /// A cache for `layers` layers with room for `capacity` positions before it grows.
    pub(crate) fn new(layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; layers],
            len: 0,
            capacity,
            enabled: true,
        }
    }

    /// A cache that keeps nothing (for training and one-shot scoring).
    pub(crate) fn disabled(layers: usize) -> Self {
        Self {
            enabled: false,
            ..Self::new(layers, 0)
        }
    }

    /// Makes room for `seq` more positions (doubling) and says where this pass writes.
    pub(crate) fn reserve(&mut self, seq: usize) -> SlotInfo {
        let start = self.len;
        if self.enabled && start + seq > self.capacity {
            self.capacity = (2 * self.capacity).max(start + seq);
        }
        SlotInfo {
            enabled: self.enabled,
            start,
            capacity: self.capacity,
        }
    }

    /// The buffers of every layer, to hand one to each layer of the pass.
    pub(crate) fn layer_slots(
        &mut self,
    ) -> impl Iterator<Item = &mut Option<(Tensor<4>, Tensor<4>)>> {
        self.layers.iter_mut()
    }

    /// Repeats every batch row `n` times, in place of the row (row `b` becomes rows
    /// `b·n … b·n + n − 1`), so several samples continue from one processed prompt.
    pub fn repeat_rows(&mut self, n: usize) {
        let Some((k, _)) = self.layers.iter().flatten().next() else {
            return;
        };
        let rows = k.dims()[0];
        let index: Vec<usize> = (0..rows).flat_map(|b| std::iter::repeat_n(b, n)).collect();
        self.select_rows(&index);
    }

    /// Keeps the batch rows `rows`, in that order (a row may repeat): generation drops the rows
    /// that have finished, so later steps compute only the live ones.
    pub fn select_rows(&mut self, rows: &[usize]) {
        let index: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        for (k, v) in self.layers.iter_mut().flatten() {
            let index = Tensor::<1, burn::tensor::Int>::from_data(
                burn::tensor::TensorData::new(index.clone(), [rows.len()]),
                &k.device(),
            );
            *k = k.clone().select(0, index.clone());
            *v = v.clone().select(0, index);
        }
    }

    /// Counts the pass's `seq` positions as cached.
    pub(crate) fn advance(&mut self, seq: usize) {
        self.len += seq;
    }
}

/// Where a pass writes into the KV cache.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlotInfo {
    pub(crate) enabled: bool,
    /// Positions already cached (the pass writes from here).
    pub(crate) start: usize,
    /// Positions the buffers must hold.
    pub(crate) capacity: usize,
}

impl SelfAttention {
    /// `x [batch, seq, hidden]` → `[batch, seq, hidden]`, with `cos`/`sin` the rotary tables
    /// `[batch, 1, seq, head_dim]` and `slot` this layer's cache buffers.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        (cos, sin): (&Tensor<4>, &Tensor<4>),
        pass: &AttentionPass,
        slot: &mut Option<(Tensor<4>, Tensor<4>)>,
        slots: SlotInfo,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        // [batch, seq, heads * head_dim] → [batch, heads, seq, head_dim]
        let [q, k, v] = Proj::forward_many([&self.q_proj, &self.k_proj, &self.v_proj], x);
        let mut q = q.reshape([batch, seq, nh, hd]);
        let mut k = k.reshape([batch, seq, nkv, hd]);
        let v = v.reshape([batch, seq, nkv, hd]).swap_dims(1, 2);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = crate::kernels::rms_norm(qn, q);
            k = crate::kernels::rms_norm(kn, k);
        }
        let q = crate::kernels::rope(q.swap_dims(1, 2), cos, sin);
        let k = crate::kernels::rope(k.swap_dims(1, 2), cos, sin);
        let keys = if slots.enabled {
            let (kb, vb) = cache_write(slot.take(), k, v, slots);
            *slot = Some((kb.clone(), vb.clone()));
            Keys::Cache {
                k: kb,
                v: vb,
                len: slots.start + seq,
            }
        } else {
            Keys::Fresh { k, v }
        };
        let out = pass.attend(q, keys); // [batch, heads, seq, head_dim]
        let out = out.swap_dims(1, 2).reshape([batch, seq, nh * hd]);
        self.o_proj.forward(out)
    }
}

/// Writes the new keys and values `[batch, kv_heads, seq, head_dim]` at `slots.start` into a
/// layer's buffers (allocated, or grown to `slots.capacity`, first) and returns them.
fn cache_write(
    buffers: Option<(Tensor<4>, Tensor<4>)>,
    k: Tensor<4>,
    v: Tensor<4>,
    slots: SlotInfo,
) -> (Tensor<4>, Tensor<4>) {
    let [batch, nkv, seq, hd] = k.dims();
    let device = k.device();
    let fresh = || Tensor::<4>::zeros([batch, nkv, slots.capacity, hd], &device);
    let (kb, vb) = match buffers {
        Some((kb, vb)) if kb.dims()[2] == slots.capacity => (kb, vb),
        Some((kb, vb)) => {
            // Grow: copy the cached prefix into larger buffers.
            let keep = slots.start;
            let kn =
                fresh().slice_assign([0..batch, 0..nkv, 0..keep, 0..hd], kb.narrow(2, 0, keep));
            let vn =
                fresh().slice_assign([0..batch, 0..nkv, 0..keep, 0..hd], vb.narrow(2, 0, keep));
            (kn, vn)
        }
        None => (fresh(), fresh()),
    };
    let at = [0..batch, 0..nkv, slots.start..slots.start + seq, 0..hd];
    (kb.slice_assign(at.clone(), k), vb.slice_assign(at, v))
}
