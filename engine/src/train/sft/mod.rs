//! Supervised fine-tuning: examples become prompt + completion token sequences with the loss on
//! completion tokens only, packed into fixed-length rows (each example keeps its own positions
//! and attends only to itself), and one optimizer step runs forward, masked cross-entropy,
//! backward over `grad_accum` micro-batches, global-norm clipping and AdamW.

pub(crate) mod run;

use std::ops::ControlFlow;

use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::TrainError;
use super::optim::{AdamW, GradBuffer};
use crate::data::Example;
use crate::infer::{GenerateRequest, GeneratedToken, SamplingConfig, generate};
use crate::kernels::AttentionMask;
use crate::models::CausalLm;
use crate::text::chat_template::ChatMessage;
use crate::text::tokenizer::TextTokenizer;

/// One example as tokens, with which positions are trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedExample {
    pub ids: Vec<u32>,
    /// `true` for completion tokens (the loss is taken on those).
    pub train: Vec<bool>,
    /// Tokens of the prompt part.
    pub prompt_len: usize,
}

/// The completion an SFT example teaches: reasoning in `<think>` and the answer in `<answer>`
/// when the example has them, the last assistant turn for chat examples.
pub fn completion_text(example: &Example) -> String {
    if let Some((_, content)) = example
        .messages
        .last()
        .filter(|(role, _)| role == "assistant")
    {
        return content.clone();
    }
    let answer = example.answer.clone().unwrap_or_default();
    match example
        .reasoning
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        Some(r) => format!(
            "<think>{}</think><answer>{}</answer>",
            r.trim(),
            answer.trim()
        ),
        None => format!("<answer>{}</answer>", answer.trim()),
    }
}

/// The prompt as the model sees it: through the chat template (with the generation prompt)
/// when asked and available, else the plain text.
pub fn prompt_ids(
    tokenizer: &TextTokenizer,
    example: &Example,
    chat: bool,
) -> Result<Vec<u32>, TrainError> {
    let turns: Vec<ChatMessage> = if example.messages.is_empty() {
        vec![ChatMessage::user(example.prompt.clone())]
    } else {
        let n = example.messages.len();
        let keep = if example.messages[n - 1].0 == "assistant" {
            n - 1
        } else {
            n
        };
        example.messages[..keep]
            .iter()
            .map(|(role, content)| ChatMessage {
                role: role.clone(),
                content: content.clone(),
            })
            .collect()
    };
    if chat && tokenizer.chat_template.is_some() {
        Ok(tokenizer.encode_chat(&turns)?)
    } else {
        let text: Vec<&str> = turns.iter().map(|m| m.content.as_str()).collect();
        Ok(tokenizer.encode(&text.join("\n"), true)?)
    }
}

/// Tokenizes an example; the completion ends with the model's first EOS id.
pub fn tokenize_example(
    tokenizer: &TextTokenizer,
    example: &Example,
    chat: bool,
    eos: Option<u32>,
) -> Result<TokenizedExample, TrainError> {
    let prompt = prompt_ids(tokenizer, example, chat)?;
    let mut completion = tokenizer.encode(&completion_text(example), false)?;
    completion.extend(eos);
    let prompt_len = prompt.len();
    let mut train = vec![false; prompt_len];
    train.extend(std::iter::repeat_n(true, completion.len()));
    let mut ids = prompt;
    ids.extend(completion);
    Ok(TokenizedExample {
        ids,
        train,
        prompt_len,
    })
}

/// A micro-batch ready for the model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[rows][seq]` token ids (padding is the pad id, masked out).
    pub ids: Vec<Vec<u32>>,
    /// Position of each token within its own example.
    pub positions: Vec<Vec<usize>>,
    /// Segment of each token (example index within the row; `usize::MAX` for padding).
    pub segments: Vec<Vec<usize>>,
    /// Next-token targets and whether each counts in the loss: `targets[r][t]` follows `ids[r][t]`.
    pub targets: Vec<Vec<u32>>,
    pub loss_mask: Vec<Vec<bool>>,
    /// Examples consumed from the stream.
    pub examples: usize,
}

impl Batch {
    pub fn tokens(&self) -> usize {
        self.segments
            .iter()
            .flatten()
            .filter(|&&s| s != usize::MAX)
            .count()
    }

