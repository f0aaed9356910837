//! The engine's AdamW against `torch.optim.AdamW` (with `torch.nn.utils.clip_grad_norm_` before
//! each step): `tests/fixtures/adamw_reference.json`, made by `tests/fixtures/make_reference.py`,
//! holds two hand-sized parameters, four steps of given gradients (two of them clipped, one
//! with a zero entry), a learning rate per step, and torch's parameters, moments and gradient
//! norms after each step.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use engine::train::optim::{AdamW, AdamWConfig, GradBuffer};
use serde_json::Value;

mod common;

#[derive(Module, Debug)]
struct Pair {
    a: Param<Tensor<1>>,
    b: Param<Tensor<2>>,
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a list of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn values<const D: usize>(p: &Param<Tensor<D>>) -> Vec<f32> {
    p.val().into_data().try_into_vec::<f32>().expect("f32")
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: {g} vs torch {w}"
        );
    }
}

#[test]
fn adamw_steps_match_torch() {
    let path = common::repo_root().join("tests/fixtures/adamw_reference.json");
    let text = std::fs::read_to_string(&path).expect("adamw_reference.json");
    let r: Value = serde_json::from_str(&text).expect("JSON");
    let config = &r["config"];
    let betas = floats(&config["betas"]);
    // Training parameters live on the autodiff device, as in a run.
    let device = Device::flex().autodiff();
    let mut model = Pair {
        a: Param::from_tensor(
            Tensor::<1>::from_data(TensorData::new(floats(&r["initial"]["a"]), [3]), &device)
                .require_grad(),
        ),
        b: Param::from_tensor(
            Tensor::<2>::from_data(TensorData::new(floats(&r["initial"]["b"]), [2, 3]), &device)
                .require_grad(),
        ),
    };
    let mut optimizer = AdamW::new(AdamWConfig {
        beta1: f64::from(betas[0]),
        beta2: f64::from(betas[1]),
        eps: config["eps"].as_f64().expect("eps"),
        weight_decay: config["weight_decay"].as_f64().expect("weight_decay"),
    });
    let max_norm = r["max_grad_norm"].as_f64().expect("max_grad_norm");
    let steps = r["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4);
    let mut clipped = 0;
    for (i, step) in steps.iter().enumerate() {
        let grads = GradBuffer {
            grads: BTreeMap::from([
                ("a".to_string(), floats(&step["grads"]["a"])),
                ("b".to_string(), floats(&step["grads"]["b"])),
            ]),
            micro_batches: 1,
        };
        let lr = step["lr"].as_f64().expect("lr");
        let (next, norm) = optimizer
            .step(model, &grads, lr, Some(max_norm))
            .expect("steps");
        model = next;
        let want_norm = step["grad_norm"].as_f64().expect("grad_norm");
        assert!(
            (norm - want_norm).abs() < 1e-5 * want_norm,
            "step {i}: norm {norm} vs torch {want_norm}"
        );
        clipped += usize::from(want_norm > max_norm);
        for name in ["a", "b"] {
            let got = if name == "a" {
                values(&model.a)
            } else {
                values(&model.b)
            };
            assert_close(
                &got,
                &floats(&step["params"][name]),
                2e-6,
                &format!("step {i} {name}"),
            );
            let moments = &optimizer.state[name];
            assert_close(
                &moments.m,
                &floats(&step["exp_avg"][name]),
                2e-6,
                &format!("step {i} m {name}"),
            );
            assert_close(
                &moments.v,
                &floats(&step["exp_avg_sq"][name]),
                2e-6,
                &format!("step {i} v {name}"),
            );
        }
    }
    assert_eq!(clipped, 2, "the fixture clips two steps");
}
