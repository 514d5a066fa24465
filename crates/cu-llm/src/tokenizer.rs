//! The GGUF's tokenizer: byte-level BPE (`tokenizer.ggml.model = gpt2`) with the `smollm`
//! pre-tokeniser, special tokens, and the chat template.
//!
//! Encoding follows llama.cpp's `llama_tokenize(.., parse_special = true)` for such a file, step by step:
//!
//! 1. **Special tokens.** Every token whose type is control, user-defined or unknown
//!    (`tokenizer.ggml.token_type` 3, 4 or 2; here `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`, ...) is
//!    cut out of the text wherever it occurs, longest token text first, and becomes its own id.
//! 2. **Pre-tokenisation** of the text between them into words (the `smollm` rules, module `pretokenize`).
//! 3. **Byte-level BPE** on each word: its UTF-8 bytes, each written as the printable character GPT-2's
//!    `bytes_to_unicode` gives it, start as one symbol each; the adjacent pair whose merge
//!    (`tokenizer.ggml.merges`, `"left right"`) has the lowest rank is merged, the leftmost such pair on
//!    ties, until no pair has a merge. Each symbol is then a token of `tokenizer.ggml.tokens`.
//!
//!    A byte whose character is not in the vocabulary cannot be merged and has no token: as in
//!    llama.cpp, it is dropped from the output (llama.cpp then looks up each byte of the character's
//!    UTF-8 as a one-byte token, which for these characters finds none; this is done here too).
//!    SmolLM2 has no token for the control characters 0x04, 0x06, 0x13, 0x14, 0x16 and 0x1D, for the
//!    lead bytes 0xF1 and 0xF2 (of U+40000 to U+BFFFF, all unassigned) and for the bytes that never
//!    occur in UTF-8. Texts with those are the one case where `decode(encode(s)) != s`: the decoded
//!    bytes are the text's bytes less the dropped ones.
//!
//! The result is a pure function of the text and the file: no floating point, no hashing order, no
//! state. Encoding is linear in the text apart from a `log` factor for the merge queue of each word
//! (a 100 KB text takes milliseconds).
//!
//! Decoding maps each token back to its bytes ([`Tokenizer::token_to_bytes`]): a normal token's
//! characters through the inverse of `bytes_to_unicode`, any other token (control, user-defined) as its
//! text, so special tokens are written out (`skip_special_tokens = False` in Hugging Face's terms,
//! `special = true` in llama.cpp's). [`Tokenizer::decode`] checks that the bytes are UTF-8 and fails with
//! [`TokenizerError::InvalidUtf8`] otherwise (a sequence cut in the middle of a character, as a
//! stream of generated tokens can be); [`Tokenizer::decode_bytes`] returns the bytes unchecked.

mod chat;
mod pretokenize;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

pub use chat::{ChatMessage, ChatTemplate, SMOLLM2_CHATML};

use crate::gguf::{GgufFile, MetaValue};

/// Token type "normal" in `tokenizer.ggml.token_type` (llama.cpp's `LLAMA_TOKEN_TYPE_NORMAL`).
pub const TOKEN_TYPE_NORMAL: u32 = 1;
/// Token type "unknown".
pub const TOKEN_TYPE_UNKNOWN: u32 = 2;
/// Token type "control" (`<|im_start|>` and the other special tokens of SmolLM2).
pub const TOKEN_TYPE_CONTROL: u32 = 3;
/// Token type "user-defined".
pub const TOKEN_TYPE_USER_DEFINED: u32 = 4;
/// Token type "unused".
pub const TOKEN_TYPE_UNUSED: u32 = 5;
/// Token type "byte" (SentencePiece byte tokens; not used by byte-level BPE).
pub const TOKEN_TYPE_BYTE: u32 = 6;

