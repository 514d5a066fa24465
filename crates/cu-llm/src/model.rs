//! The integer forward pass of a Llama-architecture model (SmolLM2-135M), one token at a time with a
//! KV cache. Every operation is fixed-point integer arithmetic, specified in `docs/llm.md`; the logits
//! are i32 in Q16 ([`LOGIT_Q`]) and the next token is their [`argmax`] (lowest index on ties).
//!
//! Number formats (Qn = scaled by 2^n): residual stream Q14 ([`RESID_Q`]), RMSNorm outputs Q20
//! ([`NORM_Q`]), every other activation (q, k, v, attention output, FFN gate/up/product, logits) Q16
//! ([`ACT_Q`]); weight scales, norm weights Q24 ([`W_Q`]); RoPE cos/sin Q30; softmax weights Q24.

use crate::fixed::{self, Exp, FixedError, Trig, rshift_round, rshift_round_i128, sat_i32};
use crate::gguf::{GgmlType, GgufFile, MetaValue};
use crate::quant::{BLOCK, QMatrix, QuantError, QuantVec, W_Q};

/// Fraction bits of the residual stream.
pub const RESID_Q: u32 = 14;
/// Fraction bits of RMSNorm outputs.
pub const NORM_Q: u32 = 20;
/// Fraction bits of the other activations, the KV cache and the logits.
pub const ACT_Q: u32 = 16;
/// Fraction bits of the logits.
pub const LOGIT_Q: u32 = ACT_Q;
/// |q|, |k| after RoPE are clamped below this (2048.0 in Q16), which bounds each score's i64 sum.
pub const QK_CLAMP: i32 = 1 << 27;
/// Positions of V summed in i64 before the partial sum is carried into i128 (bounds the i64 sum).
const V_CHUNK: usize = 128;
/// The largest head dimension supported.
pub const MAX_HEAD_DIM: usize = 256;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A metadata key the model needs is absent or has the wrong type.
    #[error("GGUF metadata {0:?} missing or not of the expected type")]
    Metadata(String),
    /// The architecture is not one this forward pass implements.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The hyperparameters are inconsistent.
    #[error("inconsistent model hyperparameters: {0}")]
    Hyperparameters(String),
    /// A tensor is absent.
    #[error("tensor {0:?} missing")]
    MissingTensor(String),
    /// A tensor's shape does not match the hyperparameters.
    #[error("tensor {name:?} has shape {found:?}, {expected:?} expected")]
    TensorShape {
        /// The tensor.
        name: String,
        /// Its dims in the file.
        found: Vec<u64>,
        /// The dims the metadata implies.
        expected: Vec<u64>,
    },
    /// A tensor's type is not supported where it is used.
    #[error("tensor {name:?} has type {ty:?}, which is not supported here")]
    TensorType {
        /// The tensor.
        name: String,
        /// Its type.
        ty: GgmlType,
    },
    /// A quantised weight could not be converted.
    #[error("tensor {name:?}: {source}")]
    Weights {
        /// The tensor.
        name: String,
        /// The reason.
        source: QuantError,
    },
    /// A floating-point value in the file could not be converted to fixed point.
    #[error("{what}: {source}")]
    Value {
        /// The tensor or metadata key.
        what: String,
        /// The reason.
        source: FixedError,
    },
    /// The requested context is zero or longer than the model's.
    #[error("context of {requested} tokens requested; the model supports 1 to {max}")]
    BadContext {
        /// The requested length.
        requested: usize,
        /// The model's context length.
        max: usize,
    },
    /// The cache is full: the sequence would exceed the configured context.
    #[error("context full: {0} tokens is the configured maximum")]
    ContextFull(usize),
    /// A token id is not in the vocabulary.
    #[error("token id {token} out of range (vocabulary of {vocab})")]
    TokenOutOfRange {
        /// The token.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A matrix-vector product's operands do not match (an internal inconsistency).
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// A worker thread of a parallel matrix-vector product panicked (a bug).
    #[error("a matrix-vector worker thread failed")]
    Worker,
    /// A batch of no tokens.
    #[error("a batch of no tokens")]
    EmptyBatch,
    /// A caller's KV slab has the wrong length for its capacity.
    #[error("KV slab of {found} values, {expected} needed")]
    SlabLength {
        /// Its length.
        found: usize,
        /// `Model::kv_slab_len(capacity)`.
        expected: usize,
    },
    /// The logits buffer has the wrong length.
    #[error("logits buffer of {found} values, {expected} needed")]
    LogitsLength {
        /// Its length.
        found: usize,
        /// The vocabulary size.
        expected: usize,
    },
}

/// The model's hyperparameters, read from the GGUF metadata and checked against the tensors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention: query head `h` reads KV head `h / (n_head / n_head_kv)`).
    pub n_head_kv: usize,
    /// Dimension of one head (`n_embd / n_head`, which the RoPE dimension must equal).
    pub head_dim: usize,
    /// Hidden width of the feed-forward network.
    pub n_ff: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// The model's trained context length.
    pub context_length: usize,
    /// IEEE bits of the RoPE base (`llama.rope.freq_base`).
    pub rope_base_bits: u32,
    /// IEEE bits of the RMSNorm epsilon.
    pub rms_eps_bits: u32,
}

