//! Process checkpoints on Arweave, both ways, in the reference CU's format (`reference/ao-cu.md`
//! §4.3–4.4, `servers/cu/src/effects/ao-process.js`).
//!
//! - **Upload** ([`CheckpointUploads`], the reference's `DISABLE_PROCESS_CHECKPOINT_CREATION=false`): a
//!   background thread looks for processes that evaluated at least `every_messages` messages since their
//!   last upload, at most one upload per process per `throttle` (`PROCESS_CHECKPOINT_CREATION_THROTTLE`).
//!   The state is the process's memory at its newest evaluated *scheduled* message (a cron or boot entry
//!   waits for the next one); as the reference does, it first asks the gateway whether this node already
//!   uploaded a checkpoint at that nonce and timestamp. The data item carries the reference's tags in its
//!   order (`Data-Protocol`, `Variant`, `Type: Checkpoint`, `Module`, `Process`, `Nonce`, `Timestamp`,
//!   `Block-Height`, `Content-Type`, `SHA-256` of the uncompressed memory, `Content-Encoding: gzip`,
//!   `Unit-Identifier`, `Ordinate`, then `Assignment`, `Hash-Chain` and `Epoch` when known); its data is the
//!   memory gzipped at the best compression; it is signed with the node wallet and posted to
//!   `{UPLOADER_URL}/tx/arweave`. The reference triggers uploads on accumulated gas (3e14) or eval time
//!   (15 min), which unmetered aos 2 processes practically never reach; a message count is what an
//!   operator can reason about, and the throttle bounds the cost either way.
//! - **Cold start** (network mode, [`CheckpointColdStart`]): before a remote process is read from the
//!   start of its schedule, the gateway (`GRAPHQL_URL`, twice, then `CHECKPOINT_GRAPHQL_URL`) is asked
//!   for its checkpoints by the trusted owners (`PROCESS_CHECKPOINT_TRUSTED_OWNERS`; this node's own
//!   address when none are set), with the reference's query. Ignored ids
//!   (`IGNORE_ARWEAVE_CHECKPOINTS`) and processes (`PROCESS_IGNORE_ARWEAVE_CHECKPOINTS`) are left out. With
//!   at most 15 candidates the reference takes the highest `Nonce`; so does ao-cu, and it also checks
//!   what the reference does not: the `Module` tag names the process's module, the encoding is gzip or
//!   none, the memory is whole wasm pages within the memory limit, and it matches its `SHA-256` tag. A
//!   candidate that fails is skipped for the next highest. With more than 15 candidates the reference
//!   replays windows of checkpoints against each other; ao-cu does not (yet), and computes the process
//!   from its schedule instead, which is always correct. The memory is adopted as the process's first
//!   local checkpoint (`cu_engine::Engine::adopt_memory`), the schedule is read after the checkpoint's
//!   nonce, and its hash chain continues from the checkpoint's `Assignment` and `Hash-Chain` tags.
//!
//! A memory-only checkpoint resumes on a freshly booted instance, as in the reference: the glue state
//! (the fake clock, the file system) is the booted one, not the uploader's.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cu_store::{Adopted, ProcessRecord};
use cu_upstream::gateway::{Gateway, GqlTx};
use cu_upstream::http::{Fetcher, HttpOptions};
use cu_upstream::wire::tag;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::NodeError;
use crate::node::Node;

/// Candidates up to which the reference takes the newest checkpoint without replaying
/// (`CHECKPONT_VALIDATION_STEPS + CHECKPONT_VALIDATION_RETRIES`).
pub const UNVALIDATED_CANDIDATES: usize = 15;
/// Checkpoints asked for per process (the reference's `limit`).
pub const QUERY_LIMIT: usize = 50;

/// Uploading this node's checkpoints to Arweave.
#[derive(Debug, Clone)]
pub struct CheckpointUploads {
    /// The bundler (`UPLOADER_URL`): items are posted to `{uploader_url}/tx/arweave`.
    pub uploader_url: String,
    /// The GraphQL endpoint asked for an existing checkpoint before uploading (`GRAPHQL_URL`).
    pub graphql_url: String,
    /// At most one upload per process per this long (`PROCESS_CHECKPOINT_CREATION_THROTTLE`).
    pub throttle: Duration,
    /// A process is due after this many evaluated messages since its last upload.
    pub every_messages: u64,
    /// How often the uploader looks for due processes.
    pub poll: Duration,
    /// Timeouts and retries of the uploader and gateway requests.
    pub http: HttpOptions,
}

