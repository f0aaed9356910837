//! LoRA adapters in PEFT's layout, so transformers + PEFT load them: `adapter_config.json` and
//! `adapter_model.safetensors` with tensors named
//! `base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight` (`[rank, in]`) and
//! `…lora_B.weight` (`[out, rank]`). Reading one back attaches it to a loaded model.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use super::hf_config::read_json;
use super::safetensors::{SafetensorsWeights, write_f32};
use super::{FormatError, HostTensor, WeightSource};
use crate::models::CausalLm;
use crate::models::lora::LoraConfig;
use crate::models::params::{module_tensors, restore_module};

const PREFIX: &str = "base_model.model.model.";

fn transpose(t: &HostTensor) -> HostTensor {
    let (rows, cols) = (t.shape[0], t.shape[1]);
    let mut values = vec![0.0; t.values.len()];
    for r in 0..rows {
        for c in 0..cols {
            values[c * rows + r] = t.values[r * cols + c];
        }
    }
    HostTensor {
        values,
        shape: vec![cols, rows],
    }
}

/// Path of an adapter matrix in the transformer (`layers.0.self_attn.q_proj.lora.a`) → PEFT name.
fn peft_name(path: &str) -> Option<String> {
    let (module, which) = path.rsplit_once(".lora.")?;
    let letter = match which {
        "a" => "A",
        "b" => "B",
        _ => return None,
    };
    Some(format!("{PREFIX}{module}.lora_{letter}.weight"))
}

fn module_path(peft: &str) -> Option<String> {
    let rest = peft.strip_prefix(PREFIX)?.strip_suffix(".weight")?;
    let (module, letter) = rest.rsplit_once(".lora_")?;
    let which = match letter {
        "A" => "a",
        "B" => "b",
        _ => return None,
    };
    Some(format!("{module}.lora.{which}"))
}

/// Writes the model's LoRA adapters as a PEFT adapter folder.
pub fn write_peft(
    model: &CausalLm,
    lora: &LoraConfig,
    base_model: &str,
    out: &Path,
) -> Result<(), FormatError> {
    std::fs::create_dir_all(out).map_err(|e| FormatError::io(out, e))?;
    let tensors: Vec<(String, HostTensor)> = module_tensors(&model.transformer, false)?
        .into_iter()
        .filter_map(|(path, t)| peft_name(&path).map(|name| (name, transpose(&t))))
        .collect();
    if tensors.is_empty() {
        return Err(FormatError::Write {
            path: out.to_path_buf(),
            message: "the model has no LoRA adapters to export".into(),
        });
    }
    write_f32(&out.join("adapter_model.safetensors"), &tensors)?;
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "target_modules": lora.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    let path = out.join("adapter_config.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&config).unwrap_or_default(),
    )
    .map_err(|e| FormatError::io(&path, e))
}

/// Reads a PEFT adapter folder and attaches it to `model`.
pub fn apply_peft(model: CausalLm, dir: &Path) -> Result<CausalLm, FormatError> {
    let config_path = dir.join("adapter_config.json");
    let config = read_json(&config_path)?;
    let field_err = |field: &str, problem: &str| FormatError::ConfigField {
        path: config_path.clone(),
        field: field.into(),
        problem: problem.into(),
    };
    if config["peft_type"].as_str() != Some("LORA") {
        return Err(field_err("peft_type", "must be \"LORA\""));
    }
    let rank = config["r"]
        .as_u64()
        .ok_or_else(|| field_err("r", "must be a positive integer"))? as usize;
    let alpha = config["lora_alpha"]
        .as_f64()
        .ok_or_else(|| field_err("lora_alpha", "must be a number"))?;
    let targets: Vec<String> = config["target_modules"]
        .as_array()
        .ok_or_else(|| field_err("target_modules", "must be a list of module names"))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let lora = LoraConfig {
        rank,
        alpha,
        dropout: 0.0,
        target_modules: targets,
    };
    let model = model
        .attach_lora(&lora, 0)
        .map_err(|e| field_err("target_modules", &e.to_string()))?;
    let weights_path = dir.join("adapter_model.safetensors");
    let weights = SafetensorsWeights::open_file(&weights_path)?;
    let mut tensors = BTreeMap::new();
    for name in weights.summary().into_keys() {
        let path = module_path(&name).ok_or_else(|| FormatError::Safetensors {
            path: weights_path.clone(),
            message: format!("unexpected tensor `{name}` (not a LoRA A/B matrix)"),
        })?;
        if let Some(t) = weights.tensor(&name)? {
            tensors.insert(path, transpose(&t));
        }
    }
    let CausalLm {
        config,
        transformer,
        device,
    } = model;
    let transformer =
        restore_module(transformer, &tensors).map_err(|e| FormatError::Safetensors {
            path: weights_path.clone(),
            message: e.to_string(),
        })?;
    Ok(CausalLm {
        config,
        transformer,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let path = "layers.3.self_attn.q_proj.lora.a";
        let name = peft_name(path).expect("maps");
        assert_eq!(
            name,
            "base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight"
        );
        assert_eq!(module_path(&name).as_deref(), Some(path));
        assert_eq!(
            peft_name("transformer.layers.3.self_attn.q_proj.base.weight"),
            None
        );
    }
}