impl ModelConfig {
    /// Multiply-accumulates of one forward step at position `pos` (0-based), from the shape alone: the
    /// weight products of every layer (`q`, `k`, `v`, `o`, gate, up, down), the output head, and the
    /// attention over `pos + 1` cached positions (scores and weighted values). Saturates.
    pub fn step_macs(&self, pos: usize) -> u64 {
        let (e, kvd, ff) = (
            self.n_embd as u64,
            (self.n_head_kv * self.head_dim) as u64,
            self.n_ff as u64,
        );
        let per_layer = (2 * e * e + 2 * e * kvd + 3 * e * ff)
            .saturating_add((self.n_head * self.head_dim) as u64 * 2 * (pos as u64 + 1));
        per_layer
            .saturating_mul(self.n_layer as u64)
            .saturating_add(self.n_vocab as u64 * e)
    }

    /// Bytes of one position of the KV cache (keys and values of every layer, `i32`).
    pub fn kv_bytes_per_position(&self) -> usize {
        self.n_layer * 2 * self.n_head_kv * self.head_dim * 4
    }
}

struct Layer {
    attn_norm: Vec<i32>,
    wq: QMatrix,
    wk: QMatrix,
    wv: QMatrix,
    wo: QMatrix,
    ffn_norm: Vec<i32>,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
}

/// A loaded model: weights converted to integers, plus the fixed tables of the forward pass.
pub struct Model {
    cfg: ModelConfig,
    embd: QMatrix,
    /// The output head: `output.weight` or, when absent (tied), `token_embd.weight`.
    output: Option<QMatrix>,
    out_norm: Vec<i32>,
    layers: Vec<Layer>,
    /// RoPE inverse frequencies in Q62.
    inv_freq: Vec<i128>,
    /// RMSNorm epsilon in Q60.
    eps_q60: u128,
    /// `log2(head_dim) / 2`: the score scale `1/sqrt(head_dim)` is this right shift.
    score_shift: u32,
    trig: Trig,
    exp: Exp,
    /// Threads of the matrix-vector products.
    threads: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn meta_u64(f: &GgufFile, key: &str) -> Result<u64, ModelError> {
    f.metadata(key)
        .and_then(MetaValue::as_u64)
        .ok_or_else(|| ModelError::Metadata(key.to_owned()))
}

fn meta_usize(f: &GgufFile, key: &str) -> Result<usize, ModelError> {
    let v = meta_u64(f, key)?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0 && v <= 1 << 24)
        .ok_or_else(|| ModelError::Hyperparameters(format!("{key} = {v}")))
}

fn meta_f32_bits(f: &GgufFile, key: &str) -> Result<u32, ModelError> {
    f.metadata(key)
        .and_then(MetaValue::as_f32_bits)
        .ok_or_else(|| ModelError::Metadata(key.to_owned()))
}

fn tensor<'a>(
    f: &'a GgufFile,
    name: &str,
    dims: &[usize],
) -> Result<(&'a crate::gguf::TensorInfo, &'a [u8]), ModelError> {
    let (info, bytes) = f
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor(name.to_owned()))?;
    let expected: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
    if info.dims != expected {
        return Err(ModelError::TensorShape {
            name: name.to_owned(),
            found: info.dims.clone(),
            expected,
        });
    }
    Ok((info, bytes))
}

/// A weight matrix of `rows` outputs by `cols` inputs (GGUF dims `[cols, rows]`).
fn matrix(f: &GgufFile, name: &str, rows: usize, cols: usize) -> Result<QMatrix, ModelError> {
    let (info, bytes) = tensor(f, name, &[cols, rows])?;
    QMatrix::from_ggml(info.ggml_type, rows, cols, bytes).map_err(|source| match source {
        QuantError::UnsupportedType(ty) => ModelError::TensorType {
            name: name.to_owned(),
            ty,
        },
        source => ModelError::Weights {
            name: name.to_owned(),
            source,
        },
    })
}

/// An F32 vector of `n` values in Q24 (rounded half away from zero; |v| < 128).
fn norm_weight(f: &GgufFile, name: &str, n: usize) -> Result<Vec<i32>, ModelError> {
    let (info, bytes) = tensor(f, name, &[n])?;
    if info.ggml_type != GgmlType::F32 {
        return Err(ModelError::TensorType {
            name: name.to_owned(),
            ty: info.ggml_type,
        });
    }
    bytes
        .chunks_exact(4)
        .map(|c| {
            let bits = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            fixed::f32_to_fixed_i32(bits, W_Q).map_err(|source| ModelError::Value {
                what: name.to_owned(),
                source,
            })
        })
        .collect()
}