/// Cold-starting remote processes from Arweave checkpoints (network mode).
#[derive(Debug, Clone, Default)]
pub struct CheckpointColdStart {
    /// Owners whose checkpoints are trusted; empty: this node's own address (as the reference).
    pub trusted_owners: Vec<String>,
    /// Asked after the gateway's GraphQL failed twice (`CHECKPOINT_GRAPHQL_URL`).
    pub checkpoint_graphql_url: Option<String>,
    /// Checkpoint ids never used (`IGNORE_ARWEAVE_CHECKPOINTS`).
    pub ignore_checkpoints: Vec<String>,
    /// Processes never cold-started from a checkpoint (`PROCESS_IGNORE_ARWEAVE_CHECKPOINTS`).
    pub ignore_processes: Vec<String>,
}

/// Counters (on `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct CheckpointStats {
    uploaded: AtomicU64,
    upload_failures: AtomicU64,
    already_uploaded: AtomicU64,
    adopted: AtomicU64,
    rejected: AtomicU64,
}

/// The uploader's state.
pub(crate) struct Uploader {
    config: CheckpointUploads,
    fetcher: Fetcher,
    gateway: Gateway,
    /// Per boot, as the reference's `CU_IDENTIFIER`.
    unit_id: String,
    /// Per process: the log position last uploaded and when.
    last: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Uploader {
    pub(crate) fn new(config: CheckpointUploads) -> Uploader {
        let fetcher = Fetcher::new(config.http.clone());
        let gateway = Gateway::new(fetcher.clone(), config.graphql_url.clone(), String::new());
        Uploader {
            fetcher,
            gateway,
            unit_id: unit_identifier(),
            last: Mutex::default(),
            config,
        }
    }
}

/// A random version-4 UUID (identifies this boot of the node on its checkpoints; never seen by a module).
fn unit_identifier() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn gzip_best(data: &[u8]) -> Result<Vec<u8>, NodeError> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 8), flate2::Compression::best());
    enc.write_all(data)
        .and_then(|()| enc.finish())
        .map_err(|e| NodeError::Internal(format!("compressing a checkpoint: {e}")))
}

/// Gunzips at most `cap` bytes; more is an error (a compression bomb is refused, not allocated).
fn gunzip_capped(data: &[u8], cap: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(cap.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("not valid gzip: {e}"))?;
    if out.len() as u64 > cap {
        return Err(format!("it decompresses to more than {cap} bytes"));
    }
    Ok(out)
}

/// What a checkpoint says about itself: the tags the reference resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckpointTags {
    pub(crate) nonce: u64,
    pub(crate) timestamp: u64,
    pub(crate) module: String,
    pub(crate) assignment: Option<String>,
    pub(crate) hash_chain: Option<String>,
    pub(crate) encoding: Option<String>,
    pub(crate) sha256: Option<String>,
}

impl CheckpointTags {
    fn of(tx: &GqlTx) -> Result<CheckpointTags, String> {
        let num = |name: &str| {
            tag(&tx.tags, name)
                .ok_or_else(|| format!("no {name} tag"))?
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("its {name} tag is not a number"))
        };
        let text = |name: &str| {
            tag(&tx.tags, name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        Ok(CheckpointTags {
            nonce: num("Nonce")?,
            timestamp: num("Timestamp")?,
            module: text("Module").ok_or("no Module tag")?,
            assignment: text("Assignment"),
            hash_chain: text("Hash-Chain"),
            encoding: text("Content-Encoding"),
            sha256: text("SHA-256"),
        })
    }
}

#[derive(Deserialize)]
struct UploadAnswer {
    id: String,
}

impl Node {
    /// Starts the checkpoint uploader thread (when uploads are configured).
    pub(crate) fn start_checkpoint_uploads(&self) -> Result<(), NodeError> {
        let Some(poll) = self.inner.uploader.as_ref().map(|u| u.config.poll) else {
            return Ok(());
        };
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("cu-node-checkpoints".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(poll);
                    let Some(inner) = weak.upgrade() else { break };
                    let node = Node { inner };
                    if let Err(e) = node.upload_due_checkpoints() {
                        tracing::warn!(error = %e, "checkpoint uploads");
                    }
                }
            })
            .map_err(|e| NodeError::Internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(())
    }

