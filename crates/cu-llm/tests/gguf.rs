//! The GGUF reader against the real SmolLM2 file (values from the Python `gguf` package, the oracle) and
//! against synthetic, truncated and corrupted files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use cu_llm::gguf::{GgmlType, GgufError, GgufFile, MetaValue, dequantize, f16_to_f32};
use proptest::prelude::*;

mod common;
use common::{model_path, python_has_gguf};

#[test]
fn real_file_metadata_and_tensor_table() {
    let Some(path) = model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    let u = |k: &str| f.metadata(k).and_then(MetaValue::as_u64).unwrap();
    assert_eq!(
        f.metadata("general.architecture").and_then(MetaValue::as_str),
        Some("llama")
    );
    assert_eq!(u("llama.block_count"), 30);
    assert_eq!(u("llama.embedding_length"), 576);
    assert_eq!(u("llama.attention.head_count"), 9);
    assert_eq!(u("llama.attention.head_count_kv"), 3);
    assert_eq!(u("llama.feed_forward_length"), 1536);
    assert_eq!(u("llama.vocab_size"), 49152);
    assert_eq!(u("llama.rope.dimension_count"), 64);
    assert_eq!(u("llama.context_length"), 8192);
    assert_eq!(u("tokenizer.ggml.bos_token_id"), 1);
    assert_eq!(u("tokenizer.ggml.eos_token_id"), 2);
    assert_eq!(
        f.metadata("llama.rope.freq_base"),
        Some(&MetaValue::F32(100000.0))
    );
    assert_eq!(
        f.metadata("llama.attention.layer_norm_rms_epsilon"),
        Some(&MetaValue::F32(1e-5))
    );
    assert_eq!(
        f.metadata("tokenizer.ggml.model").and_then(MetaValue::as_str),
        Some("gpt2")
    );
    assert_eq!(
        f.metadata("tokenizer.ggml.pre").and_then(MetaValue::as_str),
        Some("smollm")
    );
    assert_eq!(
        f.metadata("tokenizer.ggml.add_bos_token")
            .and_then(MetaValue::as_bool),
        Some(false)
    );
    let tokens = f
        .metadata("tokenizer.ggml.tokens")
        .and_then(MetaValue::as_array)
        .unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[1].as_str(), Some("<|im_start|>"));
    assert_eq!(
        f.metadata("tokenizer.ggml.merges")
            .and_then(MetaValue::as_array)
            .unwrap()
            .len(),
        48900
    );
    let types = f
        .metadata("tokenizer.ggml.token_type")
        .and_then(MetaValue::as_array)
        .unwrap();
    assert!(matches!(types[0], MetaValue::I32(_)));
    assert_eq!(
        f.metadata("general.languages"),
        Some(&MetaValue::Array(vec![MetaValue::String("en".into())]))
    );
    assert!(
        f.metadata("tokenizer.chat_template")
            .and_then(MetaValue::as_str)
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(f.metadata_entries().len(), 33); // the header's kv_count

    assert_eq!(f.tensors().len(), 272);
    assert!(f.tensor("output.weight").is_none());
    let (emb, bytes) = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (emb.dims.as_slice(), emb.ggml_type),
        (&[576u64, 49152][..], GgmlType::Q8_0)
    );
    assert_eq!(bytes.len() as u64, 576 * 49152 / 32 * 34);
    assert_eq!(f.data_start() + emb.offset, 1785664); // gguf's data_offset (absolute)
    for n in 0..30 {
        let t = |s: &str| f.tensor(&format!("blk.{n}.{s}.weight")).unwrap().0.clone();
        for (name, dims) in [
            ("attn_q", [576, 576]),
            ("attn_k", [576, 192]),
            ("attn_v", [576, 192]),
            ("attn_output", [576, 576]),
            ("ffn_gate", [576, 1536]),
            ("ffn_up", [576, 1536]),
            ("ffn_down", [1536, 576]),
        ] {
            let i = t(name);
            assert_eq!(
                (i.dims.as_slice(), i.ggml_type),
                (&dims[..], GgmlType::Q4_1),
                "blk.{n}.{name}"
            );
        }
        for name in ["attn_norm", "ffn_norm"] {
            let i = t(name);
            assert_eq!((i.dims.as_slice(), i.ggml_type), (&[576u64][..], GgmlType::F32));
        }
    }
    let (norm, _) = f.tensor("output_norm.weight").unwrap();
    assert_eq!(
        (norm.dims.as_slice(), norm.ggml_type),
        (&[576u64][..], GgmlType::F32)
    );
}