    pub fn trained_tokens(&self) -> usize {
        self.loss_mask.iter().flatten().filter(|&&m| m).count()
    }
}

/// Builds a micro-batch of `rows` sequences of exactly `seq_len` tokens from `next_example`,
/// packing several examples per row when `packing`, else one per row. An example longer than a
/// row is cut. Returns `None` when the stream is exhausted before anything was placed.
pub fn build_batch(
    rows: usize,
    seq_len: usize,
    packing: bool,
    pad_id: u32,
    mut next_example: impl FnMut() -> Option<TokenizedExample>,
    pending: &mut Option<TokenizedExample>,
) -> Option<Batch> {
    let mut batch = Batch {
        ids: Vec::with_capacity(rows),
        positions: Vec::with_capacity(rows),
        segments: Vec::with_capacity(rows),
        targets: Vec::with_capacity(rows),
        loss_mask: Vec::with_capacity(rows),
        examples: 0,
    };
    for _ in 0..rows {
        let (mut ids, mut pos, mut seg, mut train) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut segment = 0usize;
        loop {
            let ex = match pending.take() {
                Some(e) => e,
                None => match next_example() {
                    Some(e) => {
                        batch.examples += 1;
                        e
                    }
                    None => break,
                },
            };
            let room = seq_len - ids.len();
            if ex.ids.len() > room && !ids.is_empty() {
                // Doesn't fit: it starts the next row.
                *pending = Some(ex);
                break;
            }
            let take = ex.ids.len().min(room);
            ids.extend_from_slice(&ex.ids[..take]);
            train.extend_from_slice(&ex.train[..take]);
            pos.extend(0..take);
            seg.extend(std::iter::repeat_n(segment, take));
            segment += 1;
            if !packing || ids.len() == seq_len {
                break;
            }
        }
        if ids.is_empty() {
            break;
        }
        let real = ids.len();
        ids.resize(seq_len, pad_id);
        pos.resize(seq_len, 0);
        seg.resize(seq_len, usize::MAX);
        train.resize(seq_len, false);
        let mut targets = vec![pad_id; seq_len];
        let mut mask = vec![false; seq_len];
        for t in 0..real.saturating_sub(1) {
            if seg[t + 1] == seg[t] {
                targets[t] = ids[t + 1];
                mask[t] = train[t + 1];
            }
        }
        batch.ids.push(ids);
        batch.positions.push(pos);
        batch.segments.push(seg);
        batch.targets.push(targets);
        batch.loss_mask.push(mask);
    }
    (!batch.ids.is_empty()).then_some(batch)
}

/// `[rows, 1, seq, seq]`, `true` = hidden: causal within each example's segment.
fn segment_mask(batch: &Batch, device: &burn::tensor::Device) -> Tensor<4, Bool> {
    let rows = batch.ids.len();
    let seq = batch.ids[0].len();
    let mut hidden = Vec::with_capacity(rows * seq * seq);
    for seg in &batch.segments {
        for q in 0..seq {
            for k in 0..seq {
                let visible = k <= q && (seg[k] == seg[q] || (seg[q] == usize::MAX && k == q));
                hidden.push(!visible);
            }
        }
    }
    Tensor::from_data(TensorData::new(hidden, [rows, 1, seq, seq]), device)
}

/// Loss and accuracy of one micro-batch.
#[derive(Debug, Clone, Copy)]
pub struct MicroStats {
    pub loss: f64,
    pub correct: usize,
    pub counted: usize,
}

/// Forward and backward of one micro-batch; gradients are added to `grads`. Runs on rayon's
/// pool, where the backend's parallel kernels start without waking a parked caller each time.
pub fn forward_backward(
    model: &CausalLm,
    batch: &Batch,
    grads: &mut GradBuffer,
) -> Result<MicroStats, TrainError> {
    crate::kernels::in_pool(|| forward_backward_here(model, batch, grads))
}

