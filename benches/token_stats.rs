//! Token statistics (log-sum-exp, entropy, top-5) over SmolLM2-sized logits rows: the fused
//! single pass against a plain two-pass softmax that materializes probabilities (the peer).
//! Throughput is bytes of logits read, to compare with memory bandwidth (~30 GB/s here).
//!
//! On each GPU backend present (wgpu; lavapipe on a machine without a GPU), the fused CubeCL
//! kernel (`kernels::device_stats`) against the composed burn ops (log-softmax, exp, sum, top-k)
//! on the same device, both reading back only the statistics.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::kernels::token_stats::{row_stats, rows_stats};
use std::hint::black_box;

const VOCAB: usize = 49_152;
const ROWS: usize = 64;
const TOP_K: usize = 5;

/// The obvious implementation: softmax into a new buffer, then entropy and a full sort for top-k.
fn naive(row: &[f32]) -> (f32, f32, Vec<(u32, f32)>) {
    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|&x| (x - m).exp()).collect();
    let z: f32 = exps.iter().sum();
    let lse = m + z.ln();
    let probs: Vec<f32> = exps.iter().map(|e| e / z).collect();
    let entropy = -probs
        .iter()
        .zip(row)
        .map(|(p, x)| p * (x - lse))
        .sum::<f32>();
    let mut idx: Vec<u32> = (0..row.len() as u32).collect();
    idx.sort_unstable_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    let top = idx
        .iter()
        .take(TOP_K)
        .map(|&i| (i, row[i as usize] - lse))
        .collect();
    (lse, entropy, top)
}

fn logits() -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..ROWS * VOCAB)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = logits();
    let mut group = c.benchmark_group("token_stats");
    group.throughput(Throughput::Bytes((ROWS * VOCAB * 4) as u64));
    group.bench_function(BenchmarkId::new("cpu_fused_parallel", ROWS), |b| {
        b.iter(|| black_box(rows_stats(black_box(&data), VOCAB, TOP_K)))
    });
    group.bench_function(BenchmarkId::new("cpu_fused_1thread", ROWS), |b| {
        b.iter(|| {
            for row in data.chunks(VOCAB) {
                black_box(row_stats(black_box(row), TOP_K));
            }
        })
    });
    group.bench_function(BenchmarkId::new("cpu_naive_softmax_peer", ROWS), |b| {
        b.iter(|| {
            for row in data.chunks(VOCAB) {
                black_box(naive(black_box(row)));
            }
        })
    });
    group.finish();

    for kind in [
        engine::backend::BackendKind::Wgpu,
        engine::backend::BackendKind::Cuda,
    ] {
        let backend = match engine::backend::Backend::new(kind) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("token_stats on {kind}: not measured ({e})");
                continue;
            }
        };
        let mut group = c.benchmark_group(format!("token_stats_{kind}"));
        group.throughput(Throughput::Bytes((ROWS * VOCAB * 4) as u64));
        group.sample_size(10);
        let tensor = Tensor::<2>::from_data(
            TensorData::new(data.clone(), [ROWS, VOCAB]),
            &backend.device,
        );
        let targets = vec![0u32; ROWS];
        group.bench_function(BenchmarkId::new("fused_kernel", ROWS), |b| {
            b.iter(|| {
                black_box(engine::kernels::fused::token_stats(
                    tensor.clone(),
                    &targets,
                    TOP_K,
                ))
            })
        });
        group.bench_function(BenchmarkId::new("composed_softmax_peer", ROWS), |b| {
            b.iter(|| {
                let lp = log_softmax(tensor.clone(), 1);
                let entropy = (lp.clone().exp() * lp.clone()).sum_dim(1).neg();
                let (top, ids) = lp.topk_with_indices(TOP_K, 1);
                black_box((entropy.into_data(), top.into_data(), ids.into_data()))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