/// Why a tokenizer could not be built, or ids could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key the tokenizer needs is absent.
    #[error("GGUF metadata key {0} is missing")]
    MissingKey(&'static str),
    /// A metadata value has the wrong type.
    #[error("GGUF metadata key {key} has the wrong type (expected {expected})")]
    WrongType {
        /// The key.
        key: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// `tokenizer.ggml.model` is not `gpt2` (byte-level BPE).
    #[error("unsupported tokenizer model {0:?} (only \"gpt2\", byte-level BPE, is implemented)")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokeniser that is not implemented.
    #[error("unsupported pre-tokenizer {0:?} (only \"smollm\" is implemented)")]
    UnsupportedPreTokenizer(String),
    /// The chat template is not one this crate renders.
    #[error(
        "unsupported chat template (only SmolLM2's ChatML template is rendered; this file's begins {0:?})"
    )]
    UnsupportedChatTemplate(String),
    /// The token list and the token-type list differ in length.
    #[error("{tokens} tokens but {types} token types")]
    TypeCountMismatch {
        /// Number of tokens.
        tokens: usize,
        /// Number of token types.
        types: usize,
    },
    /// The vocabulary is empty or has more than `u32::MAX` tokens.
    #[error("vocabulary size {0} is not in 1..=u32::MAX")]
    BadVocabSize(usize),
    /// A token id in the metadata (bos, eos) is not in the vocabulary.
    #[error("{what} token id {id} is not below the vocabulary size {vocab}")]
    BadSpecialId {
        /// Which id.
        what: &'static str,
        /// The id.
        id: u64,
        /// The vocabulary size.
        vocab: usize,
    },
    /// A merge is not `"left right"` with both sides and their concatenation in the vocabulary.
    #[error("merge {rank} ({merge:?}) is not two vocabulary tokens whose concatenation is a token")]
    BadMerge {
        /// Its rank (index in the merge list).
        rank: usize,
        /// Its text.
        merge: String,
    },
    /// A normal token has a character outside GPT-2's byte alphabet.
    #[error("normal token {id} ({text:?}) has a character that is not a byte-level BPE byte")]
    NotByteLevel {
        /// The token id.
        id: u32,
        /// Its text.
        text: String,
    },
    /// An id to decode is not in the vocabulary.
    #[error("token id {id} is not below the vocabulary size {vocab}")]
    UnknownId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The decoded bytes are not UTF-8.
    #[error("decoded bytes are not valid UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        /// How many leading bytes are valid UTF-8.
        valid_up_to: usize,
    },
}

/// A byte-level BPE tokenizer with its special tokens and chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token texts, as in the file (byte-level characters for normal tokens).
    tokens: Vec<String>,
    /// Text → id (the last id, should a text occur twice).
    ids: HashMap<String, u32>,
    /// Token types (`TOKEN_TYPE_*`).
    types: Vec<u32>,
    /// Each token's bytes when decoded.
    bytes: Vec<Vec<u8>>,
    /// The token of each byte's byte-level character, if the vocabulary has it.
    byte_token: [Option<u32>; 256],
    /// For a byte without a token: what llama.cpp emits instead (the one-byte tokens, if any, of the
    /// UTF-8 bytes of its byte-level character).
    byte_fallback: [Vec<u32>; 256],
    /// `(left << 32) | right` → (rank, merged token).
    merges: HashMap<u64, (u32, u32), BuildMergeHasher>,
    /// Special tokens cut out of the text before pre-tokenisation, longest text first (then lowest id).
    specials: Vec<(String, u32)>,
    /// Beginning- and end-of-sequence tokens.
    bos: u32,
    eos: u32,
    /// The chat template (checked against the file's Jinja source when built).
    template: ChatTemplate,
}

/// GPT-2's `bytes_to_unicode`: the printable character that stands for each byte in token texts.
pub fn byte_to_char(b: u8) -> char {
    let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable {
        return char::from(b);
    }
    // The others, in byte order, are written as U+0100, U+0101, ...
    let rank = (0..b)
        .filter(|&x| !matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
        .count();
    char::from_u32(256 + rank as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The inverse of [`byte_to_char`] (`None` for a character that stands for no byte).
pub fn char_to_byte(c: char) -> Option<u8> {
    let v = u32::from(c);
    if v < 256 {
        let b = v as u8;
        return matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF).then_some(b);
    }
    let rank = v.checked_sub(256)? as usize;
    (0..=255u8)
        .filter(|&x| !matches!(x, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF))
        .nth(rank)
}

/// A fast, fixed (unseeded) hasher for the merge table's `u64` keys: a multiply and a fold. Lookups
/// only: the result never depends on the hash.
#[derive(Clone, Copy, Debug, Default)]
struct MergeHasher(u64);

impl std::hash::Hasher for MergeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        let m = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = m ^ (m >> 29);
    }
}

type BuildMergeHasher = std::hash::BuildHasherDefault<MergeHasher>;

fn meta<'a>(file: &'a GgufFile, key: &'static str) -> Result<&'a MetaValue, TokenizerError> {
    file.metadata(key).ok_or(TokenizerError::MissingKey(key))
}