fn forward_backward_here(
    model: &CausalLm,
    batch: &Batch,
    grads: &mut GradBuffer,
) -> Result<MicroStats, TrainError> {
    let device = &model.device;
    let (rows, seq) = (batch.ids.len(), batch.ids[0].len());
    // Only positions with a loss reach the LM head: prompt tokens cost no vocabulary product.
    let counted_at: Vec<usize> = batch
        .loss_mask
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, &m)| m.then_some(i))
        .collect();
    let counted = counted_at.len();
    if counted == 0 {
        return Ok(MicroStats {
            loss: 0.0,
            correct: 0,
            counted: 0,
        });
    }
    let targets: Vec<u32> = {
        let flat: Vec<u32> = batch.targets.iter().flatten().copied().collect();
        counted_at.iter().map(|&i| flat[i]).collect()
    };
    let mask = AttentionMask::Explicit(Box::new(segment_mask(batch, device)));
    let mut cache = model.no_cache();
    let hidden = model.forward_hidden(&batch.ids, &batch.positions, mask, &mut cache);
    let [_, _, width] = hidden.dims();
    let hidden = hidden.reshape([rows * seq, width]);
    let hidden = if counted < rows * seq {
        let at: Vec<i64> = counted_at.iter().map(|&i| i as i64).collect();
        hidden.select(
            0,
            Tensor::<1, Int>::from_data(TensorData::new(at, [counted]), device),
        )
    } else {
        hidden
    };
    let vocab = model.config.vocab_size;
    let logits = model
        .logits(hidden.reshape([1, counted, width]))
        .reshape([counted, vocab]);

    let predicted: Vec<i64> = logits
        .clone()
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| TrainError::ReadBack {
            what: "the predicted tokens".into(),
            message: format!("{e:?}"),
        })?;
    let correct = predicted
        .iter()
        .zip(&targets)
        .filter(|(p, t)| **p == i64::from(**t))
        .count();

    let nll = crate::kernels::token_nll(logits, targets);
    let loss = nll.sum().div_scalar(counted as f64);
    let loss_value: f32 = loss
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::ReadBack {
            what: "the loss".into(),
            message: format!("{e:?}"),
        })?
        .first()
        .copied()
        .unwrap_or(f32::NAN);
    if !loss_value.is_finite() {
        return Ok(MicroStats {
            loss: f64::from(loss_value),
            correct,
            counted,
        });
    }
    let mut g = loss.backward();
    grads.accumulate(&model.transformer, &mut g)?;
    Ok(MicroStats {
        loss: f64::from(loss_value),
        correct,
        counted,
    })
}

/// Applies the optimizer to the model's transformer.
pub fn apply_update(
    mut model: CausalLm,
    optimizer: &mut AdamW,
    grads: &GradBuffer,
    lr: f64,
    clip: Option<f64>,
) -> Result<(CausalLm, f64), TrainError> {
    let (transformer, norm) = optimizer.step(model.transformer, grads, lr, clip)?;
    model.transformer = transformer;
    Ok((model, norm))
}

/// Greedy answers to `prompts`: each row's tokens (with log-prob, entropy and the top
/// [`TRACE_TOP_K`](crate::train::traces::TRACE_TOP_K) alternatives) and its text without the end
/// token.
pub fn greedy_completions(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompts: Vec<Vec<u32>>,
    max_new_tokens: usize,
) -> Result<Vec<(Vec<GeneratedToken>, String)>, TrainError> {
    greedy_completions_with(model, tokenizer, prompts, max_new_tokens, |_, _| {
        ControlFlow::Continue(())
    })
}

