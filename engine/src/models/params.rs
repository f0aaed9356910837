//! Parameters of any burn module by path (`layers.3.self_attn.q_proj.lora.a`):
//! read them out as host tensors, or put saved ones back. Checkpoints and adapter files use these
//! paths, so they do not depend on parameter ids, which change every time a model is built.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

use super::loading::host_tensor;
use super::{HostTensor, ModelError};

/// The dotted path of the module a visitor or mapper is in, kept from `enter_module` /
/// `exit_module` calls.
#[derive(Debug, Default)]
pub(crate) struct ModulePath(Vec<String>);

impl ModulePath {
    pub(crate) fn enter(&mut self, name: &str) {
        self.0.push(name.to_string());
    }

    pub(crate) fn exit(&mut self) {
        self.0.pop();
    }

    pub(crate) fn current(&self) -> String {
        self.0.join(".")
    }
}

struct Gather {
    paths: ModulePath,
    trainable_only: bool,
    out: Vec<(String, HostTensor)>,
    /// The first parameter that could not be read.
    failed: Option<ModelError>,
}

impl ModuleVisitor for Gather {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if self.trainable_only && !t.is_require_grad() {
            return;
        }
        if self.failed.is_some() {
            return;
        }
        let path = self.paths.current();
        match host_tensor(&path, t) {
            Ok(tensor) => self.out.push((path, tensor)),
            Err(e) => self.failed = Some(e),
        }
    }
}

/// Parameters of `module` by path (only those requiring gradients when `trainable_only`). A
/// parameter the backend cannot read back is an error naming it, never an empty tensor.
pub fn module_tensors<M: Module>(
    module: &M,
    trainable_only: bool,
) -> Result<Vec<(String, HostTensor)>, ModelError> {
    let mut g = Gather {
        paths: ModulePath::default(),
        trainable_only,
        out: Vec::new(),
        failed: None,
    };
    module.visit(&mut g);
    match g.failed {
        Some(e) => Err(e),
        None => Ok(g.out),
    }
}

struct Restore<'a> {
    paths: ModulePath,
    tensors: &'a BTreeMap<String, HostTensor>,
    restored: usize,
    mismatch: Option<ModelError>,
}

impl ModuleMapper for Restore<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.paths.enter(name);
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.paths.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.paths.current();
        let Some(saved) = self.tensors.get(&path) else {
            return param;
        };
        let mut mismatch = None;
        let mut restored = false;
        let param = param.map(|t| {
            let dims = t.dims();
            if saved.shape != dims {
                mismatch = Some(ModelError::SavedShapeMismatch {
                    name: path.clone(),
                    saved: saved.shape.clone(),
                    model: dims.to_vec(),
                });
                return t;
            }
            restored = true;
            let grad = t.is_require_grad();
            let fresh =
                Tensor::<D>::from_data(TensorData::new(saved.values.clone(), dims), &t.device());
            if grad { fresh.require_grad() } else { fresh }
        });
        if let Some(m) = mismatch {
            self.mismatch = Some(m);
        }
        self.restored += usize::from(restored);
        param
    }
}

/// Replaces `module`'s parameters by the tensors with the same paths; every tensor must find
/// its parameter with the same shape.
pub fn restore_module<M: Module>(
    module: M,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<M, ModelError> {
    let mut r = Restore {
        paths: ModulePath::default(),
        tensors,
        restored: 0,
        mismatch: None,
    };
    let module = module.map(&mut r);
    if let Some(e) = r.mismatch {
        return Err(e);
    }
    if r.restored != tensors.len() {
        return Err(ModelError::SavedTensorsUnmatched {
            saved: tensors.len(),
            matched: r.restored,
        });
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::CausalLm;
    use crate::models::tiny::{RandomInit, config};

    #[test]
    fn paths_name_every_parameter_and_round_trip() {
        let c = config();
        let device = burn::tensor::Device::flex();
        let model =
            CausalLm::from_weights(c.clone(), &RandomInit::new(&c, 0), &device).expect("builds");
        let tensors = module_tensors(&model.transformer, false).expect("reads");
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            names.contains(&"layers.3.self_attn.q_proj.base.weight"),
            "{names:?}"
        );
        assert!(names.contains(&"embed_tokens.weight"), "{names:?}");
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "paths are unique");

        // Restoring another model's values makes the two equal.
        let other =
            CausalLm::from_weights(c.clone(), &RandomInit::new(&c, 9), &device).expect("builds");
        let saved: BTreeMap<String, HostTensor> = module_tensors(&other.transformer, false)
            .expect("reads")
            .into_iter()
            .collect();
        let restored = restore_module(model.transformer, &saved).expect("restores");
        let again: BTreeMap<String, HostTensor> = module_tensors(&restored, false)
            .expect("reads")
            .into_iter()
            .collect();
        for (name, t) in &saved {
            assert_eq!(again[name].values, t.values, "{name}");
        }
        let mut wrong = saved.clone();
        wrong.insert(
            "layers.0.nothing.weight".into(),
            HostTensor {
                values: vec![0.0],
                shape: vec![1],
            },
        );
        assert!(restore_module(restored, &wrong).is_err());
    }
}
