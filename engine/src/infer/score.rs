//! Teacher-forced scoring: how likely a model finds each token of a given text.

use super::{InferError, host_values};
use crate::kernels::AttentionMask;
use burn::tensor::Tensor;

use crate::kernels::token_stats::rows_stats;
use crate::models::CausalLm;

/// One token of a scored text. Token 0 has no prediction: `logprob`/`entropy` are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredToken {
    pub id: u32,
    /// log p(token | tokens before it), nats.
    pub logprob: Option<f32>,
    /// Entropy of the distribution that predicted this token, nats.
    pub entropy: Option<f32>,
    /// The `top_k` most likely tokens at this position, `(id, logprob)`.
    pub top: Vec<(u32, f32)>,
}

/// Scores `ids` in one forward pass. The statistics are computed where the logits are (on a
/// GPU runtime only they come back to the host).
pub fn score(model: &CausalLm, ids: &[u32], top_k: usize) -> Result<Vec<ScoredToken>, InferError> {
    let logits = next_token_logits(model, ids)?;
    let mut out = Vec::with_capacity(ids.len());
    out.push(ScoredToken {
        id: ids[0],
        logprob: None,
        entropy: None,
        top: Vec::new(),
    });
    let Some(logits) = logits else {
        return Ok(out);
    };
    let rows = crate::kernels::fused::token_stats(logits, &ids[1..], top_k)
        .map_err(InferError::Backend)?;
    for (row, &id) in rows.into_iter().zip(&ids[1..]) {
        out.push(ScoredToken {
            id,
            logprob: row.target_logprob,
            entropy: Some(row.stats.entropy),
            top: row.stats.top,
        });
    }
    Ok(out)
}

/// The logits that predict tokens 1..n of `ids`, `[n − 1, vocab]`, from one forward pass, on
/// the model's device; `None` for a one-token text.
fn next_token_logits(model: &CausalLm, ids: &[u32]) -> Result<Option<Tensor<2>>, InferError> {
    if ids.is_empty() {
        return Err(InferError::Empty);
    }
    let context = model.config.max_position_embeddings;
    if ids.len() > context {
        return Err(InferError::PromptTooLong {
            prompt_tokens: ids.len(),
            context,
        });
    }
    let n = ids.len();
    if n == 1 {
        return Ok(None);
    }
    Ok(Some(crate::kernels::in_pool(|| {
        let mut cache = model.no_cache();
        let positions: Vec<usize> = (0..n).collect();
        let hidden = model.forward_hidden(
            &[ids.to_vec()],
            &[positions],
            AttentionMask::Causal,
            &mut cache,
        );
        // Only positions 0..n-1 predict a token of the text.
        let logits = model.logits(hidden.narrow(1, 0, n - 1));
        let vocab = logits.dims()[2];
        logits.reshape([n - 1, vocab])
    })))
}

/// [`next_token_logits`] on the host, row-major (empty for a one-token text).
fn next_token_host_logits(model: &CausalLm, ids: &[u32]) -> Result<Vec<f32>, InferError> {
    match next_token_logits(model, ids)? {
        Some(logits) => host_values(logits),
        None => Ok(Vec::new()),
    }
}

/// One token of a text scored under several models.
#[derive(Debug, Clone, PartialEq)]
pub struct ComparedToken {
    pub id: u32,
    /// log p(token | before) under each model, in order; `None` for token 0.
    pub logprob: Vec<Option<f32>>,
    /// Entropy of each model's predicting distribution.
    pub entropy: Vec<Option<f32>>,
    /// KL(first ‖ second) of the two first models' predicting distributions, nats (`None` for
    /// token 0, or with one model).
    pub kl: Option<f64>,
}

/// Scores `ids` teacher-forced under each of `models` (one forward pass each; they must share
/// the vocabulary) and the KL between the first two models' next-token distributions.
pub fn compare(models: &[&CausalLm], ids: &[u32]) -> Result<Vec<ComparedToken>, InferError> {
    let Some(first) = models.first() else {
        return Ok(Vec::new());
    };
    let vocab = first.config.vocab_size;
    if let Some(other) = models.iter().find(|m| m.config.vocab_size != vocab) {
        return Err(InferError::VocabularyMismatch {
            first: vocab,
            other: other.config.vocab_size,
        });
    }
    let logits: Vec<Vec<f32>> = models
        .iter()
        .map(|m| next_token_host_logits(m, ids))
        .collect::<Result<_, _>>()?;
    let stats: Vec<_> = logits.iter().map(|l| rows_stats(l, vocab, 0)).collect();
    let mut out = Vec::with_capacity(ids.len());
    out.push(ComparedToken {
        id: ids[0],
        logprob: vec![None; models.len()],
        entropy: vec![None; models.len()],
        kl: None,
    });
    for (i, &id) in ids.iter().enumerate().skip(1) {
        let row = |m: usize| &logits[m][(i - 1) * vocab..i * vocab];
        let logprob = (0..models.len())
            .map(|m| Some(row(m)[id as usize] - stats[m][i - 1].log_sum_exp))
            .collect();
        let entropy = (0..models.len())
            .map(|m| Some(stats[m][i - 1].entropy))
            .collect();
        let kl = (models.len() >= 2).then(|| kl_divergence(row(0), row(1)));
        out.push(ComparedToken {
            id,
            logprob,
            entropy,
            kl,
        });
    }
    Ok(out)
}

