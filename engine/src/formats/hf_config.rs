//! `config.json` of a Hugging Face model folder, in the older style (top-level `rope_theta`,
//! `rope_scaling`, `torch_dtype`) and in the style transformers 5 writes (`rope_parameters`,
//! `dtype`). Read field by field so an error names the field at fault.

use std::path::Path;

use serde_json::{Map, Value};

use super::FormatError;
use crate::models::rope::{Llama3Scaling, RopeConfig};
use crate::models::{Architecture, DecoderConfig};

/// What `config.json` says, beyond the decoder's hyperparameters.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub decoder: DecoderConfig,
    /// `dtype` / `torch_dtype` as written (e.g. "bfloat16"), if present.
    pub dtype: Option<String>,
}

struct Fields<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> FormatError {
        FormatError::ConfigField {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    fn present(&self, field: &str) -> Option<&Value> {
        self.map.get(field).filter(|v| !v.is_null())
    }

    fn usize_opt(&self, field: &str) -> Result<Option<usize>, FormatError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(field, format!("must be a positive integer, found {v}"))),
        }
    }

    fn usize(&self, field: &str) -> Result<usize, FormatError> {
        self.usize_opt(field)?
            .ok_or_else(|| self.err(field, "is missing"))
    }

    fn f64_opt(&self, field: &str) -> Result<Option<f64>, FormatError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("must be a number, found {v}"))),
        }
    }

    fn bool_opt(&self, field: &str) -> Result<Option<bool>, FormatError> {
        match self.present(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("must be true or false, found {v}"))),
        }
    }

    fn token_ids(&self, field: &str) -> Result<Vec<u32>, FormatError> {
        let bad = || self.err(field, "must be a token id or a list of token ids");
        match self.present(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().map(|n| n as u32).ok_or_else(bad))
                .collect(),
            Some(v) => v.as_u64().map(|n| vec![n as u32]).ok_or_else(bad),
        }
    }
}

