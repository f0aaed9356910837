//! The Reasoning Studio engine: model formats, decoder-only transformer models built from burn
//! modules, inference (generation, sampling, per-token statistics) and the backend choice.
//!
//! Layers, top to bottom (nothing points back up): `infer` → `models` → `kernels`;
//! `formats` builds `models`. The engine knows nothing of the GUI.

pub mod alloc;
pub mod backend;
pub mod data;
pub mod discovery;
pub mod formats;
pub mod infer;
pub mod kernels;
pub mod models;
pub mod store;
pub mod train;
