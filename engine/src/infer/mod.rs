//! Inference on a loaded model: teacher-forced scoring, batched generation with a KV cache,
//! sampling, and the per-token statistics (log-probability, entropy, top-k) of every token.
//! Takes a loaded [`crate::models::CausalLm`]; never opens files.

pub mod generate;
pub mod sampling;
pub mod score;

pub use crate::kernels::token_stats::{RowStats, row_stats, rows_stats};
pub use generate::{GenerateRequest, GeneratedToken, generate, generate_groups};
pub use sampling::SamplingConfig;
pub use score::{ComparedToken, ScoredToken, compare, score};

/// Why an inference call could not run.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(
        "the prompt has {prompt_tokens} tokens but the model's context is {context} tokens \
         (max_position_embeddings); shorten the prompt"
    )]
    PromptTooLong {
        prompt_tokens: usize,
        context: usize,
    },
    #[error("the text is empty after tokenization; give at least one token")]
    Empty,
    #[error("setting `{setting}`: {problem}")]
    BadSetting {
        setting: &'static str,
        problem: String,
    },
    #[error(
        "the models do not share a vocabulary ({first} and {other} entries): token-by-token \
         comparison needs the same tokenizer"
    )]
    VocabularyMismatch { first: usize, other: usize },
    #[error("could not read the backend's output: {0}")]
    Backend(String),
}

/// A tensor's values on the host.
pub(crate) fn host_values<const D: usize>(
    t: burn::tensor::Tensor<D>,
) -> Result<Vec<f32>, InferError> {
    t.into_data()
        .try_into_vec::<f32>()
        .map_err(|e| InferError::Backend(format!("{e:?}")))
}
