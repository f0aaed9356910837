//! The decoder-only transformer every supported family shares (transformers'
//! `LlamaForCausalLM` math): token embedding → N × (RMSNorm → grouped-query attention with
//! rotary positions → residual → RMSNorm → SwiGLU → residual) → RMSNorm → LM head.
//!
//! Families differ only by [`ArchFeatures`] (q/k/v biases, per-head q/k RMSNorm) and by their
//! config values ([`super::config`]). Parameters are burn modules, so the same code runs on
//! every burn backend and under autodiff; the operations whose best form depends on the
//! backend go through `crate::kernels`' facade, so nothing here asks which backend it runs on.
//! Weight names are exactly the Hugging Face checkpoint's ([`super::loading`]).

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Int, Tensor, TensorData};

use super::ModelError;
use super::attention::SelfAttention;
use super::lora::{LoraConfig, Proj};
use crate::kernels::{AttentionMask, AttentionPass, PassShape};

pub use super::attention::KvCache;
pub use super::config::{ArchFeatures, Architecture, DecoderConfig, tensor_shapes};

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Proj,
    pub up_proj: Proj,
    pub down_proj: Proj,
}

/// One pre-norm residual block.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

/// The trainable parameters of a causal language model.
#[derive(Module, Debug)]
pub struct Transformer {
    pub embed_tokens: Embedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
}

/// A loaded model: parameters plus the device they live on.
#[derive(Debug)]
pub struct CausalLm {
    pub config: DecoderConfig,
    pub transformer: Transformer,
    pub device: Device,
}

impl CausalLm {
    /// The same weights on the plain (non-autodiff) device, for generation during training.
    pub fn for_inference(&self) -> Self {
        Self {
            config: self.config.clone(),
            transformer: self.transformer.valid(),
            device: self.device.clone().without_autodiff(),
        }
    }

