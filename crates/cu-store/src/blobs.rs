//! Checkpoint blobs: `checkpoints/<process_id>/<seq:020>.ckpt`, either files under the store directory,
//! written atomically (`<name>.tmp`, fsync, rename, directory fsync), or objects of that key in an
//! S3-compatible bucket ([`Blobs::S3`], one `PUT` each, which an S3 service makes visible whole or not at
//! all). Either way a blob is written before its index row commits, and verified by length and BLAKE3
//! on read.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::records::CheckpointRecord;
use crate::s3::{S3Bucket, S3Error};

/// Where a store keeps its checkpoint blobs.
#[derive(Debug, Clone)]
pub enum Blobs {
    /// Files under the store directory.
    Files(PathBuf),
    /// Objects in an S3-compatible bucket.
    S3(Box<S3Bucket>),
}

impl Blobs {
    /// Writes the blob of checkpoint `seq` durably; returns its path (key) relative to the store.
    pub fn write(&self, process_id: &str, seq: u64, blob: &[u8]) -> Result<String, StoreError> {
        match self {
            Blobs::Files(dir) => write_atomic(dir, process_id, seq, blob),
            Blobs::S3(bucket) => {
                let key = relative_path(process_id, seq);
                bucket
                    .put(&key, blob)
                    .map_err(|e| object_error(bucket, &key, "writing", e))?;
                Ok(key)
            }
        }
    }

    /// The blob of `rec`, its length and BLAKE3 checked against the index.
    pub fn read_verified(&self, rec: &CheckpointRecord) -> Result<Vec<u8>, StoreError> {
        match self {
            Blobs::Files(dir) => read_verified(dir, rec),
            Blobs::S3(_) => self
                .read_verified_stream(rec, |r, len| {
                    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                    r.read_to_end(&mut out).map(|_| out)
                })?
                .map_err(|e| StoreError::io(rec.file.clone(), e)),
        }
    }

    /// [`read_verified_stream`] over either kind of storage.
    pub fn read_verified_stream<T>(
        &self,
        rec: &CheckpointRecord,
        use_stream: impl FnOnce(&mut dyn BufRead, u64) -> T,
    ) -> Result<T, StoreError> {
        match self {
            Blobs::Files(dir) => read_verified_stream(dir, rec, use_stream),
            Blobs::S3(bucket) => {
                let key = relative_path(&rec.process_id, rec.seq);
                let path = PathBuf::from(bucket.describe(&key));
                if rec.file != key {
                    return Err(StoreError::Corrupt {
                        path,
                        reason: format!(
                            "the checkpoint record names file {:?}, expected {key:?}",
                            rec.file
                        ),
                    });
                }
                let Some((_, body)) = bucket
                    .get(&key)
                    .map_err(|e| object_error(bucket, &key, "reading", e))?
                else {
                    return Err(StoreError::Corrupt {
                        path,
                        reason: format!(
                            "checkpoint {} of process {} is indexed but its object is missing",
                            rec.seq, rec.process_id
                        ),
                    });
                };
                verify_stream(path, rec, body, use_stream)
            }
        }
    }

