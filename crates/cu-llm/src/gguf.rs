//! GGUF files: the container llama.cpp and its converters write models in.
//!
//! A GGUF file (versions 2 and 3; version 1 used 32-bit counts and is not read) is, little-endian:
//!
//! ```text
//! magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count × (key: string, value_type u32, value)
//! tensor_count × (name: string, n_dims u32, dims n_dims × u64, ggml_type u32, offset u64)
//! padding to `general.alignment` (default 32)
//! tensor data (each tensor at data_start + offset, offset a multiple of the alignment)
//! ```
//!
//! where a string is `len u64` followed by `len` bytes of UTF-8, and an array value is
//! `item_type u32 | count u64 | count × item` (items may be arrays themselves). Every length, count
//! and offset read from the file is checked against the bytes that are really there before anything
//! is allocated, so a malformed or truncated file gives a [`GgufError`], never a panic or a huge
//! allocation.
//!
//! The dequantisation helpers at the end ([`dequantize`]) return `f32` and are for evaluation tooling
//! and tests only: the model's result path converts the same bits with integer arithmetic
//! (`crate::fixed`).

use std::collections::HashSet;
use std::path::Path;

/// The magic number at the start of every GGUF file ("GGUF" in ASCII).
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The deepest nesting of arrays inside arrays that is accepted (bounds the parser's recursion).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Why a GGUF file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read from disk.
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        /// The path that was opened.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file does not start with "GGUF".
    #[error("not a GGUF file (bad magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {0} (versions 2 and 3 are read)")]
    UnsupportedVersion(u32),
    /// The file ended in the middle of a field.
    #[error("GGUF file truncated: {what} needs {needed} bytes at offset {offset}, the file has {len}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// The file's length.
        len: u64,
    },
    /// A string is not UTF-8.
    #[error("GGUF string at offset {0} is not UTF-8")]
    BadUtf8(u64),
    /// A metadata value type id is not one GGUF defines.
    #[error("unknown GGUF metadata value type {0}")]
    UnknownValueType(u32),
    /// Arrays are nested deeper than [`MAX_ARRAY_DEPTH`].
    #[error("GGUF arrays nested deeper than {MAX_ARRAY_DEPTH}")]
    NestingTooDeep,
    /// The same metadata key appears twice.
    #[error("duplicate GGUF metadata key {0:?}")]
    DuplicateKey(String),
    /// `general.alignment` is not a power of two (or not a u32).
    #[error("bad general.alignment {0} (must be a power of two)")]
    BadAlignment(u64),
    /// The same tensor name appears twice.
    #[error("duplicate GGUF tensor {0:?}")]
    DuplicateTensor(String),
    /// A tensor has 0 or more than [`MAX_DIMS`] dimensions.
    #[error("tensor {name:?} has {n_dims} dimensions (1 to {MAX_DIMS} are allowed)")]
    BadDims {
        /// The tensor.
        name: String,
        /// The number of dimensions in the file.
        n_dims: u32,
    },
    /// A tensor's ggml type id is not known to this reader.
    #[error("tensor {name:?} has unknown ggml type {ty}")]
    UnknownTensorType {
        /// The tensor.
        name: String,
        /// The type id in the file.
        ty: u32,
    },
    /// A tensor's first dimension is not a multiple of its type's block size, or its size overflows.
    #[error("tensor {name:?}: shape {dims:?} does not fit type {ty:?}")]
    BadShape {
        /// The tensor.
        name: String,
        /// Its dimensions.
        dims: Vec<u64>,
        /// Its type.
        ty: GgmlType,
    },
    /// A tensor's offset is not a multiple of the alignment.
    #[error("tensor {name:?} offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// The tensor.
        name: String,
        /// Its offset inside the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's bytes lie (partly) beyond the end of the file.
    #[error("tensor {name:?} bytes [{start}, {end}) lie beyond the end of the file ({len} bytes)")]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// First byte (absolute file offset).
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// Two tensors' bytes overlap.
    #[error("tensors {0:?} and {1:?} overlap")]
    Overlap(String, String),
    /// Dequantisation was asked of a type it does not support, or with the wrong byte count.
    #[error("cannot dequantise {ty:?} from {bytes} bytes as {elements} elements")]
    Dequantize {
        /// The type.
        ty: GgmlType,
        /// Bytes given.
        bytes: usize,
        /// Elements asked for.
        elements: u64,
    },
}

/// A ggml tensor element type (the numbering of ggml's `enum ggml_type`).
#[allow(missing_docs)] // the variants are ggml's own names
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
    BF16,
}

