//! Building a model from weights named as in the Hugging Face checkpoint, and reading its
//! parameters back out under those names. Linear weights are transposed once at load to
//! `[in, out]` (so `x · W` needs no transpose per call) and back on the way out.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::{Device, Tensor, TensorData};

use super::attention::SelfAttention;
use super::decoder::{CausalLm, DecoderConfig, DecoderLayer, Mlp, Transformer};
use super::lora::Proj;
use super::{HostTensor, ModelError, WeightSource};

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
    ) -> Result<Linear, ModelError> {
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
    ) -> Result<Proj, ModelError> {
        Ok(Proj::new(self.linear(prefix, d_in, d_out, bias)?))
    }

    fn norm(&self, name: &str, dim: usize) -> Result<RmsNorm, ModelError> {
        let w = self.source.require(name, &[dim])?;
        Ok(rms_norm(tensor_1d(w.values, self.device), self.eps))
    }
}
/// A parameter's values on the host, or an error naming it.
pub(crate) fn host_tensor<const D: usize>(
    name: &str,
    t: Tensor<D>,
) -> Result<HostTensor, ModelError> {
    let shape = t.dims().to_vec();
    let values = t
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::ReadParameter {
            name: name.to_string(),
            message: format!("{e:?}"),
        })?;
    Ok(HostTensor { values, shape })
}

fn push_vector(
    out: &mut Vec<(String, HostTensor)>,
    name: String,
    t: Tensor<1>,
) -> Result<(), ModelError> {
    let tensor = host_tensor(&name, t)?;
    out.push((name, tensor));
    Ok(())
}

/// An `[in, out]` weight, written back as the checkpoint's `[out, in]`.
fn push_weight(
    out: &mut Vec<(String, HostTensor)>,
    name: String,
    w: Tensor<2>,
) -> Result<(), ModelError> {
    let t = host_tensor(&name, w)?;
    let [d_in, d_out] = [t.shape[0], t.shape[1]];
    let values = transpose_host(&t.values, d_in, d_out);
    out.push((
        name,
        HostTensor {
            values,
            shape: vec![d_out, d_in],
        },
    ));
    Ok(())
}

impl CausalLm {
    /// Builds the model from weights named as in the Hugging Face checkpoint.
    pub fn from_weights(
        config: DecoderConfig,
        source: &dyn WeightSource,
        device: &Device,
    ) -> Result<Self, ModelError> {
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
        })
    }
    /// Every parameter by its Hugging Face name, in f32 with the checkpoint's shape
    /// (projections back to `[out, in]`), in [`super::config::tensor_shapes`] order.
    pub fn named_tensors(&self) -> Result<Vec<(String, HostTensor)>, ModelError> {
        let mut out = Vec::new();
        let t = &self.transformer;
        out.push((
            "model.embed_tokens.weight".to_string(),
            host_tensor("model.embed_tokens.weight", t.embed_tokens.weight.val())?,
        ));
        for (i, layer) in t.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.self_attn;
            push_vector(
                &mut out,
                format!("{p}.input_layernorm.weight"),
                layer.input_layernorm.gamma.val(),
            )?;
            for (name, l) in [
                ("q_proj", &a.q_proj),
                ("k_proj", &a.k_proj),
                ("v_proj", &a.v_proj),
            ] {
                push_weight(
                    &mut out,
                    format!("{p}.self_attn.{name}.weight"),
                    l.merged_weight(),
                )?;
                if let Some(b) = &l.base.bias {
                    push_vector(&mut out, format!("{p}.self_attn.{name}.bias"), b.val())?;
                }
            }
            push_weight(
                &mut out,
                format!("{p}.self_attn.o_proj.weight"),
                a.o_proj.merged_weight(),
            )?;
            if let (Some(qn), Some(kn)) = (&a.q_norm, &a.k_norm) {
                push_vector(
                    &mut out,
                    format!("{p}.self_attn.q_norm.weight"),
                    qn.gamma.val(),
                )?;
                push_vector(
                    &mut out,
                    format!("{p}.self_attn.k_norm.weight"),
                    kn.gamma.val(),
                )?;
            }
            push_vector(
                &mut out,
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_attention_layernorm.gamma.val(),
            )?;
            let mlp = &layer.mlp;
            push_weight(
                &mut out,
                format!("{p}.mlp.gate_proj.weight"),
                mlp.gate_proj.merged_weight(),
            )?;
            push_weight(
                &mut out,
                format!("{p}.mlp.up_proj.weight"),
                mlp.up_proj.merged_weight(),
            )?;
            push_weight(
                &mut out,
                format!("{p}.mlp.down_proj.weight"),
                mlp.down_proj.merged_weight(),
            )?;
        }
        push_vector(
            &mut out,
            "model.norm.weight".to_string(),
            t.norm.gamma.val(),
        )?;
        if let Some(head) = &t.lm_head {
            push_weight(&mut out, "lm_head.weight".to_string(), head.weight.val())?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
