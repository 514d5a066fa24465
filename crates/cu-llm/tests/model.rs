//! The integer forward pass: determinism, agreement with the float reference (`tests/llm/float_ref.py`,
//! numpy) on the real SmolLM2 file and on a small synthetic model, and clear errors for bad models and
//! over-long sequences.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use cu_llm::gguf::GgufFile;
use cu_llm::model::{LOGIT_Q, Model, ModelError, argmax};

mod common;
use common::{model_path, python_has_gguf};

fn float_ref_py() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/llm/float_ref.py");
    if !p.is_file() {
        common::skip_or_fail("tests/llm/float_ref.py is missing");
        return None;
    }
    python_has_gguf().then_some(p)
}

/// The float reference's logits (float64) after each token of `tokens`, from `float_ref.Model`.
fn float_logits(gguf: &Path, tokens: &[u32]) -> Vec<Vec<f64>> {
    let script = r#"
import sys, json, numpy as np
sys.path.insert(0, sys.argv[1])
import float_ref
m = float_ref.Model(sys.argv[2], np.float64)
lg = m.forward(json.loads(sys.argv[3]))
print(json.dumps(lg.tolist()))
"#;
    let dir = float_ref_py().unwrap().parent().unwrap().to_path_buf();
    let toks = serde_json::to_string(tokens).unwrap();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir)
        .arg(gguf)
        .arg(toks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "float_ref: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run(model: &Model, tokens: &[u32]) -> Vec<Vec<i32>> {
    let mut cache = model.new_cache(tokens.len()).unwrap();
    tokens
        .iter()
        .map(|&t| {
            let mut l = vec![0; model.config().n_vocab];
            model.forward(&mut cache, t, &mut l).unwrap();
            l
        })
        .collect()
}

fn to_f64(l: &[i32]) -> Vec<f64> {
    l.iter()
        .map(|&v| f64::from(v) / f64::from(1u32 << LOGIT_Q))
        .collect()
}

fn argmax_f64(l: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best
}

/// `<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n` (ids from the
/// GGUF vocabulary).
const PROMPT: &[u32] = &[
    1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
];

#[test]
fn real_model_is_deterministic_and_agrees_with_the_float_reference() {
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).unwrap();
    let vocab = file
        .metadata("tokenizer.ggml.tokens")
        .unwrap()
        .as_array()
        .unwrap();
    let text: String = PROMPT
        .iter()
        .map(|&t| vocab[t as usize].as_str().unwrap())
        .collect();
    assert_eq!(
        text,
        "<|im_start|>userĊWhatĠisĠtheĠcapitalĠofĠFrance?<|im_end|>Ċ<|im_start|>assistantĊ"
    );
    let model = Model::from_gguf(&file).unwrap();
    let a = run(&model, PROMPT);
    let b = run(&model, PROMPT);
    assert_eq!(a, b, "same tokens, same cache state: identical logits");
    let mut threaded = Model::from_gguf(&file).unwrap();
    threaded.set_threads(2);
    assert_eq!(
        run(&threaded, &PROMPT[..4]),
        a[..4],
        "2 threads give the same logits"
    );
    // (Debug builds run about one token a second: the remaining checks use short prefixes.)
    let model2 = Model::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(
        run(&model2, &PROMPT[..3]),
        a[..3],
        "a second load gives identical logits"
    );
    // A cleared cache replays identically.
    let mut cache = model.new_cache(PROMPT.len()).unwrap();
    let mut l = vec![0; model.config().n_vocab];
    for &t in &PROMPT[5..7] {
        model.forward(&mut cache, t, &mut l).unwrap();
    }
    cache.clear();
    assert!(cache.is_empty());
    for &t in &PROMPT[..4] {
        model.forward(&mut cache, t, &mut l).unwrap();
    }
    assert_eq!(l, a[3]);

    let Some(_) = float_ref_py() else { return };
    let reference = float_logits(&path, PROMPT);
    assert_eq!(reference.len(), PROMPT.len());
    let want = argmax_f64(reference.last().unwrap());
    assert_eq!(argmax(a.last().unwrap()), want, "first generated token");
    assert_eq!(want, 504, "the reference answers \"The\"");
    for (i, (ours, theirs)) in a.iter().zip(&reference).enumerate() {
        let ours = to_f64(ours);
        let worst = ours
            .iter()
            .zip(theirs)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        eprintln!("position {i}: max |logit - float| = {worst:.5}");
        assert!(
            worst < 0.05,
            "position {i}: logits differ from the float reference by {worst}"
        );
    }
}

