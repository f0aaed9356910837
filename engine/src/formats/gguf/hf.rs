//! The Hugging Face view of a GGUF file: a `config.json` equivalent, tensors under their
//! Hugging Face names and layout (for `llama`, undoing the q/k row permutation llama.cpp's
//! converter applies for its interleaved RoPE).

use serde_json::{Map, Value, json};

use super::{GgufError, GgufFile, GgufValue, TensorData};

impl GgufFile {
    /// A `config.json` equivalent in Hugging Face style, for architectures `llama` and `qwen2`.
    ///
    /// Keys: `model_type`, `architectures`, `hidden_size`, `intermediate_size`,
    /// `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`, `rms_norm_eps`,
    /// `rope_theta`, `max_position_embeddings`, `vocab_size` (rows of `token_embd.weight`),
    /// `tie_word_embeddings` (no `output.weight` tensor), `head_dim` (when
    /// `{arch}.attention.key_length` is given), `bos_token_id`, `eos_token_id` (when given),
    /// `hidden_act`, `torch_dtype` (`"float32"`, what [`GgufFile::hf_tensor`] returns),
    /// `attention_bias`, and `rope_scaling` when the metadata describes one.
    pub fn hf_config(&self) -> Result<Value, GgufError> {
        let arch = self.supported_arch()?;
        let (model_type, class) = match arch {
            Arch::Llama => ("llama", "LlamaForCausalLM"),
            Arch::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
        };
        let a = model_type;
        let hidden = self.req_u64(&format!("{a}.embedding_length"))?;
        let layers = self.req_u64(&format!("{a}.block_count"))?;
        let intermediate = self.req_u64(&format!("{a}.feed_forward_length"))?;
        let heads = self.req_u64(&format!("{a}.attention.head_count"))?;
        let kv_heads = self
            .opt_u64(&format!("{a}.attention.head_count_kv"))?
            .unwrap_or(heads);
        let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
        let eps = self
            .metadata(&eps_key)
            .and_then(GgufValue::as_f64)
            .ok_or_else(|| self.missing(&eps_key))?;
        let rope_theta = self
            .metadata(&format!("{a}.rope.freq_base"))
            .and_then(GgufValue::as_f64)
            .unwrap_or(10_000.0);
        let context = self.req_u64(&format!("{a}.context_length"))?;
        let embd =
            self.tensor_info("token_embd.weight")
                .ok_or_else(|| GgufError::MissingTensor {
                    path: self.path.clone(),
                    name: "token_embd.weight".into(),
                })?;
        let vocab = embd
            .dims
            .get(1)
            .copied()
            .ok_or_else(|| GgufError::Malformed {
                path: self.path.clone(),
                message: format!("token_embd.weight has dims {:?}, expected 2", embd.dims),
            })?;
        let tied = self.tensor_info("output.weight").is_none();
        let attention_bias = match arch {
            Arch::Qwen2 => true,
            Arch::Llama => self.tensor_info("blk.0.attn_q.bias").is_some(),
        };

        let mut config = Map::new();
        config.insert("model_type".into(), json!(model_type));
        config.insert("architectures".into(), json!([class]));
        config.insert("hidden_size".into(), json!(hidden));
        config.insert("intermediate_size".into(), json!(intermediate));
        config.insert("num_hidden_layers".into(), json!(layers));
        config.insert("num_attention_heads".into(), json!(heads));
        config.insert("num_key_value_heads".into(), json!(kv_heads));
        config.insert("rms_norm_eps".into(), json!(eps));
        config.insert("rope_theta".into(), json!(rope_theta));
        config.insert("max_position_embeddings".into(), json!(context));
        config.insert("vocab_size".into(), json!(vocab));
        config.insert("tie_word_embeddings".into(), json!(tied));
        if let Some(head_dim) = self.opt_u64(&format!("{a}.attention.key_length"))? {
            config.insert("head_dim".into(), json!(head_dim));
        }
        if let Some(bos) = self.bos_token_id() {
            config.insert("bos_token_id".into(), json!(bos));
        }
        if let Some(eos) = self.token_id("tokenizer.ggml.eos_token_id") {
            config.insert("eos_token_id".into(), json!(eos));
        }
        config.insert("hidden_act".into(), json!("silu"));
        config.insert("torch_dtype".into(), json!("float32"));
        config.insert("attention_bias".into(), json!(attention_bias));
        if let Some(scaling) = self.rope_scaling(a) {
            config.insert("rope_scaling".into(), scaling);
        }
        Ok(Value::Object(config))
    }

