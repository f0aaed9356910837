//! The decoder-only transformer every supported family shares (transformers'
//! `LlamaForCausalLM` math): token embedding → N × (RMSNorm → grouped-query attention with
//! rotary positions → residual → RMSNorm → SwiGLU → residual) → RMSNorm → LM head.
//!
//! Families differ only by [`ArchFeatures`] (q/k/v biases, per-head q/k RMSNorm) and by their
//! config values. Parameters are burn modules, so the same code runs on every burn backend and
//! under autodiff. Weight names are exactly the Hugging Face checkpoint's.

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::lora::{LoraConfig, Proj};
use super::rope::RopeConfig;
use crate::formats::{FormatError, HostTensor, WeightSource};

/// The model families the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    /// The `model_type` written to `config.json`.
    pub fn model_type(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }

    /// The transformers class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => super::llama::HF_CLASS,
            Self::Qwen2 => super::qwen2::HF_CLASS,
            Self::Qwen3 => super::qwen3::HF_CLASS,
        }
    }

    /// What the family adds to the shared decoder.
    pub fn features(self) -> ArchFeatures {
        match self {
            Self::Llama => super::llama::FEATURES,
            Self::Qwen2 => super::qwen2::FEATURES,
            Self::Qwen3 => super::qwen3::FEATURES,
        }
    }

    /// The family that reads a `model_type`, if any.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        if super::llama::MODEL_TYPES.contains(&model_type) {
            Some(Self::Llama)
        } else if super::qwen2::MODEL_TYPES.contains(&model_type) {
            Some(Self::Qwen2)
        } else if super::qwen3::MODEL_TYPES.contains(&model_type) {
            Some(Self::Qwen3)
        } else {
            None
        }
    }
}

/// Structural switches that distinguish the families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchFeatures {
    /// Biases on the q, k and v projections (Qwen2).
    pub attention_bias: bool,
    /// RMSNorm over each head's queries and keys before RoPE (Qwen3).
    pub qk_norm: bool,
}

/// Hyperparameters of a decoder, architecture-neutral (mirrors `config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub architecture: Architecture,
    /// Rows of the embedding matrix (may exceed the tokenizer's vocabulary).
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Per-head width; `hidden_size / num_attention_heads` unless the config says otherwise.
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope: RopeConfig,
    /// Longest context the model was trained for (`max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// The LM head reuses the embedding matrix.
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    /// Tokens that end generation (`eos_token_id` of config and generation config).
    pub eos_token_ids: Vec<u32>,
}

impl DecoderConfig {
    /// Parameter count (embedding counted once when tied).
    pub fn num_parameters(&self) -> usize {
        let f = self.architecture.features();
        let (h, hd) = (self.hidden_size, self.head_dim);
        let q = self.num_attention_heads * hd;
        let kv = self.num_key_value_heads * hd;
        let mut attn = h * q + 2 * h * kv + q * h;
        if f.attention_bias {
            attn += q + 2 * kv;
        }
        if f.qk_norm {
            attn += 2 * hd;
        }
        let mlp = 3 * h * self.intermediate_size;
        let layer = attn + mlp + 2 * h;
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed + self.num_hidden_layers * layer + h + head
    }
}

/// Every tensor of a checkpoint with this config, by Hugging Face name, with its shape
/// (`[out, in]` for projections, as transformers stores them).
pub fn tensor_shapes(config: &DecoderConfig) -> Vec<(String, Vec<usize>)> {
    let f = config.architecture.features();
    let (h, hd, ff) = (
        config.hidden_size,
        config.head_dim,
        config.intermediate_size,
    );
    let q = config.num_attention_heads * hd;
    let kv = config.num_key_value_heads * hd;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![config.vocab_size, h],
    )];
    for i in 0..config.num_hidden_layers {
        let p = format!("model.layers.{i}");
        out.push((format!("{p}.input_layernorm.weight"), vec![h]));
        for (name, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push((format!("{p}.self_attn.{name}.weight"), vec![rows, h]));
            if f.attention_bias {
                out.push((format!("{p}.self_attn.{name}.bias"), vec![rows]));
            }
        }
        out.push((format!("{p}.self_attn.o_proj.weight"), vec![h, q]));
        if f.qk_norm {
            out.push((format!("{p}.self_attn.q_norm.weight"), vec![hd]));
            out.push((format!("{p}.self_attn.k_norm.weight"), vec![hd]));
        }
        out.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        out.push((format!("{p}.mlp.gate_proj.weight"), vec![ff, h]));
        out.push((format!("{p}.mlp.up_proj.weight"), vec![ff, h]));
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, ff]));
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !config.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![config.vocab_size, h]));
    }
    out
}

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