#[test]
fn configured_context_is_enforced() {
    let Some(path) = model_path() else { return };
    let model = Model::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert!(matches!(model.new_cache(0), Err(ModelError::BadContext { .. })));
    assert!(matches!(
        model.new_cache(8193),
        Err(ModelError::BadContext {
            requested: 8193,
            max: 8192
        })
    ));
    let mut cache = model.new_cache(3).unwrap();
    let mut l = vec![0; model.config().n_vocab];
    for &t in &PROMPT[..3] {
        model.forward(&mut cache, t, &mut l).unwrap();
    }
    assert!(matches!(
        model.forward(&mut cache, PROMPT[3], &mut l),
        Err(ModelError::ContextFull(3))
    ));
    assert_eq!(cache.len(), 3);
    assert!(matches!(
        model.forward(&mut model.new_cache(4).unwrap(), 49152, &mut l),
        Err(ModelError::TokenOutOfRange { .. })
    ));
    assert!(matches!(
        model.forward(&mut model.new_cache(4).unwrap(), 1, &mut [0; 10]),
        Err(ModelError::LogitsLength { .. })
    ));
}

#[test]
fn truncated_real_file_is_an_error() {
    let Some(path) = model_path() else { return };
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() - 100);
    assert!(GgufFile::parse(bytes).is_err());
}

// ---- a small synthetic Llama model ----

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Hyperparameters of the synthetic model and tweaks that break it.
#[derive(Clone)]
struct Tiny {
    n_embd: u64,
    n_head: u32,
    n_kv: u32,
    n_ff: u64,
    vocab: u64,
    layers: u32,
    /// Rows of blk.0.attn_k (normally n_kv · head_dim).
    k_rows: Option<u64>,
    arch: &'static str,
    norm_type_q8: bool,
    drop_tensor: Option<&'static str>,
    /// `llama.block_count` in the metadata (normally `layers`).
    block_count: Option<u32>,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            n_embd: 128,
            n_head: 2,
            n_kv: 1,
            n_ff: 96,
            vocab: 80,
            layers: 2,
            k_rows: None,
            arch: "llama",
            norm_type_q8: false,
            drop_tensor: None,
            block_count: None,
        }
    }
}

fn f16_bits(v: f32) -> u16 {
    // Exact for the values used: small dyadic rationals within f16 range (normal).
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    let man = ((b >> 13) & 0x3ff) as u16;
    if v == 0.0 {
        sign
    } else {
        sign | ((exp as u16) << 10) | man
    }
}

