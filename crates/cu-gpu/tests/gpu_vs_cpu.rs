//! The GPU path equals the CPU twin bit for bit, on random shapes and values and on edge sizes.
//!
//! Needs a GPU adapter; Debian's `mesa-vulkan-drivers` (lavapipe) provides one on any machine.
//! With `CI=true` a missing adapter fails these tests; elsewhere they print why they skip.
//! Sizes stay small: lavapipe runs shaders on the CPU.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::{Arc, Barrier, OnceLock};
use std::time::Duration;

use cu_gpu::{
    BatchPolicy, DeviceConfig, ElemType, MatmulDims, Placement, Requant, TensorDevice, TensorError, cpu,
    i8s_to_bytes, i32s_from_le, i32s_to_le,
};
use proptest::prelude::*;

/// The shared GPU device (forced GPU placement: no silent CPU fallback), or `None` with a printed
/// reason. Panics when `CI=true` and there is no adapter.
fn gpu() -> Option<&'static TensorDevice> {
    static DEVICE: OnceLock<Result<TensorDevice, TensorError>> = OnceLock::new();
    let device = DEVICE.get_or_init(|| {
        let config = DeviceConfig {
            placement: Placement::Gpu,
            batch: BatchPolicy {
                window: Duration::from_micros(200),
                ..BatchPolicy::default()
            },
            ..DeviceConfig::default()
        };
        let d = TensorDevice::open(config);
        if let Ok(d) = &d {
            eprintln!("cu-gpu tests run on {:?}", d.adapter());
        }
        d
    });
    match device {
        Ok(d) => Some(d),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true requires a GPU adapter (apt-get install mesa-vulkan-drivers): {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

fn matmul_case(dev: &TensorDevice, a: &[i8], b: &[i8], d: MatmulDims) {
    let (a, b) = (i8s_to_bytes(a), i8s_to_bytes(b));
    let want = cpu::matmul_i8(&a, &b, d).unwrap();
    let got = dev.matmul_i8(&a, &b, d).unwrap();
    assert!(got == want, "matmul {d:?} differs");
}

fn random_i8(len: usize, seed: u64) -> Vec<i8> {
    // SplitMix64: a fixed, seeded generator so edge-size tests are reproducible.
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as i8
        })
        .collect()
}

#[test]
fn matmul_edge_sizes() {
    let Some(dev) = gpu() else { return };
    let sizes = [
        (1, 1, 1),
        (1, 2, 1),
        (1, 3, 1),
        (1, 5, 1),
        (2, 7, 3),
        (1, 33, 1),
        (3, 31, 65),
        (63, 64, 65),
        (64, 64, 64),
        (65, 65, 63),
        (64, 32, 64),
        (1, 256, 128),
        (130, 9, 1),
        (1, 9, 130),
        (127, 129, 67),
    ];
    for (i, &(m, k, n)) in sizes.iter().enumerate() {
        let d = MatmulDims { m, k, n };
        let a = random_i8((m * k) as usize, 2 * i as u64);
        let b = random_i8((k * n) as usize, 2 * i as u64 + 1);
        matmul_case(dev, &a, &b, d);
        // Extremes: every product is (-128)·(-128) or (-128)·127.
        matmul_case(
            dev,
            &vec![-128; (m * k) as usize],
            &vec![-128; (k * n) as usize],
            d,
        );
        matmul_case(
            dev,
            &vec![-128; (m * k) as usize],
            &vec![127; (k * n) as usize],
            d,
        );
    }
}

#[test]
fn matmul_accumulator_wraps_like_the_cpu() {
    let Some(dev) = gpu() else { return };
    // 2^18 + 3 products of 2^14 overflow int32: both paths must wrap identically.
    let k = (1 << 18) + 3;
    let a = vec![-128i8; k as usize];
    matmul_case(dev, &a, &a, MatmulDims { m: 1, k, n: 1 });
    let got = dev
        .matmul_i8(&i8s_to_bytes(&a), &i8s_to_bytes(&a), MatmulDims { m: 1, k, n: 1 })
        .unwrap();
    assert_eq!(i32s_from_le(&got), vec![3 << 14]);
}

