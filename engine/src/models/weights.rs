//! How weights reach a model: [`WeightSource`] hands out tensors by their Hugging Face names as
//! f32 [`HostTensor`]s. `formats` implements it for safetensors folders and GGUF files, `tiny`
//! for the seeded initializer; the model builder only sees this trait.

use std::path::PathBuf;

use super::ModelError;

/// A tensor in f32, row-major, with its shape.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub values: Vec<f32>,
    pub shape: Vec<usize>,
}

/// Where model weights come from: a safetensors folder, a GGUF file, or a seeded initializer.
/// Tensors are asked for by their Hugging Face names.
pub trait WeightSource {
    /// The file or folder, for error messages.
    fn origin(&self) -> PathBuf;
    /// The tensor, or `None` when the source does not have it. A source that fails to read it
    /// returns [`ModelError::ReadTensor`] with its own error inside.
    fn tensor(&self, name: &str) -> Result<Option<HostTensor>, ModelError>;
    /// Whether the source has a tensor of that name (without reading it).
    fn contains(&self, name: &str) -> bool;

    /// The tensor, which must exist with exactly `expected` shape.
    fn require(&self, name: &str, expected: &[usize]) -> Result<HostTensor, ModelError> {
        let tensor = self
            .tensor(name)?
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.origin(),
                name: name.to_string(),
            })?;
        if tensor.shape != expected {
            return Err(ModelError::ShapeMismatch {
                path: self.origin(),
                name: name.to_string(),
                expected: expected.to_vec(),
                found: tensor.shape,
            });
        }
        Ok(tensor)
    }
}
