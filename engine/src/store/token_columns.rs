//! The token columns of a stored completion (`traces` and `evaluation_items`), little-endian
//! binary, `n` = tokens: `token_ids` n × u32, `logprobs` n × f32, `entropies` n × f32, `top`
//! n × `top_k` × (u32 id, f32 log-prob; a missing alternative is `u32::MAX`, NaN), `loss_mask`
//! n × u8 (bit 0: counted by the loss, bit 1: got gradient; kept by `traces` only).

use super::TraceToken;

/// The encoded columns of one completion's tokens.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TokenColumns {
    pub(super) ids: Vec<u8>,
    pub(super) logprobs: Vec<u8>,
    pub(super) entropies: Vec<u8>,
    /// Alternatives stored per token (the most any token has).
    pub(super) top_k: i64,
    pub(super) top: Vec<u8>,
    pub(super) loss_mask: Vec<u8>,
}

fn u32s(values: impl Iterator<Item = u32>) -> Vec<u8> {
    values.flat_map(u32::to_le_bytes).collect()
}

fn f32s(values: impl Iterator<Item = f32>) -> Vec<u8> {
    values.flat_map(f32::to_le_bytes).collect()
}

/// The `at`-th 4-byte word of `bytes`.
fn word(bytes: &[u8], at: usize) -> Option<[u8; 4]> {
    bytes.get(at * 4..at * 4 + 4)?.try_into().ok()
}

impl TokenColumns {
    pub(super) fn encode(tokens: &[TraceToken]) -> Self {
        let k = tokens.iter().map(|x| x.top.len()).max().unwrap_or(0);
        let mut top = Vec::with_capacity(tokens.len() * k * 8);
        for token in tokens {
            for i in 0..k {
                let (id, lp) = token.top.get(i).copied().unwrap_or((u32::MAX, f32::NAN));
                top.extend(id.to_le_bytes());
                top.extend(lp.to_le_bytes());
            }
        }
        Self {
            ids: u32s(tokens.iter().map(|x| x.id)),
            logprobs: f32s(tokens.iter().map(|x| x.logprob)),
            entropies: f32s(tokens.iter().map(|x| x.entropy)),
            top_k: k as i64,
            top,
            loss_mask: tokens
                .iter()
                .map(|x| u8::from(x.counted) | (u8::from(x.trained) << 1))
                .collect(),
        }
    }

    /// The tokens back; `Err` says which column is malformed. An empty `loss_mask` (a table
    /// that does not keep it) reads as no token counted or trained.
    pub(super) fn decode(&self) -> Result<Vec<TraceToken>, &'static str> {
        let n = self.ids.len() / 4;
        let k = usize::try_from(self.top_k).map_err(|_| "negative top_k")?;
        let has_mask = !self.loss_mask.is_empty();
        if !self.ids.len().is_multiple_of(4)
            || self.logprobs.len() != n * 4
            || self.entropies.len() != n * 4
            || (has_mask && self.loss_mask.len() != n)
            || self.top.len() != n * k * 8
        {
            return Err("token columns of different lengths");
        }
        (0..n)
            .map(|i| {
                let id = u32::from_le_bytes(word(&self.ids, i).ok_or("token id")?);
                let logprob = f32::from_le_bytes(word(&self.logprobs, i).ok_or("logprob")?);
                let entropy = f32::from_le_bytes(word(&self.entropies, i).ok_or("entropy")?);
                let top = (0..k)
                    .filter_map(|j| {
                        let at = (i * k + j) * 2;
                        let id = u32::from_le_bytes(word(&self.top, at)?);
                        let lp = f32::from_le_bytes(word(&self.top, at + 1)?);
                        (id != u32::MAX).then_some((id, lp))
                    })
                    .collect();
                let mask = if has_mask { self.loss_mask[i] } else { 0 };
                Ok(TraceToken {
                    id,
                    logprob,
                    entropy,
                    top,
                    counted: mask & 1 != 0,
                    trained: mask & 2 != 0,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_with_uneven_alternatives_round_trip() {
        let tokens = vec![
            TraceToken {
                id: 7,
                logprob: -0.5,
                entropy: 1.25,
                top: vec![(7, -0.5), (9, -2.0)],
                counted: true,
                trained: false,
            },
            TraceToken {
                id: u32::MAX - 1,
                logprob: -3.0,
                entropy: 0.0,
                top: vec![(1, -0.125)],
                counted: false,
                trained: true,
            },
        ];
        let columns = TokenColumns::encode(&tokens);
        assert_eq!(columns.top_k, 2);
        // 2 tokens × 2 alternatives × 8 bytes; the second token's missing one is padded.
        assert_eq!(columns.top.len(), 32);
        assert_eq!(&columns.ids[..4], &[7, 0, 0, 0]);
        assert_eq!(columns.decode(), Ok(tokens.clone()));

        let without_mask = TokenColumns {
            loss_mask: Vec::new(),
            ..columns.clone()
        };
        let read = without_mask.decode().expect("decodes");
        assert!(read.iter().all(|t| !t.counted && !t.trained));
        assert_eq!(read[1].top, tokens[1].top);

        let short = TokenColumns {
            logprobs: columns.logprobs[..4].to_vec(),
            ..columns
        };
        assert!(short.decode().is_err());
    }
}
