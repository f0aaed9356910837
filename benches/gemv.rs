//! Decode-shaped matrix products (1, 8 or 16 rows against SmolLM2-135M's projection shapes), the
//! engine's bandwidth-bound kernels against burn's own matmul on the same tensors (the peer).
//! Each iteration cycles through 24 weight matrices (≈ 85 MB, more than the L3 cache), as a
//! decode step does over the layers, so the figure is what memory can feed; throughput is bytes
//! of weights read, to compare with memory bandwidth (~30 GB/s on the 2-core dev machine).

use burn::tensor::{Device, Distribution, Tensor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::kernels::{matmul, matmul_nt};
use std::hint::black_box;

const COPIES: usize = 24;

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("decode_matmul");
    group.sample_size(20);
    // (name, rows, k, n, weights stored [n, k] like the tied LM head)
    for &(name, m, k, n, nt) in &[
        ("up 576x1536", 1, 576, 1536, false),
        ("down 1536x576", 1, 1536, 576, false),
        ("up 576x1536", 8, 576, 1536, false),
        ("up 576x1536", 16, 576, 1536, false),
        ("lm_head 49152x576", 1, 576, 49_152, true),
        ("lm_head 49152x576", 16, 576, 49_152, true),
    ] {
        let copies = if nt { 2 } else { COPIES };
        let shape = if nt { [n, k] } else { [k, n] };
        let weights: Vec<Tensor<2>> = (0..copies)
            .map(|_| Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), &device))
            .collect();
        let x = Tensor::<2>::random([m, k], Distribution::Uniform(-1.0, 1.0), &device);
        group.throughput(Throughput::Bytes((copies * k * n * 4) as u64));
        let id = format!("{name} x{m}");
        group.bench_function(BenchmarkId::new("engine", &id), |b| {
            b.iter(|| {
                for w in &weights {
                    let y = if nt {
                        matmul_nt(x.clone(), w.clone())
                    } else {
                        matmul(x.clone(), w.clone())
                    };
                    black_box(y.into_data());
                }
            })
        });
        group.bench_function(BenchmarkId::new("burn matmul (peer)", &id), |b| {
            b.iter(|| {
                for w in &weights {
                    let y = if nt {
                        x.clone().matmul(w.clone().transpose())
                    } else {
                        x.clone().matmul(w.clone())
                    };
                    black_box(y.into_data());
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