    /// `rope_scaling` in Hugging Face form from `{arch}.rope.scaling.*` (or the legacy
    /// `{arch}.rope.scale_linear`), `None` when the file describes no scaling.
    fn rope_scaling(&self, a: &str) -> Option<Value> {
        let get_f = |k: &str| {
            self.metadata(&format!("{a}.rope.scaling.{k}"))
                .and_then(GgufValue::as_f64)
        };
        let get_u = |k: &str| {
            self.metadata(&format!("{a}.rope.scaling.{k}"))
                .and_then(GgufValue::as_u64)
        };
        let ty = self
            .metadata(&format!("{a}.rope.scaling.type"))
            .and_then(GgufValue::as_str);
        let factor = get_f("factor").or_else(|| {
            self.metadata(&format!("{a}.rope.scale_linear"))
                .and_then(GgufValue::as_f64)
        });
        let ty = match (ty, factor) {
            (Some("none"), _) | (None, None) => return None,
            (Some(t), _) => t,
            (None, Some(_)) => "linear",
        };
        let factor = factor?;
        if factor == 1.0 && ty == "linear" {
            return None;
        }
        let mut out = Map::new();
        out.insert("rope_type".into(), json!(ty));
        out.insert("factor".into(), json!(factor));
        if let Some(orig) = get_u("original_context_length") {
            out.insert("original_max_position_embeddings".into(), json!(orig));
        }
        // llama3-style keys, when a converter wrote them.
        for (gguf_key, hf_key) in [
            ("low_freq_factor", "low_freq_factor"),
            ("high_freq_factor", "high_freq_factor"),
            ("attn_factor", "attention_factor"),
            ("beta_fast", "beta_fast"),
            ("beta_slow", "beta_slow"),
        ] {
            if let Some(v) = get_f(gguf_key) {
                out.insert(hf_key.into(), json!(v));
            }
        }
        Some(Value::Object(out))
    }

    /// Hugging Face names of the tensors this file provides, in file order.
    pub fn hf_tensor_names(&self) -> Vec<String> {
        self.tensors
            .iter()
            .filter_map(|t| gguf_to_hf_name(&t.name))
            .collect()
    }

    /// The tensor under its Hugging Face name, dequantized to `f32`, row-major, with its
    /// Hugging Face shape (`q_proj.weight` is `[out, in]`, the ggml dims reversed).
    ///
    /// For `llama` files the rows of `q_proj`/`k_proj` (weights and biases) are put back in
    /// Hugging Face's "rotate half" order: llama.cpp's converter interleaves the two halves of
    /// every head (`reshape(n_head, 2, head_dim / 2, ..).swapaxes(1, 2)`, with `n_head` for q
    /// and `n_head_kv` for k) because its llama RoPE rotates adjacent pairs. `qwen2` files are
    /// converted without that permutation (llama.cpp applies NeoX-style RoPE to them), so
    /// their tensors are returned as stored.
    ///
    /// `Ok(None)` when the file lacks the tensor (e.g. `lm_head.weight` with tied embeddings).
    pub fn hf_tensor(&self, hf_name: &str) -> Result<Option<TensorData>, GgufError> {
        let arch = self.supported_arch()?;
        let Some(gguf_name) = hf_to_gguf_name(hf_name) else {
            return Ok(None);
        };
        let Some((mut data, shape)) = self.raw_tensor(&gguf_name)? else {
            return Ok(None);
        };
        if arch == Arch::Llama {
            let heads_key = if gguf_name.contains(".attn_q.") {
                Some("llama.attention.head_count")
            } else if gguf_name.contains(".attn_k.") {
                Some("llama.attention.head_count_kv")
            } else {
                None
            };
            if let Some(key) = heads_key {
                let n_head = match self.opt_u64(key)? {
                    Some(n) => n,
                    // head_count_kv defaults to head_count.
                    None => self.req_u64("llama.attention.head_count")?,
                };
                let rows = shape.first().copied().unwrap_or(0);
                let cols = shape.iter().skip(1).product::<usize>();
                let n_head = usize::try_from(n_head).unwrap_or(0);
                if n_head == 0 || rows % n_head != 0 || (rows / n_head) % 2 != 0 {
                    return Err(GgufError::Malformed {
                        path: self.path.clone(),
                        message: format!(
                            "tensor `{gguf_name}` has {rows} rows, which do not split into {n_head} heads of even size"
                        ),
                    });
                }
                data = unpermute_rows(&data, rows, cols, n_head);
            }
        }
        Ok(Some((data, shape)))
    }

    /// ggml type name of the tensor behind a Hugging Face name (e.g. `"Q4_1"`).
    pub fn hf_tensor_kind(&self, hf_name: &str) -> Option<&'static str> {
        let gguf_name = hf_to_gguf_name(hf_name)?;
        self.tensor_info(&gguf_name).map(|t| t.kind.name())
    }
}