impl Tiny {
    fn gguf(&self) -> Vec<u8> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let hd = self.n_embd / u64::from(self.n_head);
        let mut tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)> = Vec::new();
        let q4 = |rng: &mut Rng, rows: u64, cols: u64| {
            let mut b = Vec::new();
            for _ in 0..rows * cols / 32 {
                let d = (1 + rng.next() % 64) as f32 / 2048.0;
                let m = -d * (4.0 + (rng.next() % 8) as f32);
                b.extend(f16_bits(d).to_le_bytes());
                b.extend(f16_bits(m).to_le_bytes());
                b.extend((0..16).map(|_| rng.next() as u8));
            }
            b
        };
        let q8 = |rng: &mut Rng, rows: u64, cols: u64| {
            let mut b = Vec::new();
            for _ in 0..rows * cols / 32 {
                b.extend(f16_bits((1 + rng.next() % 64) as f32 / 1024.0).to_le_bytes());
                b.extend((0..32).map(|_| rng.next() as u8));
            }
            b
        };
        let norm = |rng: &mut Rng, n: u64| -> Vec<u8> {
            (0..n)
                .flat_map(|_| (0.5 + (rng.next() % 1000) as f32 / 1000.0).to_le_bytes())
                .collect()
        };
        let e = self.n_embd;
        let kv = u64::from(self.n_kv) * hd;
        tensors.push((
            "token_embd.weight".into(),
            vec![e, self.vocab],
            8,
            q8(&mut rng, self.vocab, e),
        ));
        tensors.push(("output_norm.weight".into(), vec![e], 0, norm(&mut rng, e)));
        for l in 0..self.layers {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            if self.norm_type_q8 && l == 0 {
                tensors.push((n("attn_norm"), vec![e], 8, q8(&mut rng, 1, e)));
            } else {
                tensors.push((n("attn_norm"), vec![e], 0, norm(&mut rng, e)));
            }
            let k_rows = if l == 0 { self.k_rows.unwrap_or(kv) } else { kv };
            tensors.push((n("attn_q"), vec![e, e], 3, q4(&mut rng, e, e)));
            tensors.push((n("attn_k"), vec![e, k_rows], 3, q4(&mut rng, k_rows, e)));
            tensors.push((n("attn_v"), vec![e, kv], 3, q4(&mut rng, kv, e)));
            tensors.push((n("attn_output"), vec![e, e], 3, q4(&mut rng, e, e)));
            tensors.push((n("ffn_norm"), vec![e], 0, norm(&mut rng, e)));
            tensors.push((n("ffn_gate"), vec![e, self.n_ff], 3, q4(&mut rng, self.n_ff, e)));
            tensors.push((n("ffn_up"), vec![e, self.n_ff], 3, q4(&mut rng, self.n_ff, e)));
            tensors.push((n("ffn_down"), vec![self.n_ff, e], 3, q4(&mut rng, e, self.n_ff)));
        }
        if let Some(drop) = self.drop_tensor {
            tensors.retain(|t| t.0 != drop);
        }
        let mut kvs: Vec<(String, u32, Vec<u8>)> = Vec::new();
        let s = |v: &str| {
            let mut b = (v.len() as u64).to_le_bytes().to_vec();
            b.extend(v.as_bytes());
            b
        };
        kvs.push(("general.architecture".into(), 8, s(self.arch)));
        let u = |k: &str, v: u32| (format!("llama.{k}"), 4u32, v.to_le_bytes().to_vec());
        kvs.push(u("block_count", self.block_count.unwrap_or(self.layers)));
        kvs.push(u("context_length", 64));
        kvs.push(u("embedding_length", e as u32));
        kvs.push(u("feed_forward_length", self.n_ff as u32));
        kvs.push(u("attention.head_count", self.n_head));
        kvs.push(u("attention.head_count_kv", self.n_kv));
        kvs.push(u("rope.dimension_count", hd as u32));
        kvs.push(u("vocab_size", self.vocab as u32));
        kvs.push(("llama.rope.freq_base".into(), 6, 10000f32.to_le_bytes().to_vec()));
        kvs.push((
            "llama.attention.layer_norm_rms_epsilon".into(),
            6,
            1e-5f32.to_le_bytes().to_vec(),
        ));
        kvs.push((
            "tokenizer.ggml.eos_token_id".into(),
            4,
            2u32.to_le_bytes().to_vec(),
        ));
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((kvs.len() as u64).to_le_bytes());
        for (k, ty, v) in &kvs {
            out.extend(s(k));
            out.extend(ty.to_le_bytes());
            out.extend(v);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in &tensors {
            out.extend(s(name));
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        for (_, _, _, data) in &tensors {
            out.extend(data);
            while !out.len().is_multiple_of(32) {
                out.push(0);
            }
        }
        out
    }

    fn load(&self) -> Result<Model, ModelError> {
        Model::from_gguf(&GgufFile::parse(self.gguf()).unwrap())
    }
}

#[test]
fn synthetic_model_agrees_with_the_float_reference() {
    let tiny = Tiny::default();
    let model = tiny.load().unwrap();
    let tokens: Vec<u32> = vec![1, 5, 79, 0, 33, 33, 12, 64, 7, 2, 50, 19];
    let ours = run(&model, &tokens);
    assert_eq!(ours, run(&model, &tokens));
    for threads in [2, 3, 8] {
        let mut m = tiny.load().unwrap();
        m.set_threads(threads);
        assert_eq!(run(&m, &tokens), ours, "{threads} threads give the same logits");
    }
    let Some(_) = float_ref_py() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, tiny.gguf()).unwrap();
    let reference = float_logits(&path, &tokens);
    for (i, (o, r)) in ours.iter().zip(&reference).enumerate() {
        let o = to_f64(o);
        let scale = r.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let worst = o.iter().zip(r).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        eprintln!("position {i}: logits up to {scale:.3}, max |diff| {worst:.6}");
        assert!(worst < 1e-4 * scale.max(1.0), "position {i}: {worst}");
        assert_eq!(argmax_f64(&o), argmax_f64(r), "position {i}");
    }
}