impl Model {
    /// Loads a Llama-architecture model from a GGUF file, checking every tensor's shape and type against
    /// the metadata. Matrices may be Q4_1 or Q8_0; norm weights must be F32.
    pub fn from_gguf(f: &GgufFile) -> Result<Model, ModelError> {
        let arch = f
            .metadata("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| ModelError::Metadata("general.architecture".into()))?;
        if arch != "llama" {
            return Err(ModelError::Unsupported(format!(
                "architecture {arch:?} (only \"llama\")"
            )));
        }
        let n_layer = meta_usize(f, "llama.block_count")?;
        let n_embd = meta_usize(f, "llama.embedding_length")?;
        let n_head = meta_usize(f, "llama.attention.head_count")?;
        let n_head_kv = meta_usize(f, "llama.attention.head_count_kv")?;
        let n_ff = meta_usize(f, "llama.feed_forward_length")?;
        let context_length = meta_usize(f, "llama.context_length")?;
        let rope_base_bits = meta_f32_bits(f, "llama.rope.freq_base")?;
        let rms_eps_bits = meta_f32_bits(f, "llama.attention.layer_norm_rms_epsilon")?;
        let bad = |s: String| Err(ModelError::Hyperparameters(s));
        if !n_embd.is_multiple_of(n_head) || !n_head.is_multiple_of(n_head_kv) {
            return bad(format!("{n_embd} wide, {n_head} heads, {n_head_kv} KV heads"));
        }
        let head_dim = n_embd / n_head;
        let rope_dim = match f.metadata("llama.rope.dimension_count") {
            None => head_dim,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| ModelError::Metadata("llama.rope.dimension_count".into()))?
                as usize,
        };
        if rope_dim != head_dim {
            return Err(ModelError::Unsupported(format!(
                "RoPE on {rope_dim} of {head_dim} head dimensions"
            )));
        }
        let score_shift = head_dim.trailing_zeros() / 2;
        if !head_dim.is_power_of_two() || head_dim.trailing_zeros() % 2 != 0 {
            return Err(ModelError::Unsupported(format!(
                "head dimension {head_dim} (a power of 4 is needed)"
            )));
        }
        if head_dim > MAX_HEAD_DIM {
            return Err(ModelError::Unsupported(format!(
                "head dimension {head_dim} (at most {MAX_HEAD_DIM})"
            )));
        }
        if !n_embd.is_multiple_of(BLOCK) || !n_ff.is_multiple_of(BLOCK) || head_dim < 2 {
            return bad(format!("widths {n_embd} and {n_ff} must be multiples of {BLOCK}"));
        }
        if let Some(v) = f.metadata("llama.rope.scaling.type").and_then(MetaValue::as_str)
            && v != "none"
        {
            return Err(ModelError::Unsupported(format!("RoPE scaling {v:?}")));
        }
        let (emb_info, _) = f
            .tensor("token_embd.weight")
            .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?;
        let n_vocab = emb_info.dims.get(1).copied().unwrap_or(0) as usize;
        if let Some(v) = f.metadata("llama.vocab_size") {
            let v = v
                .as_u64()
                .ok_or_else(|| ModelError::Metadata("llama.vocab_size".into()))?;
            if v != n_vocab as u64 {
                return bad(format!("llama.vocab_size {v} but token_embd has {n_vocab} rows"));
            }
        }
        if n_vocab == 0 || n_vocab > u32::MAX as usize {
            return bad(format!("vocabulary of {n_vocab}"));
        }
        let embd = matrix(f, "token_embd.weight", n_vocab, n_embd)?;
        let output = match f.tensor("output.weight") {
            Some(_) => Some(matrix(f, "output.weight", n_vocab, n_embd)?),
            None => None,
        };
        let out_norm = norm_weight(f, "output_norm.weight", n_embd)?;
        let kv = n_head_kv * head_dim;
        let mut layers = Vec::new(); // not with_capacity: n_layer comes from the file
        for i in 0..n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: norm_weight(f, &n("attn_norm"), n_embd)?,
                wq: matrix(f, &n("attn_q"), n_embd, n_embd)?,
                wk: matrix(f, &n("attn_k"), kv, n_embd)?,
                wv: matrix(f, &n("attn_v"), kv, n_embd)?,
                wo: matrix(f, &n("attn_output"), n_embd, n_embd)?,
                ffn_norm: norm_weight(f, &n("ffn_norm"), n_embd)?,
                gate: matrix(f, &n("ffn_gate"), n_ff, n_embd)?,
                up: matrix(f, &n("ffn_up"), n_ff, n_embd)?,
                down: matrix(f, &n("ffn_down"), n_embd, n_ff)?,
            });
        }
        let inv_freq = fixed::rope_inv_freq_q62(rope_base_bits, head_dim)
            .ok_or_else(|| ModelError::Hyperparameters("RoPE base must be finite and > 1".into()))?;
        let eps = fixed::f32_to_fixed(rms_eps_bits, 60).map_err(|source| ModelError::Value {
            what: "layer_norm_rms_epsilon".into(),
            source,
        })?;
        if eps < 0 {
            return bad("negative RMSNorm epsilon".into());
        }
        let cfg = ModelConfig {
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            context_length,
            rope_base_bits,
            rms_eps_bits,
        };
        Ok(Model {
            cfg,
            embd,
            output,
            out_norm,
            layers,
            inv_freq,
            eps_q60: eps as u128,
            score_shift,
            trig: Trig::new(),
            exp: Exp::new(),
            threads: 1,
        })
    }

    /// Uses `n` threads (at least 1) for the matrix-vector products: the rows of each product are split
    /// between them. Results are identical for every `n` (each row is computed by the same code).
    pub fn set_threads(&mut self, n: usize) {
        self.threads = n.clamp(1, 64);
    }

    /// The number of threads of the matrix-vector products.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Bytes the converted weights hold in memory (what a host counts against its memory budget).
    pub fn resident_bytes(&self) -> usize {
        let norms = 4
            * (self.out_norm.len()
                + self
                    .layers
                    .iter()
                    .map(|l| l.attn_norm.len() + l.ffn_norm.len())
                    .sum::<usize>());
        let matrices: usize = self
            .layers
            .iter()
            .flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(&self.embd))
            .chain(self.output.as_ref())
            .map(QMatrix::resident_bytes)
            .sum();
        norms + matrices
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// An empty KV cache for sequences of up to `max_context` tokens (1 to the model's context length).
    /// Its memory grows with the sequence: `2 · n_layer · n_head_kv · head_dim · 4` bytes per token.
    pub fn new_cache(&self, max_context: usize) -> Result<KvCache, ModelError> {
        if max_context == 0 || max_context > self.cfg.context_length {
            return Err(ModelError::BadContext {
                requested: max_context,
                max: self.cfg.context_length,
            });
        }
        let c = &self.cfg;
        Ok(KvCache {
            max_context,
            len: 0,
            k: vec![Vec::new(); c.n_layer],
            v: vec![Vec::new(); c.n_layer],
            s: self.new_scratch(),
        })
    }

    /// Runs one token at the cache's next position, appends its keys and values to the cache and writes
    /// the next-token logits (Q16, `n_vocab` values) into `logits`.
    pub fn forward(&self, cache: &mut KvCache, token: u32, logits: &mut [i32]) -> Result<(), ModelError> {
        if cache.len >= cache.max_context {
            return Err(ModelError::ContextFull(cache.max_context));
        }
        let pos = cache.len;
        let KvCache { k, v, s, len, .. } = cache;
        let mut kv = VecKv { k, v };
        self.pass_checked(&mut kv, pos, s, std::slice::from_ref(&token), logits)?;
        *len += 1;
        Ok(())
    }

    /// `i32` values of a [`KvSlab`] for `capacity` positions: `n_layer · 2 · capacity · n_head_kv ·
    /// head_dim` (the layout is `[layer][k, v][position][n_head_kv · head_dim]`).
    pub fn kv_slab_len(&self, capacity: usize) -> Option<usize> {
        let c = &self.cfg;
        c.n_layer
            .checked_mul(2)?
            .checked_mul(capacity)?
            .checked_mul(c.n_head_kv * c.head_dim)
    }

    /// Runs `token` at position `pos` over a cache kept by the caller in `slab` (for example in an AO
    /// process's own memory, so that checkpoints carry it): positions `0..pos` must hold what earlier
    /// calls wrote; this call writes position `pos` and the next-token logits. `slab` holds
    /// [`Model::kv_slab_len`]`(capacity)` values; `pos < capacity ≤ context_length`. The results are
    /// the same bits as [`Model::forward`] on a [`KvCache`] that ran the same tokens.
    pub fn forward_slab(
        &self,
        slab: &mut [i32],
        capacity: usize,
        pos: usize,
        scratch: &mut Scratch,
        token: u32,
        logits: &mut [i32],
    ) -> Result<(), ModelError> {
        let mut kv = self.slab_kv(slab, capacity, pos, 1)?;
        self.pass_checked(&mut kv, pos, scratch, std::slice::from_ref(&token), logits)
    }

    /// [`Model::forward`] of several tokens in one pass (a prompt): runs `tokens` at the cache's next
    /// positions and writes the logits after the last one. The cache and the logits are the same bits as
    /// `tokens.len()` calls of `forward`; each weight is read once per group of tokens
    /// ([`QMatrix::matmat`]) and the output head runs for the last token only.
    pub fn forward_batch(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        logits: &mut [i32],
    ) -> Result<(), ModelError> {
        if cache.len + tokens.len() > cache.max_context {
            return Err(ModelError::ContextFull(cache.max_context));
        }
        let pos = cache.len;
        let KvCache { k, v, s, len, .. } = cache;
        let mut kv = VecKv { k, v };
        self.pass_checked(&mut kv, pos, s, tokens, logits)?;
        *len += tokens.len();
        Ok(())
    }

    /// [`Model::forward_slab`] of several tokens at positions `pos .. pos + tokens.len()` (all below
    /// `capacity`), the logits after the last: the same bits as one `forward_slab` per token.
    pub fn forward_slab_batch(
        &self,
        slab: &mut [i32],
        capacity: usize,
        pos: usize,
        scratch: &mut Scratch,
        tokens: &[u32],
        logits: &mut [i32],
    ) -> Result<(), ModelError> {
        let mut kv = self.slab_kv(slab, capacity, pos, tokens.len().max(1))?;
        self.pass_checked(&mut kv, pos, scratch, tokens, logits)
    }

    /// The token and logits checks (for every token: nothing is written when one fails), then the forward
    /// pass (AVX2-compiled where the CPU has it).
    fn pass_checked(
        &self,
        kv: &mut dyn Kv,
        pos: usize,
        s: &mut Scratch,
        tokens: &[u32],
        logits: &mut [i32],
    ) -> Result<(), ModelError> {
        let c = &self.cfg;
        if tokens.is_empty() {
            return Err(ModelError::EmptyBatch);
        }
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= c.n_vocab) {
            return Err(ModelError::TokenOutOfRange {
                token,
                vocab: c.n_vocab,
            });
        }
        if logits.len() != c.n_vocab {
            return Err(ModelError::LogitsLength {
                found: logits.len(),
                expected: c.n_vocab,
            });
        }
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present. The same integer code, compiled with AVX2 enabled so that its
            // loops vectorise wider; integer results do not depend on the instructions chosen.
            return unsafe { self.pass_avx2(kv, pos, s, tokens, logits) };
        }
        self.pass_unchecked(kv, pos, s, tokens, logits)
    }

    /// # Safety
    /// The CPU must support AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn pass_avx2(
        &self,
        kv: &mut dyn Kv,
        pos: usize,
        s: &mut Scratch,
        tokens: &[u32],
        logits: &mut [i32],
    ) -> Result<(), ModelError> {
        self.pass_unchecked(kv, pos, s, tokens, logits)
    }

    /// The forward pass of `tokens` at positions `pos ..`: token by token where it is per token (norms,
    /// RoPE, attention, SwiGLU, residuals), for all tokens at once in the matrix products
    /// ([`products`]); the output head for the last token only.
    #[inline(always)]
    fn pass_unchecked(
        &self,
        kv: &mut dyn Kv,
        pos: usize,
        s: &mut Scratch,
        tokens: &[u32],
        logits: &mut [i32],
    ) -> Result<(), ModelError> {
        let c = &self.cfg;
        let n = tokens.len();
        let (e, kvd, ff, half) = (c.n_embd, c.n_head_kv * c.head_dim, c.n_ff, c.head_dim / 2);
        // Every buffer is written before it is read; only the sizes follow the token count.
        for (b, len) in [
            (&mut s.x, e),
            (&mut s.q, e),
            (&mut s.k, kvd),
            (&mut s.v, kvd),
            (&mut s.att, e),
            (&mut s.o, e),
            (&mut s.gate, ff),
            (&mut s.up, ff),
        ] {
            b.resize(n * len, 0);
        }
        s.qvs.resize_with(n, QuantVec::default);
        s.rope.resize(n * half, (0, 0));
        for (t, &tok) in tokens.iter().enumerate() {
            self.embd.row_fixed(tok as usize, RESID_Q, &mut s.x[t * e..][..e]);
            for (f, cs) in self.inv_freq.iter().zip(&mut s.rope[t * half..][..half]) {
                *cs = self.trig.cos_sin_q30((pos + t) as i128 * f);
            }
        }
        let shift = W_Q + NORM_Q - ACT_Q;
        let threads = self.threads;
        for (li, l) in self.layers.iter().enumerate() {
            // Attention.
            for (xt, qv) in s.x.chunks_exact(e).zip(s.qvs.iter_mut()) {
                self.rms_norm(xt, &l.attn_norm, &mut s.h);
                qv.quantize(&s.h);
            }
            products(
                threads,
                &s.qvs,
                &mut [
                    (&l.wq, shift, &mut s.q),
                    (&l.wk, shift, &mut s.k),
                    (&l.wv, shift, &mut s.v),
                ],
            )?;
            for (t, cs) in s.rope.chunks_exact(half).enumerate() {
                rope(&mut s.q[t * e..][..e], cs);
                rope(&mut s.k[t * kvd..][..kvd], cs);
            }
            for t in 0..n - 1 {
                kv.append(li, pos + t, &s.k[t * kvd..][..kvd], &s.v[t * kvd..][..kvd]);
            }
            let last = n - 1;
            let (kc, vc) = kv.append(
                li,
                pos + last,
                &s.k[last * kvd..][..kvd],
                &s.v[last * kvd..][..kvd],
            );
            for (t, (qt, out)) in s.q.chunks_exact(e).zip(s.att.chunks_exact_mut(e)).enumerate() {
                self.attend(qt, kc, vc, pos + t + 1, &mut s.attn, out);
            }
            for (at, qv) in s.att.chunks_exact(e).zip(s.qvs.iter_mut()) {
                qv.quantize(at);
            }
            products(threads, &s.qvs, &mut [(&l.wo, W_Q + ACT_Q - RESID_Q, &mut s.o)])?;
            for (x, &o) in s.x.iter_mut().zip(&s.o) {
                *x = x.saturating_add(o);
            }
            // Feed-forward (SwiGLU).
            for (xt, qv) in s.x.chunks_exact(e).zip(s.qvs.iter_mut()) {
                self.rms_norm(xt, &l.ffn_norm, &mut s.h);
                qv.quantize(&s.h);
            }
            products(
                threads,
                &s.qvs,
                &mut [(&l.gate, shift, &mut s.gate), (&l.up, shift, &mut s.up)],
            )?;
            for (g, &u) in s.gate.iter_mut().zip(&s.up) {
                let silu = self.exp.silu_q16(*g);
                *g = sat_i32(rshift_round(i64::from(silu) * i64::from(u), ACT_Q));
            }
            for (gt, qv) in s.gate.chunks_exact(ff).zip(s.qvs.iter_mut()) {
                qv.quantize(gt);
            }
            products(threads, &s.qvs, &mut [(&l.down, W_Q + ACT_Q - RESID_Q, &mut s.o)])?;
            for (x, &o) in s.x.iter_mut().zip(&s.o) {
                *x = x.saturating_add(o);
            }
        }
        self.rms_norm(&s.x[(n - 1) * e..], &self.out_norm, &mut s.h);
        let qv = &mut s.qvs[0];
        qv.quantize(&s.h);
        let head = self.output.as_ref().unwrap_or(&self.embd);
        par_matvec(threads, qv, &mut [(head, W_Q + NORM_Q - LOGIT_Q, logits)])?;
        Ok(())
    }

    /// The checks of a slab for `n` positions from `pos` (capacity within the model's context, room for
    /// them, the slab's length), then the slab as the forward pass's KV store.
    fn slab_kv<'a>(
        &self,
        slab: &'a mut [i32],
        capacity: usize,
        pos: usize,
        n: usize,
    ) -> Result<SlabKv<'a>, ModelError> {
        if capacity == 0 || capacity > self.cfg.context_length {
            return Err(ModelError::BadContext {
                requested: capacity,
                max: self.cfg.context_length,
            });
        }
        if pos + n > capacity {
            return Err(ModelError::ContextFull(capacity));
        }
        let expected = self.kv_slab_len(capacity).unwrap_or(usize::MAX);
        if slab.len() != expected {
            return Err(ModelError::SlabLength {
                found: slab.len(),
                expected,
            });
        }
        Ok(SlabKv {
            data: slab,
            capacity,
            row: self.cfg.n_head_kv * self.cfg.head_dim,
        })
    }

    /// Greedy decoding: runs `prompt` (one batch), then chooses the lowest id of the largest logit up to
    /// `max_new` times, stopping before `stop` (the end-of-turn token). Needs `prompt.len() + max_new`
    /// positions of context.
    pub fn generate_greedy(&self, prompt: &[u32], max_new: usize, stop: u32) -> Result<Vec<u32>, ModelError> {
        let mut cache = self.new_cache(prompt.len() + max_new)?;
        let mut logits = vec![0; self.cfg.n_vocab];
        self.forward_batch(&mut cache, prompt, &mut logits)?;
        let mut out = Vec::with_capacity(max_new);
        while out.len() < max_new {
            let next = argmax(&logits) as u32;
            if next == stop {
                break;
            }
            out.push(next);
            if out.len() < max_new {
                self.forward(&mut cache, next, &mut logits)?;
            }
        }
        Ok(out)
    }

    /// Scratch buffers for [`Model::forward_slab`] and [`Model::forward_slab_batch`] (any content: every call
    /// overwrites what it reads).
    pub fn new_scratch(&self) -> Scratch {
        let c = &self.cfg;
        Scratch {
            x: vec![0; c.n_embd],
            h: vec![0; c.n_embd],
            q: vec![0; c.n_embd],
            k: vec![0; c.n_head_kv * c.head_dim],
            v: vec![0; c.n_head_kv * c.head_dim],
            att: vec![0; c.n_embd],
            o: vec![0; c.n_embd],
            gate: vec![0; c.n_ff],
            up: vec![0; c.n_ff],
            qvs: vec![QuantVec::default()],
            attn: AttnBufs::default(),
            rope: vec![(0, 0); c.head_dim / 2],
        }
    }

    /// Causal attention of one position: the query heads `q` (`n_embd`, after RoPE) against the `t_len`
    /// cached rows of keys `kc` and values `vc`, into `out` (`n_embd`).
    #[inline(always)]
    fn attend(&self, q: &[i32], kc: &[i32], vc: &[i32], t_len: usize, buf: &mut AttnBufs, out: &mut [i32]) {
        let c = &self.cfg;
        let kvd = c.n_head_kv * c.head_dim;
        let group = c.n_head / c.n_head_kv;
        let hd = c.head_dim;
        // Per KV head, its `group` query heads together: each cached k and v row is read once.
        for g in 0..c.n_head_kv {
            let qs = &q[g * group * hd..][..group * hd];
            buf.scores.clear();
            buf.scores.resize(group * t_len, 0);
            for t in 0..t_len {
                let kt = &kc[t * kvd + g * hd..][..hd];
                for (hh, qh) in qs.chunks_exact(hd).enumerate() {
                    let dot: i64 = qh
                        .iter()
                        .zip(kt)
                        .map(|(&a, &b)| i64::from(a) * i64::from(b))
                        .sum();
                    buf.scores[hh * t_len + t] = rshift_round(dot, ACT_Q + self.score_shift);
                }
            }
            buf.weights.clear();
            buf.weights.resize(group * t_len, 0);
            buf.totals.clear();
            for (sc, ws) in buf
                .scores
                .chunks_exact(t_len)
                .zip(buf.weights.chunks_exact_mut(t_len))
            {
                let mx = sc.iter().copied().max().unwrap_or(0);
                let mut total = 0u64;
                for (w, &v) in ws.iter_mut().zip(sc) {
                    *w = rshift_round(i64::from(self.exp.exp_neg_q16(mx - v)), 30 - 24) as u32;
                    total += u64::from(*w);
                }
                buf.totals.push(total);
            }
            buf.acc.clear();
            buf.acc.resize(group * hd, 0);
            buf.wide.clear();
            buf.wide.resize(group * hd, 0);
            for start in (0..t_len).step_by(V_CHUNK) {
                for t in start..(start + V_CHUNK).min(t_len) {
                    let vt = &vc[t * kvd + g * hd..][..hd];
                    for (hh, acc) in buf.acc.chunks_exact_mut(hd).enumerate() {
                        let w = i64::from(buf.weights[hh * t_len + t]);
                        for (a, &v) in acc.iter_mut().zip(vt) {
                            *a += w * i64::from(v);
                        }
                    }
                }
                for (wd, a) in buf.wide.iter_mut().zip(buf.acc.iter_mut()) {
                    *wd += i128::from(*a);
                    *a = 0;
                }
            }
            let out = &mut out[g * group * hd..][..group * hd];
            for (hh, (o, num)) in out
                .chunks_exact_mut(hd)
                .zip(buf.wide.chunks_exact(hd))
                .enumerate()
            {
                let total = i128::from(buf.totals[hh]);
                for (o, &n) in o.iter_mut().zip(num) {
                    *o = sat_i32(div_round(n, total) as i64);
                }
            }
        }
    }

    /// RMSNorm: `x` in Q14, `w` in Q24, `y` in Q20.
    /// `ss = Σ x_j²` (u128), `V = floor(ss · 2^32 / n) + eps_q60` (Q60), `r = max(1, isqrt(V))` (Q30),
    /// `inv = (2^74 + r/2) / r` (1/rms in Q44), `z_j = rshift_round(x_j · inv, 32)` (Q26, i128),
    /// `y_j = sat_i32(rshift_round(z_j · w_j, 30))` (i128).
    #[inline(always)]
    fn rms_norm(&self, x: &[i32], w: &[i32], y: &mut [i32]) {
        let ss: u128 = x
            .iter()
            .map(|&v| u128::from(v.unsigned_abs()) * u128::from(v.unsigned_abs()))
            .sum();
        let v = (ss << 32) / x.len() as u128 + self.eps_q60;
        let r = fixed::isqrt_u128(v).max(1);
        let inv = ((1u128 << 74) + r / 2) / r;
        let inv = inv as i128;
        for ((o, &xv), &wv) in y.iter_mut().zip(x).zip(w) {
            let z = rshift_round_i128(i128::from(xv) * inv, 32);
            let yv = rshift_round_i128(z * i128::from(wv), 30);
            *o = yv.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32;
        }
    }
}