/// The architectures with a Hugging Face mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arch {
    Llama,
    Qwen2,
}

/// Maps a GGUF tensor name of the llama/qwen2 families to its Hugging Face name.
fn gguf_to_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.split_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let hf = BLOCK_NAMES.iter().find(|(g, _)| *g == module)?.1;
    if hf.ends_with("layernorm") && suffix != "weight" {
        return None;
    }
    Some(format!("model.layers.{layer}.{hf}.{suffix}"))
}

/// Maps a Hugging Face tensor name to its GGUF name (the inverse of [`gguf_to_hf_name`]).
fn hf_to_gguf_name(name: &str) -> Option<String> {
    match name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, suffix) = rest.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let gguf = BLOCK_NAMES.iter().find(|(_, h)| *h == module)?.0;
    if module.ends_with("layernorm") && suffix != "weight" {
        return None;
    }
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// `(GGUF block tensor, Hugging Face module)` pairs of a llama/qwen2 decoder layer.
const BLOCK_NAMES: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// Undoes llama.cpp's q/k permutation on a `[rows, cols]` row-major matrix (a bias is
/// `cols = 1`). Within each head of `dim = rows / n_head` rows the converter stored Hugging
/// Face row `i * dim/2 + j` (half `i`, pair `j`) at row `2 * j + i`; this reads it back.
pub(super) fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let dim = rows / n_head;
    let half = dim / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let hf_row = h * dim + i * half + j;
                let gguf_row = h * dim + 2 * j + i;
                out[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&data[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
// Reference values are printed by Python at full f64 precision; they are exact in f32.
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::excessive_precision)]
pub(super) mod tests {
    use super::*;

    // -----------------------------------------------------------------------------------------
    // q/k permutation.
    // -----------------------------------------------------------------------------------------

    /// llama.cpp's `LlamaModel.permute`: `w.reshape(n_head, 2, rows / n_head / 2, cols)
    /// .swapaxes(1, 2).reshape(rows, cols)`, written out as index arithmetic: output row
    /// `(h, j, i)` (shape `[n_head, half, 2]`) is input row `(h, i, j)` (shape `[n_head, 2, half]`).
    pub(in crate::formats::gguf) fn converter_permute(
        w: &[f32],
        rows: usize,
        cols: usize,
        n_head: usize,
    ) -> Vec<f32> {
        let half = rows / n_head / 2;
        let mut out = Vec::with_capacity(w.len());
        for h in 0..n_head {
            for j in 0..half {
                for i in 0..2 {
                    let src = (h * 2 + i) * half + j;
                    out.extend_from_slice(&w[src * cols..(src + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_the_converter() {
        for (rows, cols, n_head) in [(8, 3, 2), (576, 5, 9), (192, 4, 3), (16, 1, 1), (64, 2, 4)] {
            let w: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let permuted = converter_permute(&w, rows, cols, n_head);
            assert_ne!(
                permuted, w,
                "the permutation should move rows ({rows}, {n_head})"
            );
            assert_eq!(unpermute_rows(&permuted, rows, cols, n_head), w);
        }
        // A concrete case: one head of 4 rows [r0 r1 | r2 r3] is stored as [r0 r2 r1 r3].
        let stored = [0.0, 2.0, 1.0, 3.0];
        assert_eq!(unpermute_rows(&stored, 4, 1, 1), [0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn name_mapping_round_trips() {
        for g in [
            "token_embd.weight",
            "output_norm.weight",
            "output.weight",
            "blk.0.attn_q.weight",
            "blk.3.attn_q.bias",
            "blk.12.attn_k.bias",
            "blk.7.attn_v.weight",
            "blk.7.attn_output.weight",
            "blk.1.ffn_gate.weight",
            "blk.1.ffn_up.weight",
            "blk.29.ffn_down.weight",
            "blk.2.attn_norm.weight",
            "blk.2.ffn_norm.weight",
        ] {
            let hf = gguf_to_hf_name(g).unwrap();
            assert_eq!(hf_to_gguf_name(&hf).as_deref(), Some(g), "{hf}");
        }
        assert_eq!(
            gguf_to_hf_name("blk.4.attn_output.weight").as_deref(),
            Some("model.layers.4.self_attn.o_proj.weight")
        );
        assert_eq!(
            gguf_to_hf_name("blk.4.ffn_norm.weight").as_deref(),
            Some("model.layers.4.post_attention_layernorm.weight")
        );
        assert_eq!(gguf_to_hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(hf_to_gguf_name("model.layers.0.input_layernorm.bias"), None);
    }
}