/// Regression: lavapipe (Mesa 22.x) silently ends an invocation's loops after 65535 iterations in
/// total, which once capped K at 209716. Long K is now split into chunked dispatches.
#[test]
fn long_k_is_summed_completely() {
    let Some(dev) = gpu() else { return };
    for (m, k, n) in [(1, 300_001, 1), (2, 140_000, 3)] {
        let a = random_i8((m * k) as usize, u64::from(k));
        let b = random_i8((k * n) as usize, u64::from(k) + 1);
        matmul_case(dev, &a, &b, MatmulDims { m, k, n });
    }
}

/// Regression (same lavapipe loop limit): the longest rows softmax accepts.
#[test]
fn softmax_longest_rows() {
    let Some(dev) = gpu() else { return };
    let cols = cu_gpu::MAX_SOFTMAX_COLS;
    let logits: Vec<i32> = random_i8((2 * cols) as usize, 7)
        .iter()
        .map(|&v| i32::from(v) * 1000)
        .collect();
    let x = i32s_to_le(&logits);
    for beta in [1, 3000, 1 << 20] {
        assert_eq!(
            dev.softmax_argmax(&x, 2, cols, beta).unwrap(),
            cpu::softmax_argmax(&x, 2, cols, beta).unwrap()
        );
    }
}

#[test]
fn empty_operands_match() {
    let Some(dev) = gpu() else { return };
    for d in [
        MatmulDims { m: 0, k: 3, n: 2 },
        MatmulDims { m: 2, k: 0, n: 3 },
        MatmulDims { m: 2, k: 3, n: 0 },
    ] {
        let a = vec![1u8; (d.m * d.k) as usize];
        let b = vec![1u8; (d.k * d.n) as usize];
        assert_eq!(
            dev.matmul_i8(&a, &b, d).unwrap(),
            cpu::matmul_i8(&a, &b, d).unwrap()
        );
    }
    assert!(dev.relu(ElemType::I8, &[]).unwrap().is_empty());
    let q = Requant {
        multiplier: 1,
        shift: 0,
        zero_point: 0,
    };
    assert!(dev.requantize(&[], q).unwrap().is_empty());
}

#[test]
fn bad_arguments_are_rejected_identically() {
    let Some(dev) = gpu() else { return };
    let d = MatmulDims { m: 2, k: 3, n: 2 };
    assert_eq!(
        dev.matmul_i8(&[0; 5], &[0; 6], d),
        cpu::matmul_i8(&[0; 5], &[0; 6], d)
    );
    let q = Requant {
        multiplier: 1,
        shift: -32,
        zero_point: 0,
    };
    assert_eq!(dev.requantize(&[0; 8], q), cpu::requantize(&[0; 8], q));
    assert_eq!(
        dev.add(ElemType::I8, &[0; 6], &[0; 4]),
        cpu::add(ElemType::I8, &[0; 6], &[0; 4])
    );
    assert!(matches!(
        dev.softmax_argmax(&[0; 4], 1, 0, 1),
        Err(TensorError::InvalidArgument { .. })
    ));
}

fn matmul_shape() -> impl Strategy<Value = (u32, u32, u32)> {
    let dim = prop_oneof![1u32..=9, 60u32..=70, 1u32..=140];
    (dim.clone(), dim.clone(), dim)
}

fn requant_params() -> impl Strategy<Value = Requant> {
    let multiplier = prop_oneof![
        any::<i32>(),
        (1i32 << 30)..i32::MAX,
        Just(i32::MIN),
        Just(i32::MAX)
    ];
    let shift = prop_oneof![-31i32..=31, Just(-31), Just(31), 0i32..=12];
    let zero_point = prop_oneof![-128i32..=127, any::<i32>(), Just(i32::MIN), Just(i32::MAX)];
    (multiplier, shift, zero_point).prop_map(|(multiplier, shift, zero_point)| Requant {
        multiplier,
        shift,
        zero_point,
    })
}