    /// A fresh cache for this model, with room for `capacity` positions before it grows.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.config.num_hidden_layers, capacity)
    }

    /// A cache that keeps nothing (for training and one-shot scoring).
    pub fn no_cache(&self) -> KvCache {
        KvCache::disabled(self.config.num_hidden_layers)
    }

    /// Attaches fresh LoRA adapters to the projections `config.target_modules` names and freezes
    /// every other parameter. Unknown target names are an error naming them.
    /// Each projection's `A` is drawn from `seed` mixed with its layer and name, on the host, so
    /// a run's seed gives the same adapters on every backend.
    pub fn attach_lora(self, config: &LoraConfig, seed: u64) -> Result<Self, ModelError> {
        if let Some(bad) = config
            .target_modules
            .iter()
            .find(|t| !super::lora::TARGETS.contains(&t.as_str()))
        {
            return Err(ModelError::UnknownLoraTarget {
                module: bad.clone(),
                choices: super::lora::TARGETS.join(", "),
            });
        }
        let device = self.device.clone();
        let wants = |name: &str| config.target_modules.iter().any(|t| t == name);
        let adapt = |p: Proj, name: &str, layer: usize| {
            if wants(name) {
                let which = super::lora::TARGETS
                    .iter()
                    .position(|t| *t == name)
                    .unwrap_or(0);
                let stream = (layer * super::lora::TARGETS.len() + which) as u64;
                p.attach_lora(
                    config,
                    &device,
                    seed ^ stream.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                )
            } else {
                p.no_grad()
            }
        };
        let Transformer {
            embed_tokens,
            layers,
            norm,
            lm_head,
        } = self.transformer;
        let layers = layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let a = l.self_attn;
                DecoderLayer {
                    input_layernorm: l.input_layernorm.no_grad(),
                    self_attn: SelfAttention {
                        q_proj: adapt(a.q_proj, "q_proj", i),
                        k_proj: adapt(a.k_proj, "k_proj", i),
                        v_proj: adapt(a.v_proj, "v_proj", i),
                        o_proj: adapt(a.o_proj, "o_proj", i),
                        q_norm: a.q_norm.map(Module::no_grad),
                        k_norm: a.k_norm.map(Module::no_grad),
                        ..a
                    },
                    post_attention_layernorm: l.post_attention_layernorm.no_grad(),
                    mlp: Mlp {
                        gate_proj: adapt(l.mlp.gate_proj, "gate_proj", i),
                        up_proj: adapt(l.mlp.up_proj, "up_proj", i),
                        down_proj: adapt(l.mlp.down_proj, "down_proj", i),
                    },
                }
            })
            .collect();
        Ok(Self {
            transformer: Transformer {
                embed_tokens: embed_tokens.no_grad(),
                layers,
                norm: norm.no_grad(),
                lm_head: lm_head.map(Module::no_grad),
            },
            ..self
        })
    }

    /// Runs the decoder over `ids` (`[batch, seq]`) at the given positions (`positions[b][t]`),
    /// appending keys and values to `cache`, and returns the final hidden states
    /// `[batch, seq, hidden]` (after the last norm).
    pub fn forward_hidden(
        &self,
        ids: &[Vec<u32>],
        positions: &[Vec<usize>],
        mask: AttentionMask,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let batch = ids.len();
        let seq = ids.first().map_or(0, Vec::len);
        let flat_ids: Vec<i64> = ids.iter().flatten().map(|&i| i64::from(i)).collect();
        let ids =
            Tensor::<2, Int>::from_data(TensorData::new(flat_ids, [batch, seq]), &self.device);
        let flat_pos: Vec<usize> = positions.iter().flatten().copied().collect();
        let hd = self.config.head_dim;
        let (cos, sin) = self.config.rope.tables(hd, &flat_pos);
        let cos = Tensor::<4>::from_data(TensorData::new(cos, [batch, 1, seq, hd]), &self.device);
        let sin = Tensor::<4>::from_data(TensorData::new(sin, [batch, 1, seq, hd]), &self.device);

        let mut x = self.transformer.embed_tokens.forward(ids); // [batch, seq, hidden]
        let slots = cache.reserve(seq);
        // The mask, prepared once for every layer in the form the backend's attention reads.
        let shape = PassShape {
            batch,
            heads: self.config.num_attention_heads,
            kv_heads: self.config.num_key_value_heads,
            head_dim: hd,
            queries: seq,
            cached: slots.start,
            uses_cache: slots.enabled,
        };
        let pass = AttentionPass::new(mask, shape, &self.device);
        for (layer, slot) in self.transformer.layers.iter().zip(cache.layer_slots()) {
            let attn_in = crate::kernels::rms_norm(&layer.input_layernorm, x.clone());
            let attn_out = layer
                .self_attn
                .forward(attn_in, (&cos, &sin), &pass, slot, slots);
            let h = x + attn_out;
            let mlp_in = crate::kernels::rms_norm(&layer.post_attention_layernorm, h.clone());
            let mlp = &layer.mlp;
            let [gate, up] = Proj::forward_many([&mlp.gate_proj, &mlp.up_proj], mlp_in);
            let gated = crate::kernels::silu_mul(gate, up);
            x = h + mlp.down_proj.forward(gated);
        }
        cache.advance(seq);
        crate::kernels::rms_norm(&self.transformer.norm, x)
    }

    /// Logits `[batch, seq, vocab]` from final hidden states.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.transformer.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [batch, seq, h] = hidden.dims();
                let w = self.transformer.embed_tokens.weight.val(); // [vocab, hidden]
                let rows = hidden.reshape([batch * seq, h]);
                crate::kernels::matmul_nt(rows, w).reshape([batch, seq, self.config.vocab_size])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::tiny;

    fn last_logits(model: &CausalLm, hidden: Tensor<3>) -> Vec<f32> {
        let seq = hidden.dims()[1];
        model
            .logits(hidden.narrow(1, seq - 1, 1))
            .into_data()
            .try_into_vec::<f32>()
            .expect("f32")
    }

    /// The training pass on flex (autodiff: fused softmax, grouped heads stacked, no repeated
    /// keys) gives the hidden states of the inference pass (flex's own attention), causal and
    /// with an explicit mask hiding a prefix of the second row.
    #[test]
    fn training_attention_matches_inference() {
        let config = tiny::config();
        assert!(
            config.num_key_value_heads < config.num_attention_heads,
            "tiny is GQA"
        );
        let build = |device: &Device| {
            CausalLm::from_weights(config.clone(), &tiny::RandomInit::new(&config, 5), device)
                .expect("tiny model")
        };
        let (plain, train) = (build(&Device::flex()), build(&Device::flex().autodiff()));
        let ids = vec![vec![5u32, 17, 42, 9, 77, 31], vec![8, 3, 99, 12, 4, 60]];
        let pos: Vec<Vec<usize>> = vec![(0..6).collect(), (0..6).collect()];
        let explicit = |device: &Device| {
            // Row 1: the first two keys hidden from the later queries (a packed first example).
            let mut hidden = vec![false; 2 * 6 * 6];
            for q in 0..6 {
                for k in 0..6 {
                    hidden[(6 + q) * 6 + k] = k > q || (q >= 2 && k < 2);
                    hidden[q * 6 + k] = k > q;
                }
            }
            AttentionMask::Explicit(Box::new(Tensor::from_data(
                TensorData::new(hidden, [2, 1, 6, 6]),
                device,
            )))
        };
        for (label, masks) in [
            ("causal", (AttentionMask::Causal, AttentionMask::Causal)),
            (
                "explicit",
                (explicit(&plain.device), explicit(&train.device)),
            ),
        ] {
            let want = plain.forward_hidden(&ids, &pos, masks.0, &mut plain.no_cache());
            let got = train.forward_hidden(&ids, &pos, masks.1, &mut train.no_cache());
            let diff: f32 = (got.inner() - want).abs().max().into_scalar();
            assert!(diff < 1e-4, "{label}: max |Δ| = {diff}");
        }
    }

    /// Token by token through a cache that starts too small (so it grows twice), with left
    /// padding in one row: the same last logits as one pass over the whole sequence.
    #[test]
    fn cached_decode_matches_a_full_pass() {
        let config = tiny::config();
        let device = Device::flex();
        let model =
            CausalLm::from_weights(config.clone(), &tiny::RandomInit::new(&config, 3), &device)
                .expect("tiny model");
        let ids: Vec<u32> = vec![5, 17, 42, 9, 77, 31, 8];
        let n = ids.len();
        let full = model.forward_hidden(
            std::slice::from_ref(&ids),
            &[(0..n).collect()],
            AttentionMask::Causal,
            &mut model.no_cache(),
        );
        let want = last_logits(&model, full);

        let pad = 2;
        let rows = [
            ids.clone(),
            [vec![0; pad], ids[..n - pad].to_vec()].concat(),
        ];
        let mut cache = model.new_cache(1);
        let mut got = Vec::new();
        for t in 0..n {
            let step: Vec<Vec<u32>> = rows.iter().map(|r| vec![r[t]]).collect();
            let pos = vec![vec![t], vec![t.saturating_sub(pad)]];
            let hidden = model.forward_hidden(
                &step,
                &pos,
                AttentionMask::LeftPadded(vec![0, pad]),
                &mut cache,
            );
            got = last_logits(&model, hidden);
        }
        let vocab = config.vocab_size;
        for (a, b) in got[..vocab].iter().zip(&want) {
            assert!((a - b).abs() < 1e-4, "row 0: {a} vs {b}");
        }
        // Row 1 saw the same tokens minus the last `pad`, after its padding.
        let short = model.forward_hidden(
            &[ids[..n - pad].to_vec()],
            &[(0..n - pad).collect()],
            AttentionMask::Causal,
            &mut model.no_cache(),
        );
        for (a, b) in got[vocab..].iter().zip(&last_logits(&model, short)) {
            assert!((a - b).abs() < 1e-4, "row 1: {a} vs {b}");
        }
        assert_eq!(cache.len(), n);
    }
}