/// KL(p ‖ q) = Σ p (log p − log q) of two logits rows, in f64 throughout (its own
/// log-sum-exps, so the kernel's f32 ones do not enter).
fn kl_divergence(p: &[f32], q: &[f32]) -> f64 {
    let lse = |row: &[f32]| {
        let max = row
            .iter()
            .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
        max + row
            .iter()
            .map(|&x| (f64::from(x) - max).exp())
            .sum::<f64>()
            .ln()
    };
    let (p_lse, q_lse) = (lse(p), lse(q));
    p.iter()
        .zip(q)
        .map(|(&a, &b)| {
            let log_p = f64::from(a) - p_lse;
            let log_q = f64::from(b) - q_lse;
            log_p.exp() * (log_p - log_q)
        })
        .sum::<f64>()
        .max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::tiny;

    fn tiny_model(seed: u64) -> CausalLm {
        let config = tiny::config();
        CausalLm::from_weights(
            config.clone(),
            &tiny::RandomInit::new(&config, seed),
            &burn::tensor::Device::flex(),
        )
        .expect("tiny model")
    }

    const IDS: [u32; 9] = [40, 49, 43, 50, 41, 42, 51, 61, 44];

    #[test]
    fn a_model_against_itself_differs_nowhere() {
        let model = tiny_model(3);
        let tokens = compare(&[&model, &model], &IDS).expect("compare");
        assert_eq!(tokens.len(), IDS.len());
        assert_eq!(tokens[0].kl, None);
        for t in &tokens[1..] {
            assert_eq!(t.logprob[0], t.logprob[1]);
            assert_eq!(t.entropy[0], t.entropy[1]);
            assert!(t.kl.expect("kl").abs() < 1e-9, "{t:?}");
        }
    }

    /// Two different models: each column equals `score` of that model alone, and the KL
    /// equals a plain f64 softmax over the whole vocabulary of the logits read separately.
    #[test]
    fn columns_match_score_and_kl_matches_an_f64_softmax() {
        let (a, b) = (tiny_model(3), tiny_model(8));
        let tokens = compare(&[&a, &b, &a], &IDS).expect("compare");
        for (m, model) in [(0, &a), (1, &b), (2, &a)] {
            let scored = score(model, &IDS, 0).expect("score");
            for (t, s) in tokens.iter().zip(&scored) {
                assert_eq!(t.id, s.id);
                match (t.logprob[m], s.logprob) {
                    (Some(x), Some(y)) => assert!((x - y).abs() < 1e-5, "{x} vs {y}"),
                    (x, y) => assert_eq!(x, y),
                }
            }
        }
        let vocab = a.config.vocab_size;
        let (la, lb) = (
            next_token_host_logits(&a, &IDS).expect("a"),
            next_token_host_logits(&b, &IDS).expect("b"),
        );
        let mut largest: f64 = 0.0;
        for i in 1..IDS.len() {
            let softmax = |row: &[f32]| -> Vec<f64> {
                let e: Vec<f64> = row.iter().map(|&x| f64::from(x).exp()).collect();
                let z: f64 = e.iter().sum();
                e.into_iter().map(|x| x / z).collect()
            };
            let p = softmax(&la[(i - 1) * vocab..i * vocab]);
            let q = softmax(&lb[(i - 1) * vocab..i * vocab]);
            let want: f64 = p.iter().zip(&q).map(|(p, q)| p * (p / q).ln()).sum();
            let got = tokens[i].kl.expect("kl");
            assert!(
                (got - want).abs() < 1e-9 * (1.0 + want),
                "position {i}: {got} vs {want}"
            );
            largest = largest.max(want);
        }
        assert!(largest > 1e-3, "the two models should differ: KL {largest}");
    }
}