/// [`greedy_completions`], with `on_token(row, token)` called for every generated token; a
/// `Break` stops the generation (the rows so far are returned).
pub fn greedy_completions_with(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompts: Vec<Vec<u32>>,
    max_new_tokens: usize,
    on_token: impl FnMut(usize, &GeneratedToken) -> ControlFlow<()>,
) -> Result<Vec<(Vec<GeneratedToken>, String)>, TrainError> {
    let inference = model.for_inference();
    let stop = &inference.config.eos_token_ids;
    let request = GenerateRequest {
        prompts,
        max_new_tokens,
        sampling: SamplingConfig::greedy(),
        stop_token_ids: stop.clone(),
        top_k_alternatives: crate::train::traces::TRACE_TOP_K,
    };
    let rows = generate(&inference, &request, on_token)?;
    rows.into_iter()
        .map(|row| {
            let ids: Vec<u32> = row
                .iter()
                .map(|t| t.id)
                .filter(|id| !stop.contains(id))
                .collect();
            let text = tokenizer.decode(&ids)?;
            Ok((row, text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(n: usize, prompt: usize) -> TokenizedExample {
        TokenizedExample {
            ids: (0..n as u32).map(|i| 10 + i).collect(),
            train: (0..n).map(|i| i >= prompt).collect(),
            prompt_len: prompt,
        }
    }

    #[test]
    fn packing_keeps_examples_apart() {
        let mut stream = vec![ex(4, 2), ex(3, 1), ex(5, 2)].into_iter();
        let mut pending = None;
        let b = build_batch(2, 8, true, 0, || stream.next(), &mut pending).expect("batch");
        assert_eq!(b.ids.len(), 2);
        // Row 0: example 0 (4 tokens) + example 1 (3 tokens) + 1 pad.
        assert_eq!(b.segments[0], vec![0, 0, 0, 0, 1, 1, 1, usize::MAX]);
        assert_eq!(b.positions[0][..7], [0, 1, 2, 3, 0, 1, 2]);
        // Targets never cross an example boundary; only completion targets count.
        assert_eq!(
            b.loss_mask[0],
            vec![false, true, true, false, true, true, false, false]
        );
        assert_eq!(b.targets[0][3], 0, "no target across the boundary");
        assert_eq!(b.segments[1][..5], [0, 0, 0, 0, 0]);
        assert_eq!(b.examples, 3);
        assert_eq!(b.tokens(), 12);
    }

    #[test]
    fn without_packing_one_example_per_row_and_long_ones_are_cut() {
        let mut stream = vec![ex(12, 2), ex(3, 1)].into_iter();
        let mut pending = None;
        let b = build_batch(4, 8, false, 0, || stream.next(), &mut pending).expect("batch");
        assert_eq!(b.ids.len(), 2);
        assert_eq!(b.tokens(), 8 + 3);
        assert!(build_batch(1, 8, false, 0, || stream.next(), &mut pending).is_none());
    }

    #[test]
    fn completion_formats() {
        let e = Example {
            prompt: "2+2".into(),
            reasoning: Some("2+2=4.".into()),
            answer: Some("4".into()),
            messages: vec![],
            image: None,
        };
        assert_eq!(
            completion_text(&e),
            "<think>2+2=4.</think><answer>4</answer>"
        );
    }

    /// Three SFT steps (forward, backward, AdamW) of a packed batch with LoRA and without, on
    /// wgpu (lavapipe in the test script) and on the CPU from the same weights: the same losses
    /// to 1e-4.
    #[test]
    fn sft_steps_on_wgpu_give_the_cpu_losses() {
        use crate::backend::Backend;
        use crate::models::lora::LoraConfig;
        use crate::train::optim::AdamWConfig;
        let Some(gpu) = crate::test_files::wgpu_backend() else {
            return;
        };
        let mut stream = vec![ex(9, 3), ex(6, 2), ex(12, 4)].into_iter();
        let mut pending = None;
        let batch = build_batch(2, 16, true, 0, || stream.next(), &mut pending).expect("batch");
        for lora in [true, false] {
            let losses = |backend: &Backend| -> Vec<f64> {
                let mut model = crate::formats::loader::load_model(
                    crate::models::tiny::TINY_REASONER,
                    &backend.autodiff(),
                )
                .expect("tiny reasoner")
                .model;
                if lora {
                    model = model.attach_lora(&LoraConfig::default(), 7).expect("lora");
                }
                let mut optimizer = AdamW::new(AdamWConfig {
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-8,
                    weight_decay: 0.0,
                });
                let mut losses = Vec::new();
                for _ in 0..3 {
                    let mut grads = GradBuffer::default();
                    let stats = forward_backward(&model, &batch, &mut grads).expect("step");
                    model = apply_update(model, &mut optimizer, &grads, 1e-3, Some(1.0))
                        .expect("update")
                        .0;
                    losses.push(stats.loss);
                }
                losses
            };
            let cpu = losses(&Backend::cpu());
            let wgpu = losses(&gpu);
            assert!(cpu[2] < cpu[0], "training lowers the loss: {cpu:?}");
            for (c, g) in cpu.iter().zip(&wgpu) {
                assert!(
                    (c - g).abs() < 1e-4,
                    "lora {lora}: cpu {cpu:?} vs wgpu {wgpu:?}"
                );
            }
        }
    }
}