impl GgmlType {
    /// The type with ggml id `id`, if this reader knows its layout.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            9 => GgmlType::Q8_1,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            15 => GgmlType::Q8K,
            24 => GgmlType::I8,
            25 => GgmlType::I16,
            26 => GgmlType::I32,
            27 => GgmlType::I64,
            28 => GgmlType::F64,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// ggml's id of the type.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q8_1 => 9,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Q8K => 15,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
            GgmlType::BF16 => 30,
        }
    }

    /// (elements per block, bytes per block), as ggml's type traits give them.
    pub fn block_layout(self) -> (u64, u64) {
        match self {
            GgmlType::F32 | GgmlType::I32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => (1, 2),
            GgmlType::I8 => (1, 1),
            GgmlType::I64 | GgmlType::F64 => (1, 8),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q8_1 => (32, 36),
            GgmlType::Q2K => (256, 84),
            GgmlType::Q3K => (256, 110),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
            GgmlType::Q8K => (256, 292),
        }
    }
}

/// One tensor's description from the file's tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Its dimensions in GGUF order: `dims[0]` varies fastest (a weight matrix of `n` rows of `k`
    /// inputs is `[k, n]`).
    pub dims: Vec<u64>,
    /// Its element type.
    pub ggml_type: GgmlType,
    /// Offset of its data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Number of elements (the product of `dims`).
    pub elements: u64,
    /// Number of bytes of data.
    pub size: u64,
}