fn meta_str<'a>(file: &'a GgufFile, key: &'static str) -> Result<&'a str, TokenizerError> {
    meta(file, key)?.as_str().ok_or(TokenizerError::WrongType {
        key,
        expected: "string",
    })
}

fn meta_u64(file: &GgufFile, key: &'static str) -> Result<u64, TokenizerError> {
    meta(file, key)?.as_u64().ok_or(TokenizerError::WrongType {
        key,
        expected: "unsigned integer",
    })
}

fn meta_array<'a>(file: &'a GgufFile, key: &'static str) -> Result<&'a [MetaValue], TokenizerError> {
    meta(file, key)?.as_array().ok_or(TokenizerError::WrongType {
        key,
        expected: "array",
    })
}

fn meta_strings(file: &GgufFile, key: &'static str) -> Result<Vec<String>, TokenizerError> {
    meta_array(file, key)?
        .iter()
        .map(|v| {
            v.as_str().map(str::to_owned).ok_or(TokenizerError::WrongType {
                key,
                expected: "string array",
            })
        })
        .collect()
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*` and `tokenizer.chat_template`).
    ///
    /// Fails when the model is not `gpt2`, the pre-tokeniser not `smollm`, the chat template not one
    /// [`ChatTemplate`] renders, or the vocabulary or merges are inconsistent.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let model = meta_str(file, "tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(model.to_owned()));
        }
        let pre = meta_str(file, "tokenizer.ggml.pre")?;
        if pre != "smollm" {
            return Err(TokenizerError::UnsupportedPreTokenizer(pre.to_owned()));
        }
        let tokens = meta_strings(file, "tokenizer.ggml.tokens")?;
        let types = meta_array(file, "tokenizer.ggml.token_type")?
            .iter()
            .map(|v| match v {
                MetaValue::I32(t) => u32::try_from(*t).ok(),
                other => other.as_u64().and_then(|t| u32::try_from(t).ok()),
            })
            .collect::<Option<Vec<u32>>>()
            .ok_or(TokenizerError::WrongType {
                key: "tokenizer.ggml.token_type",
                expected: "integer array",
            })?;
        let merges = meta_strings(file, "tokenizer.ggml.merges")?;
        let bos = meta_u64(file, "tokenizer.ggml.bos_token_id")?;
        let eos = meta_u64(file, "tokenizer.ggml.eos_token_id")?;
        let template = meta_str(file, "tokenizer.chat_template")?;
        let to_u32 = |what: &'static str, id: u64| {
            u32::try_from(id).map_err(|_| TokenizerError::BadSpecialId {
                what,
                id,
                vocab: tokens.len(),
            })
        };
        let (bos, eos) = (to_u32("bos", bos)?, to_u32("eos", eos)?);
        Tokenizer::new(tokens, types, &merges, bos, eos, template)
    }

    /// Builds a tokenizer from its parts: token texts and types (`TOKEN_TYPE_*`), merges
    /// (`"left right"`, in rank order), the bos and eos ids, and the Jinja source of the chat template.
    pub fn new(
        tokens: Vec<String>,
        types: Vec<u32>,
        merges: &[String],
        bos: u32,
        eos: u32,
        chat_template: &str,
    ) -> Result<Tokenizer, TokenizerError> {
        if tokens.len() != types.len() {
            return Err(TokenizerError::TypeCountMismatch {
                tokens: tokens.len(),
                types: types.len(),
            });
        }
        if tokens.is_empty() || u32::try_from(tokens.len()).is_err() {
            return Err(TokenizerError::BadVocabSize(tokens.len()));
        }
        for (what, id) in [("bos", bos), ("eos", eos)] {
            if id as usize >= tokens.len() {
                return Err(TokenizerError::BadSpecialId {
                    what,
                    id: u64::from(id),
                    vocab: tokens.len(),
                });
            }
        }
        let template = ChatTemplate::from_source(chat_template).ok_or_else(|| {
            TokenizerError::UnsupportedChatTemplate(chat_template.chars().take(80).collect())
        })?;
        // Text → id; on a duplicate text the later id wins, as in llama.cpp's `token_to_id`.
        let mut by_text: HashMap<&str, u32> = HashMap::with_capacity(tokens.len());
        for (id, t) in tokens.iter().enumerate() {
            by_text.insert(t.as_str(), id as u32);
        }
        let mut bytes = Vec::with_capacity(tokens.len());
        for (id, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
            if ty == TOKEN_TYPE_NORMAL {
                let b = t.chars().map(char_to_byte).collect::<Option<Vec<u8>>>();
                let b = b.ok_or_else(|| TokenizerError::NotByteLevel {
                    id: id as u32,
                    text: t.clone(),
                })?;
                bytes.push(b);
            } else {
                bytes.push(t.as_bytes().to_vec());
            }
        }
        let mut byte_token = [None; 256];
        let mut byte_fallback: [Vec<u32>; 256] = std::array::from_fn(|_| Vec::new());
        for b in 0..=255u8 {
            let mut buf = [0u8; 4];
            let ch = byte_to_char(b).encode_utf8(&mut buf);
            byte_token[b as usize] = by_text.get(&*ch).copied();
            if byte_token[b as usize].is_none() {
                // llama.cpp looks up each byte of the symbol's text as a one-byte token.
                byte_fallback[b as usize] = ch
                    .as_bytes()
                    .iter()
                    .filter_map(|x| std::str::from_utf8(std::slice::from_ref(x)).ok())
                    .filter_map(|s| by_text.get(s).copied())
                    .collect();
            }
        }
        let mut merge_map: HashMap<u64, (u32, u32), BuildMergeHasher> =
            HashMap::with_capacity_and_hasher(merges.len(), BuildMergeHasher::default());
        for (rank, m) in merges.iter().enumerate() {
            let bad = || TokenizerError::BadMerge {
                rank,
                merge: m.clone(),
            };
            // Split at the first space after the first character, as llama.cpp does.
            let cut = m
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(bad)?;
            let (left, right) = (&m[..cut], &m[cut + 1..]);
            let l = *by_text.get(left).ok_or_else(bad)?;
            let r = *by_text.get(right).ok_or_else(bad)?;
            let merged = *by_text.get(format!("{left}{right}").as_str()).ok_or_else(bad)?;
            let rank = u32::try_from(rank).map_err(|_| bad())?;
            // On a duplicate pair the first (lowest) rank stays, as in llama.cpp's `bpe_ranks.emplace`.
            merge_map
                .entry((u64::from(l) << 32) | u64::from(r))
                .or_insert((rank, merged));
        }
        let mut specials: Vec<(String, u32)> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (t, ty))| {
                !t.is_empty()
                    && matches!(
                        **ty,
                        TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | TOKEN_TYPE_UNKNOWN
                    )
            })
            .map(|(id, (t, _))| (t.clone(), id as u32))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let ids = by_text.into_iter().map(|(t, id)| (t.to_owned(), id)).collect();
        Ok(Tokenizer {
            ids,
            tokens,
            types,
            bytes,
            byte_token,
            byte_fallback,
            merges: merge_map,
            specials,
            bos,
            eos,
            template,
        })
    }

    /// The number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The beginning-of-sequence token (`tokenizer.ggml.bos_token_id`; SmolLM2's `<|im_start|>`, 1).
    pub fn bos(&self) -> u32 {
        self.bos
    }

    /// The end-of-sequence token (`tokenizer.ggml.eos_token_id`; SmolLM2's `<|im_end|>`, 2).
    pub fn eos(&self) -> u32 {
        self.eos
    }

    /// The text of token `id` as the file writes it (byte-level characters for a normal token).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The type of token `id` (`TOKEN_TYPE_*`).
    pub fn token_type(&self, id: u32) -> Option<u32> {
        self.types.get(id as usize).copied()
    }

    /// The id of the token whose text is exactly `text` (the last one, should several be).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The bytes token `id` stands for (a special token's text for a control token).
    pub fn token_to_bytes(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize).map(Vec::as_slice)
    }

    /// The chat template of the file.
    pub fn chat_template(&self) -> ChatTemplate {
        self.template
    }

    /// Encodes `text`, recognising special tokens written in it (`<|im_start|>` → 1), as llama.cpp's
    /// `llama_tokenize(.., add_special = false, parse_special = true)` does. No bos is added (the file's
    /// `add_bos_token` is false).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.encode_with(text, true)
    }

    /// Encodes `text`; with `parse_special` false, control and unknown tokens written in the text are
    /// encoded as ordinary text (user-defined tokens are still recognised, as in llama.cpp).
    pub fn encode_with(&self, text: &str, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut words = Vec::new();
        let mut work = Work::default();
        for piece in self.partition(text, parse_special) {
            match piece {
                Piece::Special(id) => out.push(id),
                Piece::Text(range) => {
                    let part = &text[range];
                    words.clear();
                    pretokenize::split_smollm(part, &mut words);
                    for w in &words {
                        self.bpe_word(part[w.clone()].as_bytes(), &mut work, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Cuts the special tokens out of `text`: llama.cpp's `tokenizer_st_partition` (each special token,
    /// longest first, is searched for in every text fragment left by the ones before it).
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Piece> {
        let mut pieces = vec![Piece::Text(0..text.len())];
        if text.is_empty() {
            pieces.clear();
            return pieces;
        }
        for (special, id) in &self.specials {
            let ty = self.types[*id as usize];
            if !parse_special && ty != TOKEN_TYPE_USER_DEFINED {
                continue;
            }
            if !pieces
                .iter()
                .any(|p| matches!(p, Piece::Text(r) if text[r.clone()].contains(special.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(pieces.len() + 2);
            for p in pieces {
                let Piece::Text(r) = p else {
                    next.push(p);
                    continue;
                };
                let mut start = r.start;
                for (at, _) in text[r.clone()].match_indices(special.as_str()) {
                    let at = r.start + at;
                    if start < at {
                        next.push(Piece::Text(start..at));
                    }
                    next.push(Piece::Special(*id));
                    start = at + special.len();
                }
                if start < r.end {
                    next.push(Piece::Text(start..r.end));
                }
            }
            pieces = next;
        }
        pieces
    }

    /// Byte-level BPE of one pre-tokenised word, appended to `out`.
    fn bpe_word(&self, word: &[u8], work: &mut Work, out: &mut Vec<u32>) {
        if let [b] = word {
            match self.byte_token[*b as usize] {
                Some(id) => out.push(id),
                None => out.extend_from_slice(&self.byte_fallback[*b as usize]),
            }
            return;
        }
        // Symbols in a doubly linked list (by index); a byte without a token is a symbol that never
        // merges (`id == None`).
        let syms = &mut work.syms;
        syms.clear();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Sym {
                id: self.byte_token[b as usize],
                byte: b,
                prev: i.wrapping_sub(1),
                next: i + 1,
            });
        }
        let n = syms.len();
        let heap = &mut work.heap;
        heap.clear();
        let pair = |syms: &[Sym], l: usize| -> Option<Reverse<Candidate>> {
            let r = syms[l].next;
            let (a, b) = (syms[l].id?, syms.get(r)?.id?);
            let &(rank, _) = self.merges.get(&((u64::from(a) << 32) | u64::from(b)))?;
            Some(Reverse(Candidate {
                rank,
                left: l,
                left_id: a,
                right_id: b,
            }))
        };
        for l in 0..n.saturating_sub(1) {
            if let Some(c) = pair(syms, l) {
                heap.push(c);
            }
        }
        while let Some(Reverse(c)) = heap.pop() {
            let l = c.left;
            let r = syms[l].next;
            // Stale entries: a side was merged away or into something else since the pair was queued.
            if r >= n || syms[l].id != Some(c.left_id) || syms[r].id != Some(c.right_id) {
                continue;
            }
            let key = (u64::from(c.left_id) << 32) | u64::from(c.right_id);
            let Some(&(_, merged)) = self.merges.get(&key) else {
                continue;
            };
            syms[l].id = Some(merged);
            syms[r].id = None;
            syms[r].byte = 0;
            syms[r].prev = DEAD;
            let rn = syms[r].next;
            syms[l].next = rn;
            if rn < n {
                syms[rn].prev = l;
            }
            let p = syms[l].prev;
            if p < n
                && let Some(c) = pair(syms, p)
            {
                heap.push(c);
            }
            if let Some(c) = pair(syms, l) {
                heap.push(c);
            }
        }
        let mut i = 0;
        while i < n {
            match syms[i].id {
                Some(id) => out.push(id),
                None => out.extend_from_slice(&self.byte_fallback[syms[i].byte as usize]),
            }
            i = syms[i].next;
        }
    }

    /// The bytes `ids` stand for, concatenated (see [`Tokenizer::token_to_bytes`]).
    pub fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        let mut out = Vec::new();
        for &id in ids {
            let b = self.token_to_bytes(id).ok_or(TokenizerError::UnknownId {
                id,
                vocab: self.tokens.len(),
            })?;
            out.extend_from_slice(b);
        }
        Ok(out)
    }

    /// The text `ids` stand for; fails with [`TokenizerError::InvalidUtf8`] when the bytes are not UTF-8
    /// (use [`Tokenizer::decode_bytes`] to get them anyway) and with [`TokenizerError::UnknownId`] on
    /// an id outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let bytes = self.decode_bytes(ids)?;
        String::from_utf8(bytes).map_err(|e| TokenizerError::InvalidUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        })
    }

    /// Writes a conversation out with the file's chat template (`add_generation_prompt`: end with the
    /// opening of an assistant turn). Encode the result with [`Tokenizer::encode`].
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> String {
        self.template.render(messages, add_generation_prompt)
    }
}

/// A marker for "no neighbour" in the symbol list.
const DEAD: usize = usize::MAX;

/// A piece of the input after special tokens are cut out.
enum Piece {
    Text(Range<usize>),
    Special(u32),
}

/// One BPE symbol.
#[derive(Clone, Copy)]
struct Sym {
    /// Its token, or `None` for a byte without a token, or a symbol merged into its left neighbour.
    id: Option<u32>,
    /// For a byte without a token: the byte.
    byte: u8,
    prev: usize,
    next: usize,
}

/// A queued merge of the pair starting at symbol `left`: ordered by rank, then position.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: usize,
    left_id: u32,
    right_id: u32,
}

/// Buffers reused across the words of one `encode`.
#[derive(Default)]
struct Work {
    syms: Vec<Sym>,
    heap: BinaryHeap<Reverse<Candidate>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(char_to_byte('a'), Some(b'a'));
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('\u{144}'), None);
    }

    fn toy() -> Tokenizer {
        let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into()];
        let mut types = vec![TOKEN_TYPE_CONTROL, TOKEN_TYPE_CONTROL];
        for b in 0..=255u8 {
            if b != 0x04 {
                tokens.push(byte_to_char(b).to_string());
                types.push(TOKEN_TYPE_NORMAL);
            }
        }
        for t in ["ab", "abc", "Ġab", "aa"] {
            tokens.push(t.into());
            types.push(TOKEN_TYPE_NORMAL);
        }
        let merges: Vec<String> = ["a b", "ab c", "Ġ ab", "a a"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Tokenizer::new(tokens, types, &merges, 0, 1, SMOLLM2_CHATML).unwrap()
    }

    #[test]
    fn merges_by_rank_then_leftmost() {
        let t = toy();
        let id = |s: &str| t.token_id(s).unwrap();
        assert_eq!(t.encode("abc"), [id("abc")]);
        assert_eq!(t.encode(" ab"), [id("Ġab")]);
        assert_eq!(t.encode("aaa"), [id("aa"), id("a")]);
        assert_eq!(t.encode("x<|im_start|>y<|im_end|>"), [id("x"), 0, id("y"), 1]);
        assert_eq!(t.encode_with("<|im_start|>", false).len(), "<|im_start|>".len());
        assert_eq!(t.encode("a\u{4}b"), [id("a"), id("b")]);
        assert_eq!(t.encode(""), Vec::<u32>::new());
        assert_eq!(
            t.decode(&t.encode("x<|im_start|> abc")).unwrap(),
            "x<|im_start|> abc"
        );
        assert!(matches!(t.decode(&[9999]), Err(TokenizerError::UnknownId { .. })));
        let e_acute_first_byte = t.byte_token[0xC3].unwrap();
        assert!(matches!(
            t.decode(&[e_acute_first_byte]),
            Err(TokenizerError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn refuses_bad_input() {
        let tokens = vec!["a".to_string(), "b".to_string()];
        let r = Tokenizer::new(
            tokens.clone(),
            vec![1, 1],
            &["a b".to_string()],
            0,
            1,
            SMOLLM2_CHATML,
        );
        assert!(matches!(r, Err(TokenizerError::BadMerge { rank: 0, .. })));
        let r = Tokenizer::new(tokens.clone(), vec![1], &[], 0, 1, SMOLLM2_CHATML);
        assert!(matches!(r, Err(TokenizerError::TypeCountMismatch { .. })));
        let r = Tokenizer::new(tokens.clone(), vec![1, 1], &[], 0, 2, SMOLLM2_CHATML);
        assert!(matches!(r, Err(TokenizerError::BadSpecialId { .. })));
        let r = Tokenizer::new(tokens, vec![1, 1], &[], 0, 1, "{{ messages }}");
        assert!(matches!(r, Err(TokenizerError::UnsupportedChatTemplate(_))));
    }
}