    /// Removes the blobs of checkpoints with seq < `seq` (finished and, for files, temporary ones).
    pub fn remove_before(&self, process_id: &str, seq: u64) -> Result<(), StoreError> {
        match self {
            Blobs::Files(dir) => remove_before(dir, process_id, seq),
            Blobs::S3(bucket) => {
                for obj in self.listed(bucket, process_id)? {
                    let name = obj.key.rsplit('/').next().unwrap_or_default();
                    if parse_seq(name).is_some_and(|s| s < seq) {
                        bucket
                            .delete(&obj.key)
                            .map_err(|e| object_error(bucket, &obj.key, "deleting", e))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Bytes used by a process's checkpoint blobs.
    pub fn bytes_used(&self, process_id: &str) -> Result<u64, StoreError> {
        match self {
            Blobs::Files(dir) => bytes_used(dir, process_id),
            Blobs::S3(bucket) => Ok(self.listed(bucket, process_id)?.iter().map(|o| o.size).sum()),
        }
    }

    fn listed(&self, bucket: &S3Bucket, process_id: &str) -> Result<Vec<crate::s3::Listed>, StoreError> {
        let prefix = format!("{CHECKPOINT_DIR}/{process_id}/");
        bucket
            .list(&prefix)
            .map_err(|e| object_error(bucket, &prefix, "listing", e))
    }
}

/// An object request that failed.
fn object_error(bucket: &S3Bucket, key: &str, doing: &str, e: S3Error) -> StoreError {
    StoreError::ObjectStore {
        object: bucket.describe(key),
        reason: format!("{doing}: {e}"),
    }
}

/// The folder under the store directory that holds the checkpoint files.
pub const CHECKPOINT_DIR: &str = "checkpoints";

const SUFFIX: &str = ".ckpt";
const TMP_SUFFIX: &str = ".ckpt.tmp";

/// Checks that a process id is safe to use as a file name: `[A-Za-z0-9_-]`, 1 to 64 characters.
pub fn validate_process_id(id: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::BadId {
            id: id.chars().take(100).collect(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > 64 {
        return bad("it is longer than 64 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return bad("only A-Z, a-z, 0-9, '_' and '-' are allowed");
    }
    Ok(())
}

/// The file of checkpoint `seq`, relative to the store directory.
pub fn relative_path(process_id: &str, seq: u64) -> String {
    format!("{CHECKPOINT_DIR}/{process_id}/{seq:020}{SUFFIX}")
}

fn process_dir(store_dir: &Path, process_id: &str) -> PathBuf {
    store_dir.join(CHECKPOINT_DIR).join(process_id)
}

/// fsyncs a directory so that entries created or renamed in it survive a power cut.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Writes the blob of checkpoint `seq` atomically and durably; returns its path relative to the store dir.
/// The process id must have been validated.
pub fn write_atomic(store_dir: &Path, process_id: &str, seq: u64, blob: &[u8]) -> Result<String, StoreError> {
    let dir = process_dir(store_dir, process_id);
    if !dir.is_dir() {
        fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        // The new directory's entry lives in `checkpoints/`.
        fsync_dir(&store_dir.join(CHECKPOINT_DIR))?;
    }
    let rel = relative_path(process_id, seq);
    let path = store_dir.join(&rel);
    let tmp = dir.join(format!("{seq:020}{TMP_SUFFIX}"));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(blob)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        // A partial temporary file is useless; it is removed again by pruning if this fails too.
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io(&tmp, e));
    }
    fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
    fsync_dir(&dir)?;
    Ok(rel)
}

/// Reads the blob of `rec` and checks its length and BLAKE3. The path is rebuilt from the (validated)
/// process id and seq; `rec.file` must name the same file.
pub fn read_verified(store_dir: &Path, rec: &CheckpointRecord) -> Result<Vec<u8>, StoreError> {
    let (path, bytes) = read_sized(store_dir, rec)?;
    check_blake3(&path, rec, blake3::hash(&bytes))?;
    Ok(bytes)
}

/// [`read_verified`] as a stream: `use_stream` reads the blob from a buffered reader (the file's length is
/// passed with it) while the bytes it consumes are hashed; whatever it leaves unread is hashed after it.
/// No buffer of the whole blob is made. When the length or the BLAKE3 disagrees with the index, what
/// `use_stream` produced is dropped and the mismatch returned, so nothing built from a corrupt blob
/// escapes.
pub fn read_verified_stream<T>(
    store_dir: &Path,
    rec: &CheckpointRecord,
    use_stream: impl FnOnce(&mut dyn BufRead, u64) -> T,
) -> Result<T, StoreError> {
    let path = checked_path(store_dir, rec)?;
    let file = File::open(&path).map_err(|e| not_found_or_io(&path, rec, e))?;
    verify_stream(path, rec, file, use_stream)
}

/// Streams `source` through `use_stream` while hashing, then checks length and BLAKE3 against `rec`.
fn verify_stream<T>(
    path: PathBuf,
    rec: &CheckpointRecord,
    source: impl Read,
    use_stream: impl FnOnce(&mut dyn BufRead, u64) -> T,
) -> Result<T, StoreError> {
    let mut reader = HashingReader {
        inner: BufReader::with_capacity(STREAM_BUFFER, source),
        hasher: blake3::Hasher::new(),
        count: 0,
    };
    let out = use_stream(&mut reader, rec.bytes);
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| StoreError::io(&path, e))?;
    if reader.count != rec.bytes {
        return Err(StoreError::Corrupt {
            path,
            reason: format!("length is {} bytes, the index says {}", reader.count, rec.bytes),
        });
    }
    check_blake3(&path, rec, reader.hasher.finalize())?;
    Ok(out)
}

/// The read buffer of [`read_verified_stream`]: large enough for BLAKE3's wide SIMD passes.
const STREAM_BUFFER: usize = 1 << 20;

/// A buffered reader that hashes and counts every byte its user consumes.
struct HashingReader<R> {
    inner: BufReader<R>,
    hasher: blake3::Hasher,
    count: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = {
            let buf = self.fill_buf()?;
            let n = buf.len().min(out.len());
            out[..n].copy_from_slice(&buf[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for HashingReader<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let n = n.min(buf.len());
            self.hasher.update(&buf[..n]);
            self.count += n as u64;
            self.inner.consume(n);
        }
    }
}

/// The path of `rec`'s file, rebuilt from the (validated) process id and seq; `rec.file` must name it.
fn checked_path(store_dir: &Path, rec: &CheckpointRecord) -> Result<PathBuf, StoreError> {
    let rel = relative_path(&rec.process_id, rec.seq);
    let path = store_dir.join(&rel);
    if rec.file != rel {
        return Err(StoreError::Corrupt {
            path,
            reason: format!(
                "the checkpoint record names file {:?}, expected {rel:?}",
                rec.file
            ),
        });
    }
    Ok(path)
}

fn not_found_or_io(path: &Path, rec: &CheckpointRecord, e: std::io::Error) -> StoreError {
    match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "checkpoint {} of process {} is indexed but its file is missing",
                rec.seq, rec.process_id
            ),
        },
        _ => StoreError::io(path, e),
    }
}

/// The blob of `rec` with its path, its length checked against the index.
fn read_sized(store_dir: &Path, rec: &CheckpointRecord) -> Result<(PathBuf, Vec<u8>), StoreError> {
    let path = checked_path(store_dir, rec)?;
    let bytes = fs::read(&path).map_err(|e| not_found_or_io(&path, rec, e))?;
    if bytes.len() as u64 != rec.bytes {
        return Err(StoreError::Corrupt {
            path,
            reason: format!("length is {} bytes, the index says {}", bytes.len(), rec.bytes),
        });
    }
    Ok((path, bytes))
}

fn check_blake3(path: &Path, rec: &CheckpointRecord, hash: blake3::Hash) -> Result<(), StoreError> {
    let hex_hash = hex::encode(hash.as_bytes());
    if !hex_hash.eq_ignore_ascii_case(&rec.blake3) {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("BLAKE3 is {hex_hash}, the index says {}", rec.blake3),
        });
    }
    Ok(())
}

/// Parses `<seq:020>.ckpt` or `<seq:020>.ckpt.tmp`.
fn parse_seq(name: &str) -> Option<u64> {
    let digits = name
        .strip_suffix(TMP_SUFFIX)
        .or_else(|| name.strip_suffix(SUFFIX))?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes the files (finished and temporary) of checkpoints with seq < `seq`. A missing directory is fine.
pub fn remove_before(store_dir: &Path, process_id: &str, seq: u64) -> Result<(), StoreError> {
    let dir = process_dir(store_dir, process_id);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        let name = entry.file_name();
        let Some(file_seq) = name.to_str().and_then(parse_seq) else {
            continue;
        };
        if file_seq < seq {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(&path, e)),
            }
        }
    }
    Ok(())
}