/// A loaded model: parameters plus the runtime facts needed to run them.
#[derive(Debug)]
pub struct CausalLm {
    pub config: DecoderConfig,
    pub transformer: Transformer,
    pub device: Device,
    /// The backend's attention takes fewer k/v heads than q heads directly.
    pub native_gqa: bool,
}

fn rms_norm(weight: Tensor<1>, eps: f64) -> RmsNorm {
    RmsNorm {
        gamma: Param::from_tensor(weight),
        epsilon: eps,
    }
}

fn tensor_1d(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn tensor_2d(values: Vec<f32>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
fn transpose_host(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    const BLOCK: usize = 32;
    for r0 in (0..rows).step_by(BLOCK) {
        for c0 in (0..cols).step_by(BLOCK) {
            for r in r0..(r0 + BLOCK).min(rows) {
                for c in c0..(c0 + BLOCK).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

struct Builder<'a> {
    source: &'a dyn WeightSource,
    device: &'a Device,
    eps: f64,
}

impl Builder<'_> {
    /// A linear layer from an HF `[out, in]` weight, stored `[in, out]` for `x · W`.
    fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear, FormatError> {
        let w = self
            .source
            .require(&format!("{prefix}.weight"), &[d_out, d_in])?;
        let weight = tensor_2d(
            transpose_host(&w.values, d_out, d_in),
            [d_in, d_out],
            self.device,
        );
        let bias = if bias {
            let b = self.source.require(&format!("{prefix}.bias"), &[d_out])?;
            Some(Param::from_tensor(tensor_1d(b.values, self.device)))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    fn proj(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Proj, FormatError> {
        Ok(Proj::new(self.linear(prefix, d_in, d_out, bias)?))
    }

    fn norm(&self, name: &str, dim: usize) -> Result<RmsNorm, FormatError> {
        let w = self.source.require(name, &[dim])?;
        Ok(rms_norm(tensor_1d(w.values, self.device), self.eps))
    }
}

impl CausalLm {
    /// Builds the model from weights named as in the Hugging Face checkpoint.
    pub fn from_weights(
        config: DecoderConfig,
        source: &dyn WeightSource,
        device: &Device,
        native_gqa: bool,
    ) -> Result<Self, FormatError> {
        let b = Builder {
            source,
            device,
            eps: config.rms_norm_eps,
        };
        let features = config.architecture.features();
        let (h, hd) = (config.hidden_size, config.head_dim);
        let q_dim = config.num_attention_heads * hd;
        let kv_dim = config.num_key_value_heads * hd;

        let embed = source.require("model.embed_tokens.weight", &[config.vocab_size, h])?;
        let embed_tokens = Embedding {
            weight: Param::from_tensor(tensor_2d(embed.values, [config.vocab_size, h], device)),
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let bias = features.attention_bias;
            let (q_norm, k_norm) = if features.qk_norm {
                (
                    Some(b.norm(&format!("{p}.self_attn.q_norm.weight"), hd)?),
                    Some(b.norm(&format!("{p}.self_attn.k_norm.weight"), hd)?),
                )
            } else {
                (None, None)
            };
            layers.push(DecoderLayer {
                input_layernorm: b.norm(&format!("{p}.input_layernorm.weight"), h)?,
                self_attn: SelfAttention {
                    q_proj: b.proj(&format!("{p}.self_attn.q_proj"), h, q_dim, bias)?,
                    k_proj: b.proj(&format!("{p}.self_attn.k_proj"), h, kv_dim, bias)?,
                    v_proj: b.proj(&format!("{p}.self_attn.v_proj"), h, kv_dim, bias)?,
                    o_proj: b.proj(&format!("{p}.self_attn.o_proj"), q_dim, h, false)?,
                    q_norm,
                    k_norm,
                    num_heads: config.num_attention_heads,
                    num_kv_heads: config.num_key_value_heads,
                    head_dim: hd,
                },
                post_attention_layernorm: b
                    .norm(&format!("{p}.post_attention_layernorm.weight"), h)?,
                mlp: Mlp {
                    gate_proj: b.proj(
                        &format!("{p}.mlp.gate_proj"),
                        h,
                        config.intermediate_size,
                        false,
                    )?,
                    up_proj: b.proj(
                        &format!("{p}.mlp.up_proj"),
                        h,
                        config.intermediate_size,
                        false,
                    )?,
                    down_proj: b.proj(
                        &format!("{p}.mlp.down_proj"),
                        config.intermediate_size,
                        h,
                        false,
                    )?,
                },
            });
        }
        let norm = b.norm("model.norm.weight", h)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(b.linear("lm_head", h, config.vocab_size, false)?)
        };
        Ok(Self {
            config,
            transformer: Transformer {
                embed_tokens,
                layers,
                norm,
                lm_head,
            },
            device: device.clone(),
            native_gqa,
        })
    }

    /// Every parameter by its Hugging Face name, in f32 with the checkpoint's shape
    /// (projections back to `[out, in]`), in [`tensor_shapes`] order.
    pub fn named_tensors(&self) -> Result<Vec<(String, HostTensor)>, String> {
        let read = |t: Tensor<2>| -> Result<(Vec<f32>, [usize; 2]), String> {
            let dims = t.dims();
            let v = t
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            Ok((v, dims))
        };
        let read1 = |t: Tensor<1>| -> Result<HostTensor, String> {
            let n = t.dims()[0];
            let values = t
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            Ok(HostTensor {
                values,
                shape: vec![n],
            })
        };
        let weight_in_out = |w: Tensor<2>| -> Result<HostTensor, String> {
            let (v, [d_in, d_out]) = read(w)?;
            Ok(HostTensor {
                values: transpose_host(&v, d_in, d_out),
                shape: vec![d_out, d_in],
            })
        };
        let mut out = Vec::new();
        let (embed, dims) = read(self.transformer.embed_tokens.weight.val())?;
        out.push((
            "model.embed_tokens.weight".to_string(),
            HostTensor {
                values: embed,
                shape: dims.to_vec(),
            },
        ));
        for (i, layer) in self.transformer.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.self_attn;
            out.push((
                format!("{p}.input_layernorm.weight"),
                read1(layer.input_layernorm.gamma.val())?,
            ));
            for (name, l) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
            ] {
                out.push((
                    format!("{p}.self_attn.{name}.weight"),
                    weight_in_out(l.merged_weight())?,
                ));
                if let Some(b) = &l.base.bias {
                    out.push((format!("{p}.self_attn.{name}.bias"), read1(b.val())?));
                }
            }
            out.push((
                format!("{p}.self_attn.o_proj.weight"),
                weight_in_out(a.o_proj.merged_weight())?,
            ));
            if let (Some(qn), Some(kn)) = (&a.q_norm, &a.k_norm) {
                out.push((
                    format!("{p}.self_attn.q_norm.weight"),
                    read1(qn.gamma.val())?,
                ));
                out.push((
                    format!("{p}.self_attn.k_norm.weight"),
                    read1(kn.gamma.val())?,
                ));
            }
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                read1(layer.post_attention_layernorm.gamma.val())?,
            ));
            out.push((
                format!("{p}.mlp.gate_proj.weight"),
                weight_in_out(layer.mlp.gate_proj.merged_weight())?,
            ));
            out.push((
                format!("{p}.mlp.up_proj.weight"),
                weight_in_out(layer.mlp.up_proj.merged_weight())?,
            ));
            out.push((
                format!("{p}.mlp.down_proj.weight"),
                weight_in_out(layer.mlp.down_proj.merged_weight())?,
            ));
        }
        out.push((
            "model.norm.weight".to_string(),
            read1(self.transformer.norm.gamma.val())?,
        ));
        if let Some(head) = &self.transformer.lm_head {
            out.push((
                "lm_head.weight".to_string(),
                weight_in_out(head.weight.val())?,
            ));
        }
        Ok(out)
    }

    /// The same weights on the plain (non-autodiff) device, for generation during training.
    pub fn for_inference(&self) -> Self {
        let device = self.device.clone().without_autodiff();
        Self {
            config: self.config.clone(),
            transformer: self.transformer.valid(),
            native_gqa: self.native_gqa || crate::backend::is_flex_inference(&device),
            device,
        }
    }

    /// Runs on flex without autodiff, where the engine's fused inference kernels apply.
    fn flex_inference(&self) -> bool {
        crate::backend::is_flex_inference(&self.device)
    }

    /// Runs on flex, with or without autodiff: the fused kernels with backward passes apply.
    pub fn flex(&self) -> bool {
        crate::backend::is_flex(&self.device)
    }

    /// A fresh cache for this model, with room for `capacity` positions before it grows.
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache {
            layers: vec![None; self.config.num_hidden_layers],
            len: 0,
            capacity,
            enabled: true,
        }
    }

    /// A cache that keeps nothing (for training and one-shot scoring).
    pub fn no_cache(&self) -> KvCache {
        KvCache {
            enabled: false,
            ..self.new_cache(0)
        }
    }

    /// Attaches fresh LoRA adapters to the projections `config.target_modules` names and freezes
    /// every other parameter. Unknown target names are an error naming them.
    pub fn attach_lora(self, config: &LoraConfig) -> Result<Self, String> {
        if let Some(bad) = config
            .target_modules
            .iter()
            .find(|t| !super::lora::TARGETS.contains(&t.as_str()))
        {
            return Err(format!(
                "unknown LoRA target module `{bad}` (choose from {})",
                super::lora::TARGETS.join(", ")
            ));
        }
        let device = self.device.clone();
        let wants = |name: &str| config.target_modules.iter().any(|t| t == name);
        let adapt = |p: Proj, name: &str| {
            if wants(name) {
                p.attach_lora(config, &device)
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
            .map(|l| {
                let a = l.self_attn;
                DecoderLayer {
                    input_layernorm: l.input_layernorm.no_grad(),
                    self_attn: SelfAttention {
                        q_proj: adapt(a.q_proj, "q_proj"),
                        k_proj: adapt(a.k_proj, "k_proj"),
                        v_proj: adapt(a.v_proj, "v_proj"),
                        o_proj: adapt(a.o_proj, "o_proj"),
                        q_norm: a.q_norm.map(Module::no_grad),
                        k_norm: a.k_norm.map(Module::no_grad),
                        ..a
                    },
                    post_attention_layernorm: l.post_attention_layernorm.no_grad(),
                    mlp: Mlp {
                        gate_proj: adapt(l.mlp.gate_proj, "gate_proj"),
                        up_proj: adapt(l.mlp.up_proj, "up_proj"),
                        down_proj: adapt(l.mlp.down_proj, "down_proj"),
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
        let start = cache.len;
        if cache.enabled && start + seq > cache.capacity {
            cache.capacity = (2 * cache.capacity).max(start + seq);
        }
        let slots = SlotInfo {
            enabled: cache.enabled,
            start,
            capacity: cache.capacity,
        };
        // The left-padding mask as a tensor, for the passes that go through burn's attention.
        let mask = match mask {
            AttentionMask::LeftPadded(pads)
                if seq > 1 || !self.flex_inference() || !slots.enabled =>
            {
                if pads.iter().all(|&p| p == 0) {
                    AttentionMask::Causal
                } else {
                    AttentionMask::Explicit(Box::new(padding_mask(
                        &pads,
                        start,
                        seq,
                        start + seq,
                        &self.device,
                    )))
                }
            }
            other => other,
        };
        // Training on flex: the mask `kernels::attention_softmax` reads, on the host with the
        // grouped query heads stacked, built once for every layer.
        let stacked = if self.flex() && !self.flex_inference() {
            let group = self.config.num_attention_heads / self.config.num_key_value_heads;
            host_mask(&mask).map(|hidden| stack_mask_rows(hidden, batch, group, seq, start + seq))
        } else {
            None
        };
        let masks = (&mask, stacked.as_deref());
        for (layer, slot) in self.transformer.layers.iter().zip(cache.layers.iter_mut()) {
            let attn_in = layer.input_layernorm.forward(x.clone());
            let attn_out =
                self.attention(&layer.self_attn, attn_in, &cos, &sin, masks, slot, slots);
            let h = x + attn_out;
            let mlp_in = layer.post_attention_layernorm.forward(h.clone());
            let mlp = &layer.mlp;
            let [gate, up] = Proj::forward_many([&mlp.gate_proj, &mlp.up_proj], mlp_in);
            let gated = if self.flex() {
                crate::kernels::silu_mul(gate, up) // flex: one fused pass each way
            } else {
                silu(gate) * up
            };
            x = h + mlp.down_proj.forward(gated);
        }
        cache.len += seq;
        self.transformer.norm.forward(x)
    }

    /// Logits `[batch, seq, vocab]` from final hidden states.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.transformer.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                let [batch, seq, h] = hidden.dims();
                let w = self.transformer.embed_tokens.weight.val(); // [vocab, hidden]
                let rows = hidden.reshape([batch * seq, h]);
                let logits = if batch * seq <= crate::kernels::SMALL_ROWS && self.flex_inference() {
                    crate::kernels::matmul_small_nt(rows, w)
                } else {
                    rows.matmul(w.transpose())
                };
                logits.reshape([batch, seq, self.config.vocab_size])
            }
        }
    }

    fn attention(
        &self,
        attn: &SelfAttention,
        x: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        (mask, stacked): (&AttentionMask, Option<&[bool]>),
        slot: &mut Option<(Tensor<4>, Tensor<4>)>,
        slots: SlotInfo,
    ) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (nh, nkv, hd) = (attn.num_heads, attn.num_kv_heads, attn.head_dim);
        // [batch, seq, heads * head_dim] → [batch, heads, seq, head_dim]
        let [q, k, v] = Proj::forward_many([&attn.q_proj, &attn.k_proj, &attn.v_proj], x);
        let mut q = q.reshape([batch, seq, nh, hd]);
        let mut k = k.reshape([batch, seq, nkv, hd]);
        let v = v.reshape([batch, seq, nkv, hd]).swap_dims(1, 2);
        if let (Some(qn), Some(kn)) = (&attn.q_norm, &attn.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        let (q, k) = if self.flex() {
            // one fused pass each way
            (
                crate::kernels::rope(q.swap_dims(1, 2), cos.clone(), sin.clone()),
                crate::kernels::rope(k.swap_dims(1, 2), cos.clone(), sin.clone()),
            )
        } else {
            (
                apply_rope(q.swap_dims(1, 2), cos, sin),
                apply_rope(k.swap_dims(1, 2), cos, sin),
            )
        };
        let (k, v) = if slots.enabled {
            let (kb, vb) = self.cache_write(slot.take(), k, v, slots);
            let len = slots.start + seq;
            if let (AttentionMask::LeftPadded(pads), 1, true) = (mask, seq, self.flex_inference()) {
                // Decode on flex: the kernel reads the buffers in place.
                let out = crate::kernels::decode_attention(q, kb.clone(), vb.clone(), len, pads);
                *slot = Some((kb, vb));
                return attn
                    .o_proj
                    .forward(out.swap_dims(1, 2).reshape([batch, 1, nh * hd]));
            }
            let views = (kb.clone().narrow(2, 0, len), vb.clone().narrow(2, 0, len));
            *slot = Some((kb, vb));
            views
        } else {
            (k, v)
        };
        if let Some(hidden) = stacked {
            // Training on flex: scale, mask and softmax in one pass each way, and grouped-query
            // heads without repeating keys and values: the query heads that share a kv head are
            // stacked along the query axis, so each kv head is one product.
            let q = q.reshape([batch, nkv, (nh / nkv) * seq, hd]);
            let scores = q.matmul(k.swap_dims(2, 3));
            let scale = 1.0 / (hd as f32).sqrt();
            let probs = crate::kernels::attention_softmax(scores, hidden.to_vec(), scale);
            let out = probs
                .matmul(v)
                .reshape([batch, nh, seq, hd])
                .swap_dims(1, 2)
                .reshape([batch, seq, nh * hd]);
            return attn.o_proj.forward(out);
        }
        let (k, v) = if self.native_gqa || nh == nkv {
            (k, v)
        } else {
            (repeat_kv(k, nh / nkv), repeat_kv(v, nh / nkv))
        };
        let (mask, is_causal) = match mask {
            AttentionMask::Causal | AttentionMask::LeftPadded(_) => (None, true),
            AttentionMask::Explicit(m) => (Some(m.as_ref().clone()), false),
        };
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal,
        };
        let out = attention(q, k, v, mask, None, options); // [batch, heads, seq, head_dim]
        let out = out.swap_dims(1, 2).reshape([batch, seq, nh * hd]);
        attn.o_proj.forward(out)
    }

    /// Writes the new keys and values `[batch, kv_heads, seq, head_dim]` at `slots.start` into
    /// this layer's buffers (allocated, or grown to `slots.capacity`, first) and returns them.
    fn cache_write(
        &self,
        buffers: Option<(Tensor<4>, Tensor<4>)>,
        k: Tensor<4>,
        v: Tensor<4>,
        slots: SlotInfo,
    ) -> (Tensor<4>, Tensor<4>) {
        let [batch, nkv, seq, hd] = k.dims();
        let fresh = || Tensor::<4>::zeros([batch, nkv, slots.capacity, hd], &self.device);
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
}

/// The keys each query may not see, on the host for `kernels::attention_softmax`: empty for
/// causal, else `[batch, queries, keys]`. `None` when a mask cannot be read (the caller then
/// takes burn's attention).
fn host_mask(mask: &AttentionMask) -> Option<Vec<bool>> {
    match mask {
        AttentionMask::Causal => Some(Vec::new()),
        AttentionMask::Explicit(m) => m.as_ref().clone().into_data().try_into_vec::<bool>().ok(),
        // Turned into `Explicit` before the layers run, except for flex-inference decode.
        AttentionMask::LeftPadded(_) => None,
    }
}

/// The mask of `group` query heads stacked along the query axis (`[batch, group · queries,
/// keys]`): each head's rows repeat the sequence's mask; causal (empty) becomes explicit, as the
/// stacked rows' positions restart for every head.
fn stack_mask_rows(
    hidden: Vec<bool>,
    batch: usize,
    group: usize,
    queries: usize,
    keys: usize,
) -> Vec<bool> {
    if group == 1 {
        return hidden;
    }
    let offset = keys.saturating_sub(queries);
    let causal: Vec<bool>;
    let per_sequence: &[bool] = if hidden.is_empty() {
        causal = (0..queries * keys)
            .map(|at| at % keys > at / keys + offset)
            .collect();
        &causal
    } else {
        &hidden
    };
    let rows = queries * keys;
    let mut out = Vec::with_capacity(batch * group * rows);
    for b in 0..batch {
        let sequence = if hidden.is_empty() {
            per_sequence
        } else {
            &per_sequence[b * rows..(b + 1) * rows]
        };
        for _ in 0..group {
            out.extend_from_slice(sequence);
        }
    }
    out
}

/// Where a pass writes into the KV cache.
#[derive(Debug, Clone, Copy)]
struct SlotInfo {
    enabled: bool,
    /// Positions already cached (the pass writes from here).
    start: usize,
    /// Positions the buffers must hold.
    capacity: usize,
}

/// `x * cos + rotate_half(x) * sin` over `[batch, heads, seq, head_dim]`.
fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, hd] = x.dims();
    let half = hd / 2;
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.clone().narrow(3, half, half);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
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
            CausalLm::from_weights(
                config.clone(),
                &tiny::RandomInit::new(&config, 5),
                device,
                crate::backend::is_flex_inference(device),
            )
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
        let model = CausalLm::from_weights(
            config.clone(),
            &tiny::RandomInit::new(&config, 3),
            &device,
            true,
        )
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

    #[test]
    fn transpose_host_matches_definition() {
        let v: Vec<f32> = (0..35).map(|i| i as f32).collect();
        let t = transpose_host(&v, 5, 7);
        for r in 0..5 {
            for c in 0..7 {
                assert_eq!(t[c * 5 + r], v[r * 7 + c]);
            }
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
