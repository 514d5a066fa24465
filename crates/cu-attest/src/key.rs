//! The node signing key: ed25519, created on first use in the data directory (file mode 0600), loaded after.
//!
//! The file `node-key.ed25519` holds the 32-byte secret seed and nothing else. A key file readable by group or
//! others is refused, as ssh does. Creation is race-free: the seed is written to a private temporary file and
//! hard-linked into place, so two processes starting at once end up with one key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use crate::AttestError;

/// File name of the node key inside the data directory.
pub const KEY_FILE: &str = "node-key.ed25519";

/// The node's ed25519 signing key.
pub struct NodeKey {
    signing: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("keyid", &self.keyid())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> AttestError {
    AttestError::Key(format!("{what} {}: {e}", path.display()))
}

impl NodeKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<NodeKey, AttestError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| AttestError::Key(format!("no randomness for a new key: {e}")))?;
        Ok(NodeKey::from_seed(seed))
    }

    /// The key file path inside `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(KEY_FILE)
    }

    /// Loads the key from `dir`, creating the directory and the key on first use.
    pub fn load_or_create(dir: &Path) -> Result<NodeKey, AttestError> {
        let path = NodeKey::path_in(dir);
        match NodeKey::load(&path) {
            Ok(key) => return Ok(key),
            Err(AttestError::KeyMissing(_)) => {}
            Err(e) => return Err(e),
        }
        create_private_dir(dir)?;
        let key = NodeKey::generate()?;
        let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        {
            let mut f = private_create(&tmp)?;
            f.write_all(key.signing.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err(&tmp, "writing", e))?;
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            // Someone else created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => NodeKey::load(&path),
            Err(e) => Err(io_err(&path, "installing", e)),
        }
    }

    /// Loads a key file; [`AttestError::KeyMissing`] when it does not exist.
    pub fn load(path: &Path) -> Result<NodeKey, AttestError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AttestError::KeyMissing(path.display().to_string()));
            }
            Err(e) => return Err(io_err(path, "reading", e)),
        };
        check_private(path, &meta)?;
        let bytes = fs::read(path).map_err(|e| io_err(path, "reading", e))?;
        let seed = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            AttestError::Key(format!(
                "{} holds {} bytes, a key file holds 32",
                path.display(),
                bytes.len()
            ))
        })?;
        Ok(NodeKey::from_seed(seed))
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key as a verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The key identifier used in `keyid` and published by `GET /`.
    pub fn keyid(&self) -> String {
        keyid_for(&self.public_key())
    }

    /// The key as an unencrypted PKCS #8 v1 document (RFC 8410), the form TLS libraries load: what the
    /// QUIC endpoint's certificate is made from. Secret material: never log or store it.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
        ];
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&self.signing.to_bytes());
        der
    }

    /// Signs `msg` (pure ed25519, RFC 8032).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }
}

/// The key identifier of a public key: unpadded base64url of the 32 raw bytes.
pub fn keyid_for(public_key: &[u8; 32]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public_key)
}

/// Parses a keyid back into a verifying key.
pub fn public_key_from_keyid(keyid: &str) -> Result<VerifyingKey, AttestError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(keyid)
        .map_err(|e| AttestError::Key(format!("keyid is not base64url: {e}")))?;
    let raw = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| AttestError::Key("keyid does not hold 32 bytes".into()))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| AttestError::Key(format!("bad public key: {e}")))
}

#[cfg(unix)]
fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), AttestError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(AttestError::Key(format!(
            "{} has mode {mode:o}; a key file must be 0600",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &fs::Metadata) -> Result<(), AttestError> {
    Ok(())
}

#[cfg(unix)]
fn private_create(path: &Path) -> Result<fs::File, AttestError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err(path, "creating", e))
}

#[cfg(not(unix))]
fn private_create(path: &Path) -> Result<fs::File, AttestError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| io_err(path, "creating", e))
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), AttestError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io_err(dir, "creating", e))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), AttestError> {
    fs::create_dir_all(dir).map_err(|e| io_err(dir, "creating", e))
}