fn i32_value() -> impl Strategy<Value = i32> {
    prop_oneof![
        any::<i32>(),
        -70_000i32..70_000,
        Just(i32::MIN),
        Just(i32::MAX),
        Just(0)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn matmul_gpu_equals_cpu((m, k, n) in matmul_shape(), seed in any::<u64>()) {
        let Some(dev) = gpu() else { return Ok(()) };
        let d = MatmulDims { m, k, n };
        let a = i8s_to_bytes(&random_i8((m * k) as usize, seed));
        let b = i8s_to_bytes(&random_i8((k * n) as usize, !seed));
        prop_assert_eq!(dev.matmul_i8(&a, &b, d).unwrap(), cpu::matmul_i8(&a, &b, d).unwrap());
    }

    #[test]
    fn requantize_gpu_equals_cpu(x in prop::collection::vec(i32_value(), 1..600), q in requant_params()) {
        let Some(dev) = gpu() else { return Ok(()) };
        let x = i32s_to_le(&x);
        prop_assert_eq!(dev.requantize(&x, q).unwrap(), cpu::requantize(&x, q).unwrap());
    }

    #[test]
    fn add_and_relu_gpu_equal_cpu(
        rows in 1usize..40,
        b in prop::collection::vec(any::<i32>(), 1..40),
        seed in any::<u64>(),
        wide in any::<bool>(),
    ) {
        let Some(dev) = gpu() else { return Ok(()) };
        let (ty, a, b) = if wide {
            let a: Vec<i32> = random_i8(rows * b.len() * 4, seed).chunks(4)
                .map(|c| i32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8])).collect();
            (ElemType::I32, i32s_to_le(&a), i32s_to_le(&b))
        } else {
            let b8: Vec<i8> = b.iter().map(|&v| v as i8).collect();
            (ElemType::I8, i8s_to_bytes(&random_i8(rows * b8.len(), seed)), i8s_to_bytes(&b8))
        };
        prop_assert_eq!(dev.add(ty, &a, &b).unwrap(), cpu::add(ty, &a, &b).unwrap());
        prop_assert_eq!(dev.relu(ty, &a).unwrap(), cpu::relu(ty, &a).unwrap());
    }

    #[test]
    fn softmax_gpu_equals_cpu(
        rows in 1u32..70,
        cols in prop_oneof![1u32..=12, 1u32..=300],
        beta in prop_oneof![any::<u32>(), 0u32..200_000, Just(0), Just(u32::MAX)],
        narrow in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let Some(dev) = gpu() else { return Ok(()) };
        let raw = random_i8((rows * cols * 4) as usize, seed);
        let logits: Vec<i32> = raw.chunks(4).map(|c| {
            let v = i32::from_le_bytes([c[0] as u8, c[1] as u8, c[2] as u8, c[3] as u8]);
            if narrow { v % 300 } else { v }
        }).collect();
        let x = i32s_to_le(&logits);
        prop_assert_eq!(
            dev.softmax_argmax(&x, rows, cols, beta).unwrap(),
            cpu::softmax_argmax(&x, rows, cols, beta).unwrap()
        );
    }
}

#[test]
fn concurrent_callers_share_submissions_and_get_their_own_results() {
    let Some(_) = gpu() else { return };
    // A device of its own with a wide window, so the batch count is not disturbed by other tests.
    let dev = TensorDevice::open(DeviceConfig {
        placement: Placement::Gpu,
        batch: BatchPolicy {
            window: Duration::from_millis(20),
            max_jobs: 64,
            max_bytes: 64 << 20,
        },
        ..DeviceConfig::default()
    })
    .unwrap();
    let threads = 12;
    let per_thread = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let dev = dev.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                for j in 0..per_thread {
                    let seed = (t * 100 + j) as u64;
                    let (m, k, n) = (5 + t as u32, 17 + j as u32, 9 + (t + j) as u32);
                    let d = MatmulDims { m, k, n };
                    let a = i8s_to_bytes(&random_i8((m * k) as usize, seed));
                    let b = i8s_to_bytes(&random_i8((k * n) as usize, !seed));
                    assert_eq!(
                        dev.matmul_i8(&a, &b, d).unwrap(),
                        cpu::matmul_i8(&a, &b, d).unwrap()
                    );
                    let x = i32s_to_le(
                        &(0..(37 * (t + 1)) as i32)
                            .map(|v| v * 9973 - 50_000)
                            .collect::<Vec<_>>(),
                    );
                    let q = Requant {
                        multiplier: 1 << 30,
                        shift: t as i32 % 8,
                        zero_point: j as i32,
                    };
                    assert_eq!(dev.requantize(&x, q).unwrap(), cpu::requantize(&x, q).unwrap());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = dev.batch_stats();
    let jobs = (threads * per_thread * 2) as u64;
    assert_eq!(stats.jobs, jobs);
    assert_eq!(stats.failed_submissions, 0);
    assert!(stats.submissions < jobs, "no batching happened: {stats:?}");
    eprintln!("{jobs} jobs in {} submissions", stats.submissions);
}