/// Our dequantised values equal the Python `gguf` package's bit for bit, on slices of one tensor of each type.
#[test]
fn dequantisation_matches_python_gguf() {
    let Some(path) = model_path() else { return };
    if !python_has_gguf() {
        return;
    }
    // (tensor, first element, count): token_embd rows 0 and 12345, a Q4_1 matrix's start and its end,
    // an F32 norm.
    let picks: &[(&str, usize, usize)] = &[
        ("token_embd.weight", 0, 576),
        ("token_embd.weight", 12345 * 576, 576),
        ("blk.0.attn_q.weight", 0, 640),
        ("blk.17.ffn_down.weight", 1536 * 575, 1536),
        ("blk.29.attn_v.weight", 576 * 100, 320),
        ("output_norm.weight", 0, 576),
        ("blk.3.ffn_norm.weight", 0, 576),
    ];
    let spec: Vec<String> = picks.iter().map(|(n, s, c)| format!("{n}:{s}:{c}")).collect();
    let script = r#"
import sys, gguf, numpy as np
r = gguf.GGUFReader(sys.argv[1])
ts = {t.name: t for t in r.tensors}
for spec in sys.argv[2:]:
    name, start, count = spec.split(':')
    t = ts[name]
    v = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
    print(' '.join('%08x' % x for x in v[int(start):int(start) + int(count)].view(np.uint32)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .args(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), picks.len());
    for ((name, start, count), line) in picks.iter().zip(lines) {
        let (info, bytes) = f.tensor(name).unwrap();
        let ours = dequantize(info.ggml_type, bytes, info.elements).unwrap();
        let theirs: Vec<u32> = line
            .split(' ')
            .map(|h| u32::from_str_radix(h, 16).unwrap())
            .collect();
        assert_eq!(theirs.len(), *count);
        let ours: Vec<u32> = ours[*start..start + count].iter().map(|v| v.to_bits()).collect();
        assert_eq!(ours, theirs, "{name} [{start}, +{count})");
    }
}

#[test]
fn f16_conversion_is_exact_for_every_value() {
    // Against the hardware/compiler's own f16 semantics expressed in f64: value = (-1)^s · m · 2^e.
    for h in 0..=u16::MAX {
        let v = f16_to_f32(h);
        let s = if h >> 15 == 1 { -1.0f64 } else { 1.0 };
        let e = i32::from((h >> 10) & 0x1f);
        let m = f64::from(h & 0x3ff);
        let expect = match e {
            0 => s * m * 2f64.powi(-24),
            31 if m == 0.0 => s * f64::INFINITY,
            31 => {
                assert!(v.is_nan());
                continue;
            }
            _ => s * (1024.0 + m) * 2f64.powi(e - 25),
        };
        assert_eq!(f64::from(v), expect, "{h:04x}");
        assert_eq!(v.is_sign_negative(), h >> 15 == 1, "{h:04x}");
    }
}

#[test]
fn truncated_real_file_is_an_error() {
    let Some(path) = model_path() else { return };
    let bytes = std::fs::read(&path).unwrap();
    let f = GgufFile::parse(bytes.clone()).unwrap();
    let data_end = f
        .tensors()
        .iter()
        .map(|t| f.data_start() + t.offset + t.size)
        .max()
        .unwrap() as usize;
    assert_eq!(data_end, bytes.len());
    for cut in [
        0,
        3,
        7,
        23,
        1000,
        500_000,
        1_785_600,
        f.data_start() as usize + 1000,
        bytes.len() - 1,
    ] {
        let err = GgufFile::parse(bytes[..cut].to_vec()).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::Truncated { .. } | GgufError::TensorOutOfBounds { .. } | GgufError::BadMagic(_)
            ),
            "cut {cut}: {err}"
        );
    }
}

