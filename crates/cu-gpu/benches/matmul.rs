//! int8 matmul throughput, GPU path against CPU twin, and the cost of a call through the batcher.
//!
//! `cargo bench -p cu-gpu --bench matmul -- --quick`. Throughput is reported in elements/s where one
//! element is one integer operation (a multiply-accumulate counts as 2), i.e. OPS; divide by 1e9
//! for GOPS. `CU_GPU_BENCH_MAX` (default 512) caps the cube size; sizes run from 64 upward by
//! doubling. Without a GPU adapter only the CPU rows run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cu_gpu::{BatchPolicy, DeviceConfig, ElemType, MatmulDims, Placement, TensorDevice, cpu};

fn gpu(window: Duration, max_jobs: usize) -> Option<TensorDevice> {
    let config = DeviceConfig {
        placement: Placement::Gpu,
        batch: BatchPolicy {
            window,
            max_jobs,
            ..BatchPolicy::default()
        },
        ..DeviceConfig::default()
    };
    match TensorDevice::open(config) {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("no GPU adapter, GPU rows skipped: {e}");
            None
        }
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn matmul(c: &mut Criterion) {
    let max: u32 = std::env::var("CU_GPU_BENCH_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let dev = gpu(Duration::ZERO, 64);
    if let Some(d) = &dev {
        eprintln!("GPU: {:?}", d.adapter());
    }
    let mut group = c.benchmark_group("matmul_i8");
    group.sample_size(10);
    let mut size = 64u32;
    while size <= max {
        let d = MatmulDims {
            m: size,
            k: size,
            n: size,
        };
        let a = data((size * size) as usize, 1);
        let b = data((size * size) as usize, 7);
        group.throughput(Throughput::Elements(2 * u64::from(size).pow(3)));
        group.bench_with_input(BenchmarkId::new("cpu", size), &size, |bench, _| {
            bench.iter(|| cpu::matmul_i8(&a, &b, d).unwrap())
        });
        if let Some(dev) = &dev {
            assert_eq!(
                dev.matmul_i8(&a, &b, d).unwrap(),
                cpu::matmul_i8(&a, &b, d).unwrap()
            );
            group.bench_with_input(BenchmarkId::new("gpu", size), &size, |bench, _| {
                bench.iter(|| dev.matmul_i8(&a, &b, d).unwrap())
            });
        }
        size *= 2;
    }
    group.finish();
}

/// One tiny operation (ReLU of 64 int8) per call: the fixed cost of a call on each path.
fn call_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("call_overhead");
    let x = data(64, 3);
    let cpu_dev = TensorDevice::cpu_only();
    group.bench_function("cpu_relu64", |b| {
        b.iter(|| cpu_dev.relu(ElemType::I8, &x).unwrap())
    });
    if let Some(dev) = gpu(Duration::ZERO, 64) {
        group.bench_function("gpu_relu64", |b| b.iter(|| dev.relu(ElemType::I8, &x).unwrap()));
    }
    group.finish();
}

/// Many threads (processes on different shards) each issuing small matmuls at once: jobs/s with
/// one submission per job (max_jobs = 1) against shared submissions with several windows.
fn batching(c: &mut Criterion) {
    let threads: usize = std::env::var("CU_GPU_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let per_thread = 8;
    let d = MatmulDims { m: 32, k: 64, n: 32 };
    let a = Arc::new(data(32 * 64, 5));
    let b = Arc::new(data(64 * 32, 9));
    let mut group = c.benchmark_group(format!("batching_{threads}x{per_thread}_32x64x32"));
    group.sample_size(10);
    group.throughput(Throughput::Elements((threads * per_thread) as u64));
    let configs = [
        ("unbatched", Duration::ZERO, 1),
        ("window_0us", Duration::ZERO, 64),
        ("window_100us", Duration::from_micros(100), 64),
        ("window_500us", Duration::from_micros(500), 64),
        ("window_2000us", Duration::from_micros(2000), 64),
    ];
    for (name, window, max_jobs) in configs {
        let Some(dev) = gpu(window, max_jobs) else { return };
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let barrier = Arc::new(Barrier::new(threads + 1));
                    let handles: Vec<_> = (0..threads)
                        .map(|_| {
                            let (dev, a, b, barrier) = (dev.clone(), a.clone(), b.clone(), barrier.clone());
                            std::thread::spawn(move || {
                                barrier.wait();
                                for _ in 0..per_thread {
                                    dev.matmul_i8(&a, &b, d).unwrap();
                                }
                            })
                        })
                        .collect();
                    barrier.wait();
                    let start = Instant::now();
                    for h in handles {
                        h.join().unwrap();
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        let s = dev.batch_stats();
        eprintln!(
            "{name}: {} jobs in {} submissions ({:.1} jobs/submission)",
            s.jobs,
            s.submissions,
            s.jobs as f64 / s.submissions.max(1) as f64
        );
    }
    group.finish();
}

criterion_group!(benches, matmul, call_overhead, batching);
criterion_main!(benches);