    /// One round of the uploader: every due process is checkpointed. Failures are counted and logged;
    /// the next round tries again.
    pub fn upload_due_checkpoints(&self) -> Result<(), NodeError> {
        let Some(up) = &self.inner.uploader else {
            return Ok(());
        };
        for pid in self.inner.store.process_ids()? {
            let evaluated = self.inner.store.last_result_pos(&pid)?;
            let last = up
                .last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&pid)
                .copied();
            let due = match last {
                None => evaluated >= up.config.every_messages.max(1),
                Some((pos, at)) => {
                    evaluated >= pos.saturating_add(up.config.every_messages.max(1))
                        && at.elapsed() >= up.config.throttle
                }
            };
            if !due {
                continue;
            }
            match self.upload_checkpoint(up, &pid) {
                Ok(Some(pos)) => {
                    up.last
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(pid, (pos, Instant::now()));
                }
                Ok(None) => {}
                Err(e) => {
                    self.inner.checkpoint_stats.upload_failures.fetch_add(1, Relaxed);
                    tracing::warn!(process = %pid, error = %e, "checkpoint upload");
                }
            }
        }
        Ok(())
    }

    /// Uploads a checkpoint of `pid` at its newest evaluated state; the log position it holds, or
    /// `None` when that state ends on a message with no nonce (tried again later).
    fn upload_checkpoint(&self, up: &Uploader, pid: &str) -> Result<Option<u64>, NodeError> {
        let record = self
            .inner
            .store
            .process(pid)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {pid} not found")))?;
        let (pos, memory) = self
            .inner
            .engine
            .state(pid)?
            .blocking_recv()
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        let Some(entry) = self.inner.store.log_range(pid, pos.max(1), 1)?.into_iter().next() else {
            return Ok(None);
        };
        let Some(nonce) = entry.nonce.filter(|_| entry.pos == pos) else {
            return Ok(None);
        };
        let (nonce_s, timestamp_s) = (nonce.to_string(), entry.timestamp.to_string());
        if let Some(existing) =
            up.gateway
                .existing_checkpoint(&self.inner.address, pid, &nonce_s, &timestamp_s)?
        {
            tracing::info!(process = pid, checkpoint = %existing.id, nonce, "checkpoint already uploaded");
            self.inner.checkpoint_stats.already_uploaded.fetch_add(1, Relaxed);
            return Ok(Some(pos));
        }
        // The assignment and hash chain of that slot: this node's own schedule, or the upstream
        // cursor of a remote process (when it stands at that slot).
        let reads = self.inner.scheduler.reads();
        let (assignment, hash_chain, epoch) = match reads.by_nonce(pid, nonce)? {
            Some(r) => (Some(r.assignment_id), Some(r.hash_chain), Some(r.epoch)),
            None => match reads.upstream_cursor(pid)? {
                Some(c) if c.nonce == nonce => (Some(c.assignment_id), c.hash_chain, None),
                _ => (None, None, None),
            },
        };
        let sha = hex::encode(Sha256::digest(&memory));
        let data = gzip_best(&memory)?;
        let mut tags: Vec<(String, String)> = [
            ("Data-Protocol", "ao".to_owned()),
            ("Variant", "ao.TN.1".to_owned()),
            ("Type", "Checkpoint".to_owned()),
            ("Module", record.module_id.trim().to_owned()),
            ("Process", pid.to_owned()),
            ("Nonce", nonce_s.clone()),
            ("Timestamp", timestamp_s),
            ("Block-Height", entry.block_height.to_string()),
            ("Content-Type", "application/octet-stream".to_owned()),
            ("SHA-256", sha),
            ("Content-Encoding", "gzip".to_owned()),
            ("Unit-Identifier", up.unit_id.clone()),
            ("Ordinate", nonce_s),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
        if let Some(a) = assignment.filter(|a| !a.is_empty()) {
            tags.push(("Assignment".into(), a));
        }
        if let Some(h) = hash_chain.filter(|h| !h.is_empty()) {
            tags.push(("Hash-Chain".into(), h));
        }
        if let Some(e) = epoch.filter(|e| *e > 0) {
            tags.push(("Epoch".into(), e.to_string()));
        }
        let item = self
            .inner
            .wallet
            .sign_data_item(&data, &tags, None, None)
            .map_err(|e| NodeError::Internal(format!("signing a checkpoint: {e}")))?;
        let url = format!("{}/tx/arweave", up.config.uploader_url.trim_end_matches('/'));
        let answer: UploadAnswer = up.fetcher.post_bytes(
            &format!("checkpoint upload of {pid}"),
            &url,
            "application/octet-stream",
            &item,
        )?;
        self.inner.checkpoint_stats.uploaded.fetch_add(1, Relaxed);
        tracing::info!(process = pid, checkpoint = %answer.id, nonce, bytes = item.len(), "checkpoint uploaded");
        Ok(Some(pos))
    }

    /// Checkpoint counters for `/metrics`.
    pub(crate) fn checkpoint_stats(&self) -> Vec<(&'static str, &'static str, u64)> {
        let s = &self.inner.checkpoint_stats;
        vec![
            (
                "arweave_checkpoints_uploaded_total",
                "Checkpoints uploaded to the bundler.",
                s.uploaded.load(Relaxed),
            ),
            (
                "arweave_checkpoint_upload_failures_total",
                "Checkpoint uploads that failed (retried on a later round).",
                s.upload_failures.load(Relaxed),
            ),
            (
                "arweave_checkpoints_already_uploaded_total",
                "Checkpoints not uploaded because the gateway already had them.",
                s.already_uploaded.load(Relaxed),
            ),
            (
                "arweave_checkpoints_adopted_total",
                "Remote processes cold-started from an Arweave checkpoint.",
                s.adopted.load(Relaxed),
            ),
            (
                "arweave_checkpoints_rejected_total",
                "Checkpoint candidates refused at cold start (module, encoding, size or SHA-256).",
                s.rejected.load(Relaxed),
            ),
        ]
    }

    /// Network mode, on a remote process's first sync: finds the newest usable checkpoint of `record`'s
    /// process, adopts its memory (written as the process's first local checkpoint) and answers where
    /// its schedule resumes. `None`: none usable (or too many to take unvalidated); the process is
    /// computed from its schedule.
    pub(crate) fn cold_start_from_checkpoint(
        &self,
        gateway: &Gateway,
        config: &CheckpointColdStart,
        record: &ProcessRecord,
    ) -> Result<Option<(Adopted, CheckpointTags)>, NodeError> {
        let pid = record.id.as_str();
        if config.ignore_processes.iter().any(|p| p == pid) {
            return Ok(None);
        }
        let owners = if config.trusted_owners.is_empty() {
            vec![self.inner.address.clone()]
        } else {
            config.trusted_owners.clone()
        };
        let query = |g: &Gateway| g.process_checkpoints(pid, &owners, QUERY_LIMIT);
        let found = query(gateway).or_else(|_| query(gateway));
        let found = match (found, &config.checkpoint_graphql_url) {
            (Err(_), Some(url)) => query(&gateway.with_graphql(url.clone())),
            (found, _) => found,
        };
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                // Checkpoints are an optimisation: the schedule is always there to compute from.
                tracing::warn!(process = pid, error = %e, "querying checkpoints; computing from the schedule");
                return Ok(None);
            }
        };
        let mut candidates: Vec<(GqlTx, CheckpointTags)> = found
            .into_iter()
            .filter(|tx| !config.ignore_checkpoints.contains(&tx.id))
            .filter(|tx| {
                owners
                    .iter()
                    .any(|o| tx.owner.address.as_deref() == Some(o.as_str()))
            })
            .filter_map(|tx| match CheckpointTags::of(&tx) {
                Ok(t) => Some((tx, t)),
                Err(why) => {
                    tracing::warn!(process = pid, checkpoint = %tx.id, why, "checkpoint tags unusable");
                    None
                }
            })
            .collect();
        if candidates.len() > UNVALIDATED_CANDIDATES {
            tracing::info!(
                process = pid,
                candidates = candidates.len(),
                "more checkpoints than are taken without replay validation; computing from the schedule"
            );
            return Ok(None);
        }
        candidates.sort_by_key(|c| std::cmp::Reverse(c.1.nonce));
        for (tx, tags) in candidates {
            match self.load_checkpoint_memory(gateway, record, &tx, &tags) {
                Ok(memory) => {
                    self.inner.engine.adopt_memory(record, &memory)?;
                    self.inner.checkpoint_stats.adopted.fetch_add(1, Relaxed);
                    tracing::info!(process = pid, checkpoint = %tx.id, nonce = tags.nonce, "cold start from a checkpoint");
                    let adopted = Adopted {
                        process_id: pid.to_owned(),
                        checkpoint_id: tx.id.clone(),
                        nonce: tags.nonce,
                        timestamp: tags.timestamp,
                    };
                    return Ok(Some((adopted, tags)));
                }
                Err(why) => {
                    self.inner.checkpoint_stats.rejected.fetch_add(1, Relaxed);
                    tracing::warn!(process = pid, checkpoint = %tx.id, why, "checkpoint refused");
                }
            }
        }
        Ok(None)
    }

    /// Downloads and checks one candidate: its memory, or why it is refused.
    fn load_checkpoint_memory(
        &self,
        gateway: &Gateway,
        record: &ProcessRecord,
        tx: &GqlTx,
        tags: &CheckpointTags,
    ) -> Result<Vec<u8>, String> {
        if tags.module != record.module_id {
            return Err(format!(
                "it is of module {}, the process runs {}",
                tags.module, record.module_id
            ));
        }
        let cap = self.inner.limits.max_memory;
        let raw = gateway.raw(&tx.id).map_err(|e| e.to_string())?;
        let memory = match tags.encoding.as_deref() {
            Some("gzip") => gunzip_capped(&raw, cap)?,
            None => raw,
            Some(other) => return Err(format!("its Content-Encoding {other:?} is not supported")),
        };
        if memory.is_empty() || !(memory.len() as u64).is_multiple_of(65536) || memory.len() as u64 > cap {
            return Err(format!(
                "its memory of {} bytes is not a whole number of wasm pages within {cap} bytes",
                memory.len()
            ));
        }
        if let Some(expected) = &tags.sha256 {
            let actual = hex::encode(Sha256::digest(&memory));
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(format!(
                    "its memory hashes to {actual}, its SHA-256 tag says {expected}"
                ));
            }
        }
        Ok(memory)
    }
}