/// One matrix-vector product of a parallel region: matrix, output shift, output.
type Job<'a> = (&'a QMatrix, u32, &'a mut [i32]);
/// A run of a job's rows: matrix, output shift, first row, outputs.
type Run<'a> = (&'a QMatrix, u32, usize, &'a mut [i32]);

/// Runs `jobs` on the same input `x`, with the rows of every job split into `threads` runs (multiples of
/// 4 rows) computed on as many scoped threads (the caller's thread takes the first run of each).
fn par_matvec(threads: usize, x: &QuantVec, jobs: &mut [Job<'_>]) -> Result<(), ModelError> {
    let mut parts: Vec<Vec<Run<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    for (w, shift, y) in jobs.iter_mut() {
        if y.len() != w.rows() {
            w.matvec(x, *shift, y)?; // the size error
        }
        let per = y.len().div_ceil(threads).next_multiple_of(4).max(4);
        let mut first = 0;
        for (t, chunk) in y.chunks_mut(per).enumerate() {
            let n = chunk.len();
            parts[t].push((*w, *shift, first, chunk));
            first += n;
        }
    }
    let run = |part: Vec<Run<'_>>| -> Result<(), QuantError> {
        for (w, shift, first, y) in part {
            w.matvec_rows(x, shift, first, y)?;
        }
        Ok(())
    };
    let mut parts = parts.into_iter();
    let mine = parts.next().unwrap_or_default();
    if threads <= 1 {
        return Ok(run(mine)?);
    }
    std::thread::scope(|sc| {
        let handles: Vec<_> = parts
            .filter(|p| !p.is_empty())
            .map(|p| sc.spawn(move || run(p)))
            .collect();
        let mut result = run(mine).map_err(ModelError::from);
        for h in handles {
            let r = h
                .join()
                .map_err(|_| ModelError::Worker)
                .and_then(|r| r.map_err(ModelError::from));
            result = result.and(r);
        }
        result
    })
}