/// Reads the rope settings from either `rope_parameters` (transformers 5) or the older
/// top-level `rope_theta` + `rope_scaling`.
fn rope_config(f: &Fields<'_>) -> Result<RopeConfig, FormatError> {
    let (params_field, params) = match (f.present("rope_parameters"), f.present("rope_scaling")) {
        (Some(p), _) => ("rope_parameters", Some(p)),
        (None, Some(s)) => ("rope_scaling", Some(s)),
        (None, None) => ("rope_scaling", None),
    };
    let params = match params {
        Some(Value::Object(m)) => Some(m),
        Some(other) => return Err(f.err(params_field, format!("must be an object, found {other}"))),
        None => None,
    };
    let sub = params.map(|m| Fields {
        path: f.path,
        map: m,
    });
    let theta = match sub
        .as_ref()
        .map(|s| s.f64_opt("rope_theta"))
        .transpose()?
        .flatten()
    {
        Some(t) => t,
        None => f.f64_opt("rope_theta")?.unwrap_or(10000.0),
    };
    let mut rope = RopeConfig {
        theta,
        llama3: None,
        linear_factor: 1.0,
    };
    if let Some(s) = sub {
        let kind = s
            .present("rope_type")
            .or_else(|| s.present("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let field = |name: &str| format!("{params_field}.{name}");
        let need = |name: &str| -> Result<f64, FormatError> {
            s.f64_opt(name)?
                .ok_or_else(|| f.err(&field(name), format!("is required for rope_type `{kind}`")))
        };
        match kind {
            "default" => {}
            "linear" => rope.linear_factor = need("factor")?,
            "llama3" => {
                rope.llama3 = Some(Llama3Scaling {
                    factor: need("factor")?,
                    low_freq_factor: need("low_freq_factor")?,
                    high_freq_factor: need("high_freq_factor")?,
                    original_max_position_embeddings: need("original_max_position_embeddings")?,
                })
            }
            other => {
                return Err(f.err(
                    &field("rope_type"),
                    format!("`{other}` is not supported (supported: default, linear, llama3)"),
                ));
            }
        }
    }
    Ok(rope)
}

/// Parses an already-read `config.json` value. `path` is for messages.
pub fn parse_config(path: &Path, json: &Value) -> Result<HfConfig, FormatError> {
    let map = json.as_object().ok_or_else(|| FormatError::Json {
        path: path.to_path_buf(),
        message: "the top level must be an object".into(),
    })?;
    let f = Fields { path, map };
    let model_type = f
        .present("model_type")
        .ok_or_else(|| f.err("model_type", "is missing"))?
        .as_str()
        .ok_or_else(|| f.err("model_type", "must be a string"))?;
    let architecture = Architecture::from_model_type(model_type).ok_or_else(|| {
        FormatError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            model_type: model_type.to_string(),
        }
    })?;
    for unsupported in ["attention_bias", "mlp_bias"] {
        if architecture == Architecture::Llama && f.bool_opt(unsupported)? == Some(true) {
            return Err(f.err(unsupported, "= true is not supported for llama models"));
        }
    }
    if let Some(act) = f.present("hidden_act")
        && act.as_str() != Some("silu")
    {
        return Err(f.err("hidden_act", format!("{act} is not supported (only silu)")));
    }
    let hidden_size = f.usize("hidden_size")?;
    let num_attention_heads = f.usize("num_attention_heads")?;
    let num_key_value_heads = f
        .usize_opt("num_key_value_heads")?
        .unwrap_or(num_attention_heads);
    if num_attention_heads % num_key_value_heads != 0 {
        return Err(f.err(
            "num_key_value_heads",
            format!(
                "({num_key_value_heads}) must divide num_attention_heads ({num_attention_heads})"
            ),
        ));
    }
    let head_dim = match f.usize_opt("head_dim")? {
        Some(d) => d,
        None => {
            if hidden_size % num_attention_heads != 0 {
                return Err(f.err(
                    "num_attention_heads",
                    format!("({num_attention_heads}) must divide hidden_size ({hidden_size})"),
                ));
            }
            hidden_size / num_attention_heads
        }
    };
    if head_dim % 2 != 0 {
        return Err(f.err(
            "head_dim",
            format!("must be even for rotary embeddings, found {head_dim}"),
        ));
    }
    let dtype = f
        .present("dtype")
        .or_else(|| f.present("torch_dtype"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let decoder = DecoderConfig {
        architecture,
        vocab_size: f.usize("vocab_size")?,
        hidden_size,
        intermediate_size: f.usize("intermediate_size")?,
        num_hidden_layers: f.usize("num_hidden_layers")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: f.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
        rope: rope_config(&f)?,
        max_position_embeddings: f.usize_opt("max_position_embeddings")?.unwrap_or(2048),
        tie_word_embeddings: f.bool_opt("tie_word_embeddings")?.unwrap_or(false),
        bos_token_id: f.token_ids("bos_token_id")?.first().copied(),
        eos_token_ids: f.token_ids("eos_token_id")?,
    };
    Ok(HfConfig { decoder, dtype })
}

/// Reads and parses `path` (a `config.json`).
pub fn read_config(path: &Path) -> Result<HfConfig, FormatError> {
    let json = read_json(path)?;
    parse_config(path, &json)
}

/// Reads a JSON file, with the file named in any error.
pub fn read_json(path: &Path) -> Result<Value, FormatError> {
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| FormatError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The `config.json` the exporter writes (transformers 5 style, with `torch_dtype` too so older
/// transformers versions read it).
pub fn to_json(config: &DecoderConfig) -> Value {
    let mut rope = serde_json::json!({ "rope_theta": config.rope.theta, "rope_type": "default" });
    if let Some(s) = config.rope.llama3 {
        rope = serde_json::json!({
            "rope_theta": config.rope.theta, "rope_type": "llama3", "factor": s.factor,
            "low_freq_factor": s.low_freq_factor, "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
    } else if config.rope.linear_factor != 1.0 {
        rope = serde_json::json!({
            "rope_theta": config.rope.theta, "rope_type": "linear", "factor": config.rope.linear_factor,
        });
    }
    let features = config.architecture.features();
    let eos: Value = match config.eos_token_ids.as_slice() {
        [] => Value::Null,
        [one] => (*one).into(),
        many => many.to_vec().into(),
    };
    serde_json::json!({
        "architectures": [config.architecture.hf_class()],
        "model_type": config.architecture.model_type(),
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "rope_parameters": rope,
        "rope_theta": config.rope.theta,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": features.attention_bias,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": eos,
        "dtype": "float32",
        "torch_dtype": "float32",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "rms_norm_eps": 1e-5, "rope_theta": 50000.0,
            "torch_dtype": "bfloat16", "eos_token_id": [2, 7]
        })
    }

    #[test]
    fn reads_old_style() {
        let c = parse_config(Path::new("config.json"), &base()).expect("valid");
        assert_eq!(c.decoder.head_dim, 16);
        assert_eq!(c.decoder.rope.theta, 50000.0);
        assert_eq!(c.decoder.eos_token_ids, vec![2, 7]);
        assert_eq!(c.dtype.as_deref(), Some("bfloat16"));
    }

    #[test]
    fn reads_transformers5_style() {
        let mut v = base();
        let m = v.as_object_mut().expect("object");
        m.remove("rope_theta");
        m.remove("torch_dtype");
        m.insert("dtype".into(), json!("float32"));
        m.insert(
            "rope_parameters".into(),
            json!({"rope_theta": 1e6, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                   "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        );
        let c = parse_config(Path::new("config.json"), &v).expect("valid");
        assert_eq!(c.decoder.rope.theta, 1e6);
        assert!(c.decoder.rope.llama3.is_some());
        assert_eq!(c.dtype.as_deref(), Some("float32"));
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["hidden_size"] = json!("wide");
        let e = parse_config(Path::new("/m/config.json"), &v)
            .expect_err("invalid")
            .to_string();
        assert!(
            e.contains("/m/config.json") && e.contains("hidden_size"),
            "{e}"
        );
        let mut v = base();
        v["model_type"] = json!("gpt_neox");
        let e = parse_config(Path::new("c.json"), &v)
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("gpt_neox"), "{e}");
        let mut v = base();
        v.as_object_mut()
            .expect("object")
            .remove("num_hidden_layers");
        let e = parse_config(Path::new("c.json"), &v)
            .expect_err("missing")
            .to_string();
        assert!(
            e.contains("num_hidden_layers") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn exported_config_reads_back() {
        let c = parse_config(Path::new("config.json"), &base()).expect("valid");
        let again = parse_config(Path::new("config.json"), &to_json(&c.decoder)).expect("valid");
        assert_eq!(c.decoder, again.decoder);
    }
}