#[test]
fn malformed_models_are_clear_errors() {
    assert!(Tiny::default().load().is_ok());
    let e = |t: Tiny| t.load().unwrap_err();
    let err = e(Tiny {
        k_rows: Some(128),
        ..Tiny::default()
    });
    assert!(
        matches!(&err, ModelError::TensorShape { name, found, expected }
            if name == "blk.0.attn_k.weight" && found == &[128, 128] && expected == &[128, 64]),
        "{err}"
    );
    assert!(matches!(
        e(Tiny {
            arch: "gpt2",
            ..Tiny::default()
        }),
        ModelError::Unsupported(_)
    ));
    assert!(matches!(
        e(Tiny {
            norm_type_q8: true,
            ..Tiny::default()
        }),
        ModelError::TensorType { .. }
    ));
    assert!(matches!(
        e(Tiny { drop_tensor: Some("blk.1.ffn_up.weight"), ..Tiny::default() }),
        ModelError::MissingTensor(n) if n == "blk.1.ffn_up.weight"
    ));
    assert!(matches!(
        e(Tiny {
            n_kv: 3,
            ..Tiny::default()
        }),
        ModelError::Hyperparameters(_)
    ));
    // head_dim 32 is not a power of 4: the score scale would not be exact.
    assert!(matches!(
        e(Tiny {
            n_head: 4,
            n_kv: 2,
            ..Tiny::default()
        }),
        ModelError::Unsupported(_)
    ));
    // A truncated file fails in the GGUF reader.
    let mut b = Tiny::default().gguf();
    b.truncate(b.len() - 40);
    assert!(GgufFile::parse(b).is_err());
}

#[test]
fn a_kv_slab_gives_the_same_logits_as_the_cache() {
    let model = Tiny::default().load().unwrap();
    let tokens: Vec<u32> = vec![1, 5, 79, 0, 33, 33, 12, 64, 7, 2];
    let expected = run(&model, &tokens);
    let capacity = tokens.len() + 3;
    let len = model.kv_slab_len(capacity).unwrap();
    // Whatever the slab held before (here: garbage) does not matter: each position is written before it
    // is read.
    let mut slab: Vec<i32> = (0..len as i64)
        .map(|i| (i * 2_654_435_761 % 1_000_003) as i32)
        .collect();
    let mut scratch = model.new_scratch();
    let mut logits = vec![0; model.config().n_vocab];
    for (pos, &t) in tokens.iter().enumerate() {
        model
            .forward_slab(&mut slab, capacity, pos, &mut scratch, t, &mut logits)
            .unwrap();
        assert_eq!(logits, expected[pos], "position {pos}");
    }
    // Running a position again overwrites it: the same logits (a process that retries a step).
    let last = tokens.len() - 1;
    model
        .forward_slab(&mut slab, capacity, last, &mut scratch, tokens[last], &mut logits)
        .unwrap();
    assert_eq!(logits, expected[last]);
    let err = |r: Result<(), ModelError>| r.unwrap_err();
    assert!(matches!(
        err(model.forward_slab(&mut slab, capacity, capacity, &mut scratch, 1, &mut logits)),
        ModelError::ContextFull(c) if c == capacity
    ));
    assert!(matches!(
        err(model.forward_slab(&mut slab[1..], capacity, 0, &mut scratch, 1, &mut logits)),
        ModelError::SlabLength { .. }
    ));
    let ctx = model.config().context_length;
    let mut big = Vec::new();
    assert!(matches!(
        err(model.forward_slab(&mut big, ctx + 1, 0, &mut scratch, 1, &mut logits)),
        ModelError::BadContext { .. }
    ));
    assert_eq!(
        model.config().kv_bytes_per_position() * capacity,
        model.kv_slab_len(capacity).unwrap() * 4
    );
    assert!(model.config().step_macs(1) > model.config().step_macs(0));
}

