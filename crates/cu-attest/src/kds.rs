//! Fetching VCEKs and certificate chains from AMD's Key Distribution Service (KDS), through a cache.
//!
//! The client is blocking (`ureq`); callers run it off the evaluation threads: [`KdsFetcher::spawn_prefetch`]
//! uses a dedicated thread, and a server calls [`KdsFetcher::vcek`] from its blocking pool. Fetched bytes are
//! never trusted for their transport: the verifier checks every certificate up to AMD's pinned root, so the
//! cache (memory plus an optional directory) cannot be poisoned into acceptance. The VCEK is fetched for the
//! report's `reported_tcb` (AMD's guidance), not `current_tcb`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::AttestError;
use crate::certs::Cert;
use crate::report::{Product, Tcb};

/// AMD's KDS.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";

const MAX_BODY: u64 = 1 << 20;

/// A certificate cache: in memory, and on disk when a directory is given.
#[derive(Debug, Default)]
pub struct CertCache {
    dir: Option<PathBuf>,
    mem: Mutex<HashMap<String, Vec<u8>>>,
}

impl CertCache {
    /// A cache in memory only.
    pub fn memory() -> CertCache {
        CertCache::default()
    }

    /// A cache backed by `dir` (created when first written).
    pub fn in_dir(dir: impl Into<PathBuf>) -> CertCache {
        CertCache {
            dir: Some(dir.into()),
            mem: Mutex::new(HashMap::new()),
        }
    }

    /// Looks `name` up in memory, then on disk.
    pub fn get(&self, name: &str) -> Option<Vec<u8>> {
        if let Ok(mem) = self.mem.lock()
            && let Some(v) = mem.get(name)
        {
            return Some(v.clone());
        }
        let bytes = std::fs::read(self.dir.as_ref()?.join(name)).ok()?;
        if let Ok(mut mem) = self.mem.lock() {
            mem.insert(name.to_string(), bytes.clone());
        }
        Some(bytes)
    }

    /// Stores `bytes` under `name` (disk errors are reported; the memory copy is kept regardless).
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<(), AttestError> {
        if let Ok(mut mem) = self.mem.lock() {
            mem.insert(name.to_string(), bytes.to_vec());
        }
        if let Some(dir) = &self.dir {
            std::fs::create_dir_all(dir)
                .and_then(|()| {
                    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
                    std::fs::write(&tmp, bytes)?;
                    std::fs::rename(&tmp, dir.join(name))
                })
                .map_err(|e| AttestError::Kds(format!("caching {name} in {}: {e}", dir.display())))?;
        }
        Ok(())
    }
}

/// The cache name of a VCEK.
pub fn vcek_cache_name(product: Product, hwid: &[u8], tcb: &Tcb) -> String {
    format!(
        "vcek-{}-{}-{:016x}.der",
        product.name(),
        hex::encode(hwid),
        tcb.encode(product)
    )
}

/// A KDS client with a cache.
pub struct KdsFetcher {
    base: String,
    agent: ureq::Agent,
    cache: CertCache,
}

impl std::fmt::Debug for KdsFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KdsFetcher")
            .field("base", &self.base)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl KdsFetcher {
    /// A fetcher for `base` (normally [`AMD_KDS_URL`]) with a per-request timeout.
    pub fn new(base: impl Into<String>, cache: CertCache, timeout: Duration) -> KdsFetcher {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        KdsFetcher {
            base: base.into().trim_end_matches('/').to_string(),
            agent,
            cache,
        }
    }

    /// The URL of the VCEK for a chip at a TCB.
    pub fn vcek_url(&self, product: Product, chip_id: &[u8], tcb: &Tcb) -> String {
        let hwid = &chip_id[..product.hwid_len().min(chip_id.len())];
        let mut q = String::new();
        if product.has_fmc() {
            q.push_str(&format!("fmcSPL={:02}&", tcb.fmc.unwrap_or(0)));
        }
        q.push_str(&format!(
            "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
        ));
        format!(
            "{}/vcek/v1/{}/{}?{q}",
            self.base,
            product.name(),
            hex::encode(hwid)
        )
    }

    fn get(&self, url: &str) -> Result<Vec<u8>, AttestError> {
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| AttestError::Kds(format!("GET {url}: {e}")))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(AttestError::Kds(format!("GET {url}: HTTP {status}")));
        }
        resp.body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| AttestError::Kds(format!("GET {url}: reading body: {e}")))
    }

    /// The DER VCEK for `chip_id` at `tcb` (the report's `reported_tcb`), from the cache or KDS. A fetched
    /// certificate must name the requested chip and TCB before it is cached.
    pub fn vcek(&self, product: Product, chip_id: &[u8], tcb: &Tcb) -> Result<Vec<u8>, AttestError> {
        if chip_id.iter().all(|&b| b == 0) {
            return Err(AttestError::Kds(
                "chip_id is masked (all zero): a VCEK cannot be looked up; use a VLEK".into(),
            ));
        }
        let hwid = &chip_id[..product.hwid_len().min(chip_id.len())];
        let name = vcek_cache_name(product, hwid, tcb);
        if let Some(der) = self.cache.get(&name) {
            return Ok(der);
        }
        let der = self.get(&self.vcek_url(product, chip_id, tcb))?;
        let info = Cert::from_der(&der)?.vek_info();
        if info.hwid.as_deref() != Some(hwid) {
            return Err(AttestError::Kds("KDS returned a VCEK for another chip".into()));
        }
        let mut issued = info
            .tcb()
            .ok_or_else(|| AttestError::Kds("KDS returned a VCEK without TCB extensions".into()))?;
        if !product.has_fmc() {
            issued.fmc = None;
        }
        let mut want = *tcb;
        if !product.has_fmc() {
            want.fmc = None;
        }
        if issued != want {
            return Err(AttestError::Kds("KDS returned a VCEK for another TCB".into()));
        }
        self.cache.put(&name, &der)?;
        Ok(der)
    }

    /// AMD's ASK + ARK chain (PEM, ASK first) for `product`, from the cache or KDS. Only useful to a verifier
    /// that wants to see what KDS serves: the pinned built-in roots are what trust rests on.
    pub fn cert_chain(&self, product: Product) -> Result<Vec<u8>, AttestError> {
        let name = format!("cert_chain-{}.pem", product.name());
        if let Some(pem) = self.cache.get(&name) {
            return Ok(pem);
        }
        let pem = self.get(&format!("{}/vcek/v1/{}/cert_chain", self.base, product.name()))?;
        let certs = Cert::load_all(&pem)?;
        if certs.len() != 2 {
            return Err(AttestError::Kds(format!(
                "cert_chain holds {} certificates, expected ASK and ARK",
                certs.len()
            )));
        }
        self.cache.put(&name, &pem)?;
        Ok(pem)
    }

    /// Fetches a VCEK on a dedicated thread (never an evaluation thread); join the handle for the result.
    pub fn spawn_prefetch(
        self: &Arc<Self>,
        product: Product,
        chip_id: Vec<u8>,
        tcb: Tcb,
    ) -> Result<std::thread::JoinHandle<Result<Vec<u8>, AttestError>>, AttestError> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("kds-fetch".into())
            .spawn(move || me.vcek(product, &chip_id, &tcb))
            .map_err(|e| AttestError::Kds(format!("spawning the fetch thread: {e}")))
    }
}