/// Total length of the files in a process's checkpoint directory (0 when it has none).
pub fn bytes_used(store_dir: &Path, process_id: &str) -> Result<u64, StoreError> {
    let dir = process_dir(store_dir, process_id);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io(&dir, e)),
    };
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
        match entry.metadata() {
            Ok(meta) if meta.is_file() => total = total.saturating_add(meta.len()),
            Ok(_) => {}
            // Removed by a concurrent prune between listing and stat.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(entry.path(), e)),
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ids_are_validated() {
        assert!(validate_process_id("abc_DEF-123").is_ok());
        assert!(validate_process_id(&"a".repeat(64)).is_ok());
        for bad in ["", "../etc", "a/b", "a.b", "a b", "é", "a\0b", ".."] {
            assert!(
                matches!(validate_process_id(bad), Err(StoreError::BadId { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            validate_process_id(&"a".repeat(65)),
            Err(StoreError::BadId { .. })
        ));
    }

    #[test]
    fn file_names_round_trip() {
        assert_eq!(relative_path("p", 7), "checkpoints/p/00000000000000000007.ckpt");
        assert_eq!(parse_seq("00000000000000000007.ckpt"), Some(7));
        assert_eq!(parse_seq("00000000000000000007.ckpt.tmp"), Some(7));
        assert_eq!(parse_seq(&format!("{:020}.ckpt", u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_seq("7.ckpt"), None);
        assert_eq!(parse_seq("0000000000000000000x.ckpt"), None);
        assert_eq!(parse_seq("00000000000000000007.other"), None);
    }
}