#[test]
fn a_batch_of_tokens_gives_the_same_cache_and_logits_as_one_at_a_time() {
    let model = Tiny::default().load().unwrap();
    let tokens: Vec<u32> = vec![1, 5, 79, 0, 33, 33, 12, 64, 7, 2, 50, 19, 3];
    let expected = run(&model, &tokens);
    let mut logits = vec![0; model.config().n_vocab];
    // Batches of every size from any start: the logits after each batch, then one more token, agree.
    for split in [1, 2, 3, 4, 5, 8, 12] {
        let mut cache = model.new_cache(tokens.len() + 2).unwrap();
        model
            .forward_batch(&mut cache, &tokens[..split], &mut logits)
            .unwrap();
        assert_eq!(logits, expected[split - 1], "batch of {split}");
        model
            .forward_batch(&mut cache, &tokens[split..], &mut logits)
            .unwrap();
        assert_eq!(
            logits,
            expected[tokens.len() - 1],
            "then {}",
            tokens.len() - split
        );
        assert_eq!(cache.len(), tokens.len());
    }
    // Over a caller's slab too.
    let capacity = tokens.len();
    let mut slab = vec![7; model.kv_slab_len(capacity).unwrap()];
    let mut scratch = model.new_scratch();
    model
        .forward_slab_batch(&mut slab, capacity, 0, &mut scratch, &tokens[..6], &mut logits)
        .unwrap();
    assert_eq!(logits, expected[5]);
    for (pos, &t) in tokens.iter().enumerate().skip(6) {
        model
            .forward_slab(&mut slab, capacity, pos, &mut scratch, t, &mut logits)
            .unwrap();
        assert_eq!(logits, expected[pos]);
    }
    // Checked before anything is written: a bad token anywhere, an empty batch, no room.
    let mut cache = model.new_cache(4).unwrap();
    assert!(matches!(
        model.forward_batch(&mut cache, &[1, 2, 100_000], &mut logits),
        Err(ModelError::TokenOutOfRange { token: 100_000, .. })
    ));
    assert!(matches!(
        model.forward_batch(&mut cache, &[], &mut logits),
        Err(ModelError::EmptyBatch)
    ));
    assert!(matches!(
        model.forward_batch(&mut cache, &[1, 2, 3, 4, 5], &mut logits),
        Err(ModelError::ContextFull(4))
    ));
    assert_eq!(cache.len(), 0);
}

/// The real model's greedy answer, pinned (computed before the batched pass and the KV slab existed):
/// any change to the arithmetic that moves a logit enough to change a choice shows here; the batched
/// prompt gives the same logits as token by token.
#[test]
fn real_model_greedy_answer_is_pinned() {
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).unwrap();
    let model = Model::from_gguf(&file).unwrap();
    let tok = cu_llm::tokenizer::Tokenizer::from_gguf(&file).unwrap();
    let chat = [cu_llm::tokenizer::ChatMessage::user(
        "What is the capital of France?",
    )];
    let ids = tok.encode(&tok.apply_chat_template(&chat, true));
    assert_eq!(ids.len(), 37);
    let mut cache = model.new_cache(64).unwrap();
    let mut logits = vec![0; model.config().n_vocab];
    model.forward_batch(&mut cache, &ids, &mut logits).unwrap();
    let mut one = model.new_cache(64).unwrap();
    let mut single = vec![0; model.config().n_vocab];
    for &t in &ids {
        model.forward(&mut one, t, &mut single).unwrap();
    }
    assert_eq!(logits, single, "the batched prompt gives the same logits");
    let mut answer = Vec::new();
    loop {
        let next = cu_llm::model::argmax(&logits) as u32;
        if next == tok.eos() || answer.len() == 12 {
            break;
        }
        answer.push(next);
        model.forward(&mut cache, next, &mut logits).unwrap();
    }
    assert_eq!(answer, [504, 3575, 282, 4649, 314, 7042, 30]);
    assert_eq!(tok.decode(&answer).unwrap(), "The capital of France is Paris.");
}