/// A metadata value.
#[allow(missing_docs)] // one variant per GGUF value type, named after it
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The string, if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a u64, if it is an integer of any width that is non-negative (bools are not integers).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(u64::from(v)),
            MetaValue::U16(v) => Some(u64::from(v)),
            MetaValue::U32(v) => Some(u64::from(v)),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as an i64, if it is an integer of any width that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::U64(v) => i64::try_from(v).ok(),
            MetaValue::I8(v) => Some(i64::from(v)),
            MetaValue::I16(v) => Some(i64::from(v)),
            MetaValue::I32(v) => Some(i64::from(v)),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The IEEE bits of the value, if it is an `F32` (for integer decoding; see `crate::fixed`).
    pub fn as_f32_bits(&self) -> Option<u32> {
        match *self {
            MetaValue::F32(v) => Some(v.to_bits()),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The boolean, if this is a bool value.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// A GGUF file, read whole into memory and validated.
#[derive(Debug)]
pub struct GgufFile {
    bytes: Vec<u8>,
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: u64,
}

impl GgufFile {
    /// Reads and parses the file at `path`.
    pub fn open(path: &Path) -> Result<GgufFile, GgufError> {
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        GgufFile::parse(bytes)
    }

    /// Parses a whole GGUF file held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        let mut r = Reader { b: &bytes, pos: 0 };
        let magic: [u8; 4] = r.array("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata count")?;
        // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at least
        // 8 + 4 + 4 + 8 bytes: a count the remaining bytes cannot hold is a truncated file.
        r.check_count(kv_count, 13, "metadata")?;
        let mut metadata = Vec::with_capacity(usize::try_from(kv_count).unwrap_or(0));
        let mut keys = HashSet::new();
        for _ in 0..kv_count {
            let key = r.string("metadata key")?;
            let ty = r.u32("metadata value type")?;
            let value = r.value(ty, 0)?;
            if !keys.insert(key.clone()) {
                return Err(GgufError::DuplicateKey(key));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, MetaValue::U32(a))) => u64::from(*a),
            Some((_, v)) => return Err(GgufError::BadAlignment(v.as_u64().unwrap_or(0))),
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment(alignment));
        }
        r.check_count(tensor_count, 24, "tensor infos")?;
        let mut tensors = Vec::with_capacity(usize::try_from(tensor_count).unwrap_or(0));
        let mut names = HashSet::new();
        for _ in 0..tensor_count {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(GgufError::BadDims { name, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let ty_id = r.u32("tensor type")?;
            let Some(ggml_type) = GgmlType::from_id(ty_id) else {
                return Err(GgufError::UnknownTensorType { name, ty: ty_id });
            };
            let offset = r.u64("tensor offset")?;
            let (block, block_bytes) = ggml_type.block_layout();
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let size = match elements {
                Some(n) if dims[0].is_multiple_of(block) => (n / block).checked_mul(block_bytes),
                _ => None,
            };
            let (Some(elements), Some(size)) = (elements, size) else {
                return Err(GgufError::BadShape {
                    name,
                    dims,
                    ty: ggml_type,
                });
            };
            if !offset.is_multiple_of(alignment) {
                return Err(GgufError::Misaligned {
                    name,
                    offset,
                    alignment,
                });
            }
            if !names.insert(name.clone()) {
                return Err(GgufError::DuplicateTensor(name));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                elements,
                size,
            });
        }
        let len = bytes.len() as u64;
        let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment);
        for t in &tensors {
            let start = data_start.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.size));
            match (start, end) {
                (Some(_), Some(end)) if end <= len => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        name: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        len,
                    });
                }
            }
        }
        let mut order: Vec<&TensorInfo> = tensors.iter().collect();
        order.sort_by_key(|t| t.offset);
        for w in order.windows(2) {
            if w[0].size > 0 && w[0].offset + w[0].size > w[1].offset {
                return Err(GgufError::Overlap(w[0].name.clone(), w[1].name.clone()));
            }
        }
        Ok(GgufFile {
            bytes,
            version,
            metadata,
            tensors,
            alignment,
            data_start,
        })
    }

    /// The file's GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of the tensor data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute file offset of the data section.
    pub fn data_start(&self) -> u64 {
        self.data_start
    }

    /// The value of metadata key `key`.
    pub fn metadata(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every metadata key and value, in file order.
    pub fn metadata_entries(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name` and its raw bytes.
    pub fn tensor(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        let t = self.tensors.iter().find(|t| t.name == name)?;
        // Bounds were checked by `parse`.
        let start = usize::try_from(self.data_start + t.offset).ok()?;
        let end = start.checked_add(usize::try_from(t.size).ok()?)?;
        Some((t, self.bytes.get(start..end)?))
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: u64,
}

impl Reader<'_> {
    fn left(&self) -> u64 {
        (self.b.len() as u64).saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&[u8], GgufError> {
        if n > self.left() {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                len: self.b.len() as u64,
            });
        }
        // n ≤ left ≤ len, so both fit usize.
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.b[start..start + n as usize])
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// Fails unless `count` items of at least `min_bytes` each fit in the bytes left.
    fn check_count(&self, count: u64, min_bytes: u64, what: &'static str) -> Result<(), GgufError> {
        match count.checked_mul(min_bytes) {
            Some(n) if n <= self.left() => Ok(()),
            _ => Err(GgufError::Truncated {
                what,
                offset: self.pos,
                needed: count.saturating_mul(min_bytes),
                len: self.b.len() as u64,
            }),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let n = self.u64(what)?;
        let at = self.pos;
        let s = self.take(n, what)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| GgufError::BadUtf8(at))
    }

    fn value(&mut self, ty: u32, depth: usize) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>("u8 value")?[0]),
            1 => MetaValue::I8(self.array::<1>("i8 value")?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array("u16 value")?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array("i16 value")?)),
            4 => MetaValue::U32(self.u32("u32 value")?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array("i32 value")?)),
            6 => MetaValue::F32(f32::from_bits(self.u32("f32 value")?)),
            7 => MetaValue::Bool(self.array::<1>("bool value")?[0] != 0),
            8 => MetaValue::String(self.string("string value")?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::NestingTooDeep);
                }
                let item_ty = self.u32("array item type")?;
                let count = self.u64("array length")?;
                let min = match item_ty {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(GgufError::UnknownValueType(other)),
                };
                self.check_count(count, min, "array items")?;
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item_ty, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64("u64 value")?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array("i64 value")?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array("f64 value")?)),
            other => return Err(GgufError::UnknownValueType(other)),
        })
    }
}

/// An IEEE binary16 value's exact `f32` equivalent (bit manipulation, no float arithmetic).
/// Evaluation tooling only.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else if exp != 0 {
        sign | ((exp + 112) << 23) | (man << 13)
    } else if man == 0 {
        sign
    } else {
        // Subnormal: man · 2^-24; normalise.
        let shift = man.leading_zeros() - 21; // bring bit 10 to the top of the 11-bit field
        let m = (man << shift) & 0x3ff;
        let e = 113 - shift;
        sign | (e << 23) | (m << 13)
    };
    f32::from_bits(bits)
}

/// Dequantises `elements` values of type `ty` from `bytes` to `f32`, as ggml does (`w = d·q` for Q8_0,
/// `w = d·q + m` for Q4_1, computed in f32). **Evaluation tooling and tests only**: float must never
/// decide a result. Supports F32, F16, Q4_1 and Q8_0.
pub fn dequantize(ty: GgmlType, bytes: &[u8], elements: u64) -> Result<Vec<f32>, GgufError> {
    let (block, block_bytes) = ty.block_layout();
    let bad = || GgufError::Dequantize {
        ty,
        bytes: bytes.len(),
        elements,
    };
    if !elements.is_multiple_of(block)
        || (elements / block).checked_mul(block_bytes) != Some(bytes.len() as u64)
    {
        return Err(bad());
    }
    let h = |b: &[u8], i: usize| f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]));
    let mut out = Vec::with_capacity(elements as usize);
    match ty {
        GgmlType::F32 => {
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        GgmlType::F16 => out.extend(bytes.chunks_exact(2).map(|c| h(c, 0))),
        GgmlType::Q8_0 => {
            for b in bytes.chunks_exact(34) {
                let d = h(b, 0);
                out.extend(b[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        GgmlType::Q4_1 => {
            for b in bytes.chunks_exact(20) {
                let (d, m) = (h(b, 0), h(b, 2));
                let qs = &b[4..20];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 0xf) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        _ => return Err(bad()),
    }
    Ok(out)
}