/// The matrix products of one step of the pass: for one token the rows of every job split over
/// `threads` ([`par_matvec`]), for several each job's [`QMatrix::matmat`] (outputs token-major). The same
/// bits either way: every output is the same row dot product.
fn products(threads: usize, xs: &[QuantVec], jobs: &mut [Job<'_>]) -> Result<(), ModelError> {
    if let [x] = xs {
        return par_matvec(threads, x, jobs);
    }
    for (w, shift, y) in jobs.iter_mut() {
        w.matmat(xs, *shift, y)?;
    }
    Ok(())
}

/// `floor(num / den + 1/2)` for `den > 0` (halves towards +∞).
fn div_round(num: i128, den: i128) -> i128 {
    (2 * num + den).div_euclid(2 * den)
}

/// Rotates adjacent pairs `(x[2i], x[2i+1])` of every head by `(cos, sin)` of pair `i` (Q30):
/// `x0' = rshift_round(x0·c − x1·s, 30)`, `x1' = rshift_round(x0·s + x1·c, 30)` (i64), then clamps to
/// `±(QK_CLAMP − 1)`.
#[inline(always)]
fn rope(x: &mut [i32], cs: &[(i32, i32)]) {
    let hd = cs.len() * 2;
    for head in x.chunks_exact_mut(hd) {
        for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(cs) {
            let (x0, x1) = (i64::from(pair[0]), i64::from(pair[1]));
            let (c, s) = (i64::from(c), i64::from(s));
            let lim = i64::from(QK_CLAMP - 1);
            pair[0] = rshift_round(x0 * c - x1 * s, 30).clamp(-lim, lim) as i32;
            pair[1] = rshift_round(x0 * s + x1 * c, 30).clamp(-lim, lim) as i32;
        }
    }
}

/// The lowest index of the largest logit (0 for an empty slice).
pub fn argmax(logits: &[i32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// The forward pass's working buffers ([`Model::new_scratch`], sized for one token and grown for a batch);
/// they carry nothing between calls.
pub struct Scratch {
    x: Vec<i32>,
    h: Vec<i32>,
    q: Vec<i32>,
    k: Vec<i32>,
    v: Vec<i32>,
    att: Vec<i32>,
    o: Vec<i32>,
    gate: Vec<i32>,
    up: Vec<i32>,
    /// One quantised vector per token.
    qvs: Vec<QuantVec>,
    attn: AttnBufs,
    /// `(cos, sin)` of every RoPE pair, per token.
    rope: Vec<(i32, i32)>,
}

/// Attention's working buffers (resized per call).
#[derive(Default)]
struct AttnBufs {
    scores: Vec<i64>,
    weights: Vec<u32>,
    totals: Vec<u64>,
    acc: Vec<i64>,
    wide: Vec<i128>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").finish_non_exhaustive()
    }
}

/// Where the forward pass keeps the keys and values of earlier positions.
trait Kv {
    /// Stores position `pos`'s keys and values of `layer`, then returns that layer's keys and values
    /// of positions `0..=pos` (rows of `n_head_kv · head_dim`).
    fn append(&mut self, layer: usize, pos: usize, k: &[i32], v: &[i32]) -> (&[i32], &[i32]);
}

/// [`KvCache`]'s growing vectors.
struct VecKv<'a> {
    k: &'a mut [Vec<i32>],
    v: &'a mut [Vec<i32>],
}

impl Kv for VecKv<'_> {
    fn append(&mut self, layer: usize, pos: usize, k: &[i32], v: &[i32]) -> (&[i32], &[i32]) {
        let (kc, vc) = (&mut self.k[layer], &mut self.v[layer]);
        kc.truncate(pos * k.len());
        vc.truncate(pos * v.len());
        kc.extend_from_slice(k);
        vc.extend_from_slice(v);
        (kc, vc)
    }
}

