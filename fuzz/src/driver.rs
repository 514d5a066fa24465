//! The `cargo test` mode of the targets: each seed, then deterministic mutations of the seeds (bit flips,
//! interesting bytes and integers, insertions and deletions, duplicated runs, dictionary tokens, splices of
//! two seeds), stacked one to four deep, for a bounded number of inputs and a bounded time.
//!
//! Not coverage-guided (cargo-fuzz is, see docs/ARCHITECTURE.md); it gives every CI run the same inputs
//! (the generator is seeded by the target's name, or `CU_FUZZ_SEED`), so a failure reproduces.
//! `CU_FUZZ_ITERS` (default [`DEFAULT_ITERS`]) and `CU_FUZZ_SECS` (default [`DEFAULT_SECS`]) set the budget.

use std::path::Path;
use std::time::{Duration, Instant};

/// The stack each target runs on: a modest one, so unbounded recursion fails here rather than on a server.
pub const STACK: usize = 256 << 10;
/// Mutated inputs per target by default.
pub const DEFAULT_ITERS: u64 = 20_000;
/// Seconds per target by default (whichever of the two budgets runs out first).
pub const DEFAULT_SECS: u64 = 4;
/// Longest generated input.
const MAX_LEN: usize = 256 << 10;

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Inputs executed (seeds included).
    pub execs: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// splitmix64: small, fast, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING_U64: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    4096,
    65536,
    1 << 31,
    u32::MAX as u64,
    1 << 40,
    u64::MAX,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>], dict: &[&[u8]]) {
    let len = input.len();
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = [0u8, 0xff, 0x7f, 0x80, b'0', b'9', b'"', b'{'][rng.below(8)];
        }
        2 if len > 0 => {
            // An interesting integer, little-endian or as decimal text, over the bytes at a position.
            let v = INTERESTING_U64[rng.below(INTERESTING_U64.len())];
            let bytes = if rng.below(2) == 0 {
                v.to_le_bytes()[..[1, 2, 4, 8][rng.below(4)]].to_vec()
            } else {
                v.to_string().into_bytes()
            };
            let at = rng.below(len);
            let end = (at + bytes.len()).min(len);
            input.splice(at..end, bytes);
        }
        3 => {
            let at = rng.below(len + 1);
            input.insert(at, rng.next() as u8);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            input.drain(at..at + n);
        }
        5 if len > 0 => {
            // Duplicate a run (repeats nesting, tokens, tags).
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(32));
            let run = input[at..at + n].to_vec();
            let most = if rng.below(8) == 0 { 2_000 } else { 8 };
            let times = 1 + rng.below(most);
            let to = rng.below(len + 1);
            let rep: Vec<u8> = run.iter().copied().cycle().take(n * times).collect();
            input.splice(to..to, rep);
        }
        6 | 7 if !dict.is_empty() => {
            let token = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            if rng.below(2) == 0 || len == 0 {
                input.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                input.splice(at..end, token.iter().copied());
            }
        }
        8 if !seeds.is_empty() => {
            // Splice: our head, another seed's tail.
            let other = &seeds[rng.below(seeds.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ if len > 0 => {
            let at = rng.below(len);
            input.truncate(at);
        }
        _ => input.push(rng.next() as u8),
    }
    input.truncate(MAX_LEN);
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The files of `fuzz/corpus/<target>/` whose names start with `prefix`, sorted by name: `seed-*` (made by
/// our code, see `write_seed_corpus`) and `regress-*` (inputs that once failed).
pub fn corpus_files(target: &str, prefix: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    });
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Every file of `fuzz/corpus/<target>/`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    corpus_files(target, "")
}

/// Runs `target` over `seeds` and then over mutations of them, on a [`STACK`]-byte thread. A failing input
/// is written to `target/cu-fuzz-failures/<name>-<n>` and the target's panic is re-raised.
pub fn run(name: &str, target: fn(&[u8]), seeds: Vec<Vec<u8>>, dict: &'static [&'static [u8]]) -> Report {
    let iters = env_u64("CU_FUZZ_ITERS").unwrap_or(DEFAULT_ITERS);
    let secs = Duration::from_secs(env_u64("CU_FUZZ_SECS").unwrap_or(DEFAULT_SECS));
    let seed = env_u64("CU_FUZZ_SEED").unwrap_or(0) ^ name_seed(name);
    let owned = name.to_string();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .stack_size(STACK)
        .spawn(move || {
            let start = Instant::now();
            let mut rng = Rng(seed);
            let mut execs = 0u64;
            let check = |input: &[u8]| {
                if let Err(p) = std::panic::catch_unwind(|| target(input)) {
                    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cu-fuzz-failures");
                    let file = dir.join(format!(
                        "{owned}-{:016x}",
                        name_seed(&String::from_utf8_lossy(input))
                    ));
                    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, input));
                    eprintln!(
                        "fuzz {owned}: failing input ({} bytes) saved to {}",
                        input.len(),
                        file.display()
                    );
                    std::panic::resume_unwind(p);
                }
            };
            for s in &seeds {
                check(s);
                execs += 1;
            }
            let mut current = Vec::new();
            for i in 0..iters {
                if start.elapsed() > secs {
                    break;
                }
                // Mostly start again from a seed; sometimes keep mutating the last input.
                if i % 4 == 0 || current.is_empty() || rng.below(3) == 0 {
                    current = seeds.get(rng.below(seeds.len())).cloned().unwrap_or_default();
                }
                for _ in 0..1 + rng.below(4) {
                    mutate(&mut rng, &mut current, &seeds, dict);
                }
                check(&current);
                execs += 1;
            }
            Report {
                execs,
                elapsed: start.elapsed(),
            }
        });
    let report = match worker.map(|w| w.join()) {
        Ok(Ok(r)) => r,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(e) => panic!("fuzz {name}: cannot start the worker thread: {e}"),
    };
    eprintln!(
        "fuzz {name}: {} inputs in {:.2} s",
        report.execs,
        report.elapsed.as_secs_f64()
    );
    report
}