// ---- synthetic files ----

/// A little GGUF writer for the tests.
struct W(Vec<u8>);

impl W {
    fn str(&mut self, s: &str) {
        self.0.extend((s.len() as u64).to_le_bytes());
        self.0.extend(s.as_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend(v.to_le_bytes());
    }
}

/// A v3 file with metadata of every type (nested arrays included) and an F32 [4] and a Q8_0 [32 x 2] tensor.
fn synthetic(alignment: Option<u32>) -> Vec<u8> {
    let mut w = W(Vec::new());
    w.0.extend(b"GGUF");
    w.u32(3);
    w.u64(2); // tensors
    w.u64(15 + u64::from(alignment.is_some())); // kvs
    let kv = |w: &mut W, k: &str, ty: u32, v: &[u8]| {
        w.str(k);
        w.u32(ty);
        w.0.extend(v);
    };
    kv(&mut w, "u8", 0, &[200]);
    kv(&mut w, "i8", 1, &[0xfe]);
    kv(&mut w, "u16", 2, &60000u16.to_le_bytes());
    kv(&mut w, "i16", 3, &(-3i16).to_le_bytes());
    kv(&mut w, "u32", 4, &4_000_000_000u32.to_le_bytes());
    kv(&mut w, "i32", 5, &(-5i32).to_le_bytes());
    kv(&mut w, "f32", 6, &1.5f32.to_le_bytes());
    kv(&mut w, "bool", 7, &[1]);
    let mut s = W(Vec::new());
    s.str("héllo");
    kv(&mut w, "string", 8, &s.0);
    kv(&mut w, "u64", 10, &u64::MAX.to_le_bytes());
    kv(&mut w, "i64", 11, &i64::MIN.to_le_bytes());
    kv(&mut w, "f64", 12, &(-0.25f64).to_le_bytes());
    // [[1, 2], []] of u16
    let mut a = W(Vec::new());
    a.u32(9);
    a.u64(2);
    a.u32(2);
    a.u64(2);
    a.0.extend(1u16.to_le_bytes());
    a.0.extend(2u16.to_le_bytes());
    a.u32(2);
    a.u64(0);
    kv(&mut w, "nested", 9, &a.0);
    let mut sa = W(Vec::new());
    sa.u32(8);
    sa.u64(2);
    sa.str("a");
    sa.str("");
    kv(&mut w, "strings", 9, &sa.0);
    let mut ea = W(Vec::new());
    ea.u32(7);
    ea.u64(0);
    kv(&mut w, "empty", 9, &ea.0);
    if let Some(al) = alignment {
        kv(&mut w, "general.alignment", 4, &al.to_le_bytes());
    }
    let al = u64::from(alignment.unwrap_or(32));
    w.str("norm");
    w.u32(1);
    w.u64(4);
    w.u32(0);
    w.u64(0);
    w.str("emb");
    w.u32(2);
    w.u64(32);
    w.u64(2);
    w.u32(8);
    w.u64(16u64.div_ceil(al) * al);
    while !(w.0.len() as u64).is_multiple_of(al) {
        w.0.push(0);
    }
    for v in [1.0f32, -2.0, 0.5, 3.25] {
        w.0.extend(v.to_le_bytes());
    }
    while !(w.0.len() as u64).is_multiple_of(al) {
        w.0.push(0);
    }
    for b in 0..2 {
        w.0.extend(0x3800u16.to_le_bytes()); // d = 0.5
        w.0.extend((0..32).map(|i| (i as i8 - 16 + b) as u8));
    }
    w.0
}

#[test]
fn synthetic_file_round_trips() {
    for alignment in [None, Some(8), Some(64)] {
        let f = GgufFile::parse(synthetic(alignment)).unwrap();
        assert_eq!(f.alignment(), u64::from(alignment.unwrap_or(32)));
        assert_eq!(f.metadata("u8"), Some(&MetaValue::U8(200)));
        assert_eq!(f.metadata("i8"), Some(&MetaValue::I8(-2)));
        assert_eq!(f.metadata("u16"), Some(&MetaValue::U16(60000)));
        assert_eq!(f.metadata("i16"), Some(&MetaValue::I16(-3)));
        assert_eq!(f.metadata("u32").and_then(MetaValue::as_u64), Some(4_000_000_000));
        assert_eq!(f.metadata("i32"), Some(&MetaValue::I32(-5)));
        assert_eq!(f.metadata("i32").and_then(MetaValue::as_u64), None);
        assert_eq!(f.metadata("f32"), Some(&MetaValue::F32(1.5)));
        assert_eq!(f.metadata("bool"), Some(&MetaValue::Bool(true)));
        assert_eq!(f.metadata("string").and_then(MetaValue::as_str), Some("héllo"));
        assert_eq!(f.metadata("u64").and_then(MetaValue::as_u64), Some(u64::MAX));
        assert_eq!(f.metadata("i64").and_then(MetaValue::as_i64), Some(i64::MIN));
        assert_eq!(f.metadata("f64"), Some(&MetaValue::F64(-0.25)));
        let nested = MetaValue::Array(vec![
            MetaValue::Array(vec![MetaValue::U16(1), MetaValue::U16(2)]),
            MetaValue::Array(vec![]),
        ]);
        assert_eq!(f.metadata("nested"), Some(&nested));
        assert_eq!(
            f.metadata("strings")
                .and_then(MetaValue::as_array)
                .map(<[_]>::len),
            Some(2)
        );
        assert_eq!(f.metadata("empty"), Some(&MetaValue::Array(vec![])));
        assert!(f.metadata("missing").is_none());
        let (t, b) = f.tensor("norm").unwrap();
        assert_eq!(
            dequantize(t.ggml_type, b, t.elements).unwrap(),
            vec![1.0, -2.0, 0.5, 3.25]
        );
        let (t, b) = f.tensor("emb").unwrap();
        assert_eq!(t.dims, vec![32, 2]);
        let v = dequantize(t.ggml_type, b, t.elements).unwrap();
        assert_eq!(v[0], -8.0);
        assert_eq!(v[63], 0.5 * 16.0);
    }
}

#[test]
fn every_truncation_of_a_synthetic_file_is_an_error() {
    let full = synthetic(None);
    for cut in 0..full.len() {
        assert!(
            GgufFile::parse(full[..cut].to_vec()).is_err(),
            "cut at {cut} parsed"
        );
    }
}

/// Offset of the first metadata value's bytes etc. are found by writing headers by hand.
fn header(tensors: u64, kvs: u64) -> W {
    let mut w = W(Vec::new());
    w.0.extend(b"GGUF");
    w.u32(3);
    w.u64(tensors);
    w.u64(kvs);
    w
}

#[test]
fn malformed_headers_are_clear_errors() {
    let e = |b: Vec<u8>| GgufFile::parse(b).unwrap_err();
    assert!(matches!(e(b"GGML\x03\0\0\0".to_vec()), GgufError::BadMagic(_)));
    let mut w = header(0, 0);
    w.0[4] = 1;
    assert!(matches!(e(w.0), GgufError::UnsupportedVersion(1)));
    // Huge counts: refused before any allocation.
    assert!(matches!(e(header(u64::MAX, 0).0), GgufError::Truncated { .. }));
    assert!(matches!(e(header(0, u64::MAX).0), GgufError::Truncated { .. }));
    let mut w = header(0, 1);
    w.str("k");
    w.u32(9);
    w.u32(8);
    w.u64(u64::MAX / 2);
    assert!(matches!(e(w.0), GgufError::Truncated { .. }));
    let mut w = header(0, 1);
    w.u64(u64::MAX); // key length
    assert!(matches!(e(w.0), GgufError::Truncated { .. }));
    let mut w = header(0, 1);
    w.str("k");
    w.u32(13);
    assert!(matches!(e(w.0), GgufError::UnknownValueType(13)));
    let mut w = header(0, 1);
    w.str("k");
    w.u32(8);
    w.u64(2);
    w.0.extend([0xff, 0xfe]);
    assert!(matches!(e(w.0), GgufError::BadUtf8(_)));
    // Arrays nested too deep.
    let mut w = header(0, 1);
    w.str("k");
    w.u32(9);
    for _ in 0..20 {
        w.u32(9);
        w.u64(1);
    }
    assert!(matches!(e(w.0), GgufError::NestingTooDeep));
    let mut w = header(0, 2);
    for _ in 0..2 {
        w.str("k");
        w.u32(0);
        w.0.push(0);
    }
    assert!(matches!(e(w.0), GgufError::DuplicateKey(_)));
    let mut w = header(0, 1);
    w.str("general.alignment");
    w.u32(4);
    w.u32(24);
    assert!(matches!(e(w.0), GgufError::BadAlignment(24)));
    // Tensor infos: bad dims, unknown type, bad shape, misaligned, out of bounds, overlapping.
    let tensor = |n_dims: u32, dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut w = header(1, 0);
        w.str("t");
        w.u32(n_dims);
        for &d in dims {
            w.u64(d);
        }
        w.u32(ty);
        w.u64(offset);
        while !w.0.len().is_multiple_of(32) {
            w.0.push(0);
        }
        w.0.extend(vec![0u8; data]);
        GgufFile::parse(w.0)
    };
    assert!(tensor(1, &[4], 0, 0, 16).is_ok());
    assert!(matches!(tensor(0, &[], 0, 0, 16), Err(GgufError::BadDims { .. })));
    assert!(matches!(
        tensor(5, &[1; 5], 0, 0, 16),
        Err(GgufError::BadDims { .. })
    ));
    assert!(matches!(
        tensor(1, &[4], 4, 0, 16),
        Err(GgufError::UnknownTensorType { ty: 4, .. })
    ));
    assert!(matches!(
        tensor(1, &[33], 8, 0, 100),
        Err(GgufError::BadShape { .. })
    ));
    assert!(matches!(
        tensor(2, &[u64::MAX, 4], 0, 0, 16),
        Err(GgufError::BadShape { .. })
    ));
    assert!(matches!(
        tensor(1, &[4], 0, 16, 64),
        Err(GgufError::Misaligned { .. })
    ));
    assert!(matches!(
        tensor(1, &[5], 0, 0, 16),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    assert!(matches!(
        tensor(1, &[4], 0, u64::MAX - 31, 16),
        Err(GgufError::TensorOutOfBounds { .. })
    ));
    let mut w = header(2, 0);
    for name in ["a", "b"] {
        w.str(name);
        w.u32(1);
        w.u64(16);
        w.u32(0);
        w.u64(32);
    }
    while !w.0.len().is_multiple_of(32) {
        w.0.push(0);
    }
    w.0.extend([0u8; 128]);
    assert!(matches!(GgufFile::parse(w.0), Err(GgufError::Overlap(..))));
}

#[test]
fn dequantize_rejects_wrong_sizes_and_types() {
    assert!(dequantize(GgmlType::Q8_0, &[0; 34], 32).is_ok());
    assert!(dequantize(GgmlType::Q8_0, &[0; 34], 64).is_err());
    assert!(dequantize(GgmlType::Q4_1, &[0; 20], 31).is_err());
    assert!(dequantize(GgmlType::Q4K, &[0; 144], 256).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary corruption of a valid file never panics: it parses (and every tensor slice is in bounds) or errs.
    #[test]
    fn corrupted_files_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                                   cut in any::<prop::sample::Index>()) {
        let mut b = synthetic(Some(16));
        for (i, v) in edits {
            let at = i.index(b.len());
            b[at] = v;
        }
        let cut = cut.index(b.len() + 1);
        b.truncate(cut);
        if let Ok(f) = GgufFile::parse(b) {
            for t in f.tensors() {
                let (_, bytes) = f.tensor(&t.name).unwrap();
                prop_assert_eq!(bytes.len() as u64, t.size);
            }
        }
    }

    /// Random bytes after a valid magic and version are errors or valid files, never panics.
    #[test]
    fn random_headers_never_panic(tail in prop::collection::vec(any::<u8>(), 0..256), version in 2u32..4) {
        let mut b = b"GGUF".to_vec();
        b.extend(version.to_le_bytes());
        b.extend(tail);
        let _ = GgufFile::parse(b);
    }
}