/// A caller's slab: `[layer][k, v][position][row]`, `capacity` positions.
struct SlabKv<'a> {
    data: &'a mut [i32],
    capacity: usize,
    row: usize,
}

impl Kv for SlabKv<'_> {
    fn append(&mut self, layer: usize, pos: usize, k: &[i32], v: &[i32]) -> (&[i32], &[i32]) {
        let plane = self.capacity * self.row;
        let (kp, rest) = self.data[layer * 2 * plane..].split_at_mut(plane);
        let vp = &mut rest[..plane];
        kp[pos * self.row..][..self.row].copy_from_slice(k);
        vp[pos * self.row..][..self.row].copy_from_slice(v);
        let used = (pos + 1) * self.row;
        (&kp[..used], &vp[..used])
    }
}

/// The keys and values of the tokens run so far (i32, Q16, after RoPE for the keys), plus the forward
/// pass's scratch buffers.
pub struct KvCache {
    max_context: usize,
    len: usize,
    k: Vec<Vec<i32>>,
    v: Vec<Vec<i32>>,
    s: Scratch,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("len", &self.len)
            .field("max_context", &self.max_context)
            .finish()
    }
}

impl KvCache {
    /// Tokens run so far (the position of the next one).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no token has been run yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The configured maximum sequence length.
    pub fn max_context(&self) -> usize {
        self.max_context
    }

    /// Forgets every token (keeps the memory).
    pub fn clear(&mut self) {
        self.len = 0;
        for v in self.k.iter_mut().chain(self.v.iter_mut()) {
            v.clear();
        }
    }
}