/// The upstream cursor a schedule resumes from after a checkpoint.
pub(crate) fn resume_cursor(
    su_url: &str,
    pid: &str,
    tags: &CheckpointTags,
) -> cu_store::schedule::UpstreamCursor {
    cu_store::schedule::UpstreamCursor {
        process_id: pid.to_owned(),
        su_url: su_url.to_owned(),
        // The SU's `from` is exclusive: slots at the checkpoint's own timestamp come again and those up
        // to its nonce are skipped as already included.
        cursor: tags.timestamp.saturating_sub(1).to_string(),
        nonce: tags.nonce,
        assignment_id: tags.assignment.clone().unwrap_or_default(),
        hash_chain: tags.hash_chain.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn gunzip_refuses_what_decompresses_past_the_cap() {
        let memory = vec![0u8; 1 << 20];
        let gz = gzip_best(&memory).unwrap();
        assert!(gz.len() < 10_000);
        assert_eq!(gunzip_capped(&gz, 1 << 20).unwrap(), memory);
        assert!(
            gunzip_capped(&gz, (1 << 20) - 1)
                .unwrap_err()
                .contains("more than")
        );
        assert!(gunzip_capped(b"not gzip", 1 << 20).is_err());
    }

    #[test]
    fn unit_identifiers_are_version_4_uuids() {
        let id = unit_identifier();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, unit_identifier());
    }
}
