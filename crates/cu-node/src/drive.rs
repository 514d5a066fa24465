//! Where the node's processes read WeaveDrive data from (`cu_wasm::drive::DriveSource`).
//!
//! - [`LocalDrive`]: the node's own store. Data items uploaded to the node (`POST /tx`) and modules are
//!   readable as `/data/<id>`; attestations are uploaded items (`Type=Attestation`, `Message=<id>`,
//!   `Data-Protocol=ao`, or `Type=Available`, `ID=<id>`, `Data-Protocol=WeaveDrive`) signed by the
//!   process's `Scheduler` or an `Attestor`, in a block of the node's chain at or below the message's
//!   `Block-Height`, exactly what the extension's GraphQL query asks a gateway.
//! - [`GatewayDrive`]: a gateway (network mode), as the extension reads one: `GET {ARWEAVE_URL}/raw/<id>`
//!   into a content-addressed cache under the data directory (`weavedrive/<id>`, written whole and
//!   renamed into place, so a crash leaves no partial file), the extension's attestation query on
//!   `GRAPHQL_URL`, `GET /block/height/<h>` and `GET /tx/<id>`. A 404 is an answer ("no such data");
//!   anything else that fails (unreachable, 5xx after the client's retries) halts the evaluation, which
//!   is tried again later.
//! - [`NodeDrive`]: what a node's processes read: the store, and in network mode the gateway, which then
//!   decides every fact about the chain (attestations, blocks, headers).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cu_ans104::DataItem;
use cu_store::Store;
use cu_upstream::UpstreamError;
use cu_upstream::http::Fetcher;
use cu_wasm::drive::{AttestationQuery, DriveError, DriveSource};
use serde_json::{Value, json};

/// The byte-range rule the node's gateway serves `/raw/<id>` with (and WeaveDrive assumes of gateways).
pub use cu_wasm::drive::{Served, served};

fn store_error(e: impl std::fmt::Display) -> DriveError {
    DriveError(format!("the node's store: {e}"))
}

/// The node's clock (ms), for the chain's current height.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// WeaveDrive over the node's store.
pub struct LocalDrive {
    store: Store,
    clock: Clock,
    /// The data read last: a file is mostly read in many pieces, each of which would otherwise load
    /// the whole item from the store again.
    last: Mutex<Option<(String, Arc<[u8]>)>>,
}

impl LocalDrive {
    /// Reads from `store`; `clock` gives the chain's current height.
    pub fn new(store: Store, clock: Clock) -> LocalDrive {
        LocalDrive {
            store,
            clock,
            last: Mutex::new(None),
        }
    }

    /// The data of `id` in the store (an uploaded item's or a module's), `None` when it holds none.
    pub(crate) fn data(&self, id: &str) -> Result<Option<Arc<[u8]>>, DriveError> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached, data)) = last.as_ref()
            && cached == id
        {
            return Ok(Some(data.clone()));
        }
        let data: Option<Arc<[u8]>> = self.load(id)?.map(Into::into);
        if let Some(d) = &data {
            *last = Some((id.to_owned(), d.clone()));
        }
        Ok(data)
    }

    /// The data of `id` in the store, read now (not through the one-item cache).
    fn load(&self, id: &str) -> Result<Option<Vec<u8>>, DriveError> {
        match self.store.item_raw(id).map_err(store_error)? {
            Some(raw) => {
                let item = DataItem::from_vec(raw).map_err(store_error)?;
                Ok(Some(item.data().to_vec()))
            }
            None => Ok(self.store.module(id).map_err(store_error)?.map(|m| m.wasm)),
        }
    }
}

impl DriveSource for LocalDrive {
    fn data_size(&self, id: &str) -> Result<Option<u64>, DriveError> {
        if let Some(m) = self.store.item(id).map_err(store_error)? {
            return Ok(Some(m.data_size));
        }
        Ok(self
            .store
            .module(id)
            .map_err(store_error)?
            .map(|m| m.wasm.len() as u64))
    }

    fn read(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, DriveError> {
        let data = self
            .data(id)?
            .ok_or_else(|| DriveError(format!("{id} is no longer in the node's store")))?;
        Ok(slice(&data, offset, len))
    }

    fn read_whole(&self, id: &str) -> Result<Option<Vec<u8>>, DriveError> {
        // Not through `data`: a model file must not stay in the one-item cache after it is loaded.
        self.load(id)
    }

    fn attested(&self, q: &AttestationQuery) -> Result<bool, DriveError> {
        // The extension's query text with an unrendered height is a GraphQL syntax error: no answer.
        let Ok(max) = q.max_height.parse::<u64>() else {
            return Ok(false);
        };
        let Some((key, id)) = q.tags.get(1) else {
            return Ok(false);
        };
        let candidates = self
            .store
            .items_tagged(
                key,
                std::slice::from_ref(id),
                cu_store::items::MAX_ITEMS_PER_QUERY,
            )
            .map_err(store_error)?;
        Ok(candidates.iter().any(|m| {
            m.block_height <= max
                && q.owners.contains(&m.owner)
                && q.tags
                    .iter()
                    .all(|(n, v)| m.tags.iter().any(|t| &t.name == n && &t.value == v))
        }))
    }

    fn block(&self, height: &str) -> Result<Option<Vec<u8>>, DriveError> {
        let Ok(h) = height.parse::<u64>() else {
            return Ok(None);
        };
        let current = cu_scheduler::chain::block_height((self.clock)());
        Ok(crate::arweave::block_header(&self.store, h, current)
            .map_err(store_error)?
            .map(|b| b.to_string().into_bytes()))
    }

    fn tx(&self, id: &str) -> Result<Option<Value>, DriveError> {
        Ok(self
            .store
            .item(id)
            .map_err(store_error)?
            .map(|m| crate::arweave::tx_header(&m)))
    }
}

/// `len` bytes of `data` from `offset` (fewer at the end).
fn slice(data: &[u8], offset: u64, len: u64) -> Vec<u8> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
    let end = start
        .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
        .min(data.len());
    data[start..end].to_vec()
}

/// WeaveDrive over a gateway, with a content-addressed local cache of data.
pub struct GatewayDrive {
    fetcher: Fetcher,
    graphql_url: String,
    arweave_url: String,
    cache_dir: PathBuf,
}

/// Whether `id` can name a cache file (an Arweave id: base64url, at most 64 characters).
fn cacheable(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn upstream(e: UpstreamError) -> DriveError {
    DriveError(e.to_string())
}

impl GatewayDrive {
    /// Reads GraphQL at `graphql_url`, data under `arweave_url`, caching data in `cache_dir`.
    pub fn new(
        fetcher: Fetcher,
        graphql_url: String,
        arweave_url: String,
        cache_dir: PathBuf,
    ) -> GatewayDrive {
        GatewayDrive {
            fetcher,
            graphql_url,
            arweave_url: arweave_url.trim_end_matches('/').to_owned(),
            cache_dir,
        }
    }

    /// The cache file of `id`, downloaded first when missing; `None` when the gateway has no such data.
    fn cached(&self, id: &str) -> Result<Option<PathBuf>, DriveError> {
        if !cacheable(id) {
            return Ok(None);
        }
        let path = self.cache_dir.join(id);
        if path.exists() {
            return Ok(Some(path));
        }
        let url = format!("{}/raw/{id}", self.arweave_url);
        let bytes = match self.fetcher.get_bytes(&format!("WeaveDrive data of {id}"), &url) {
            Ok(b) => b,
            Err(UpstreamError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(upstream(e)),
        };
        let io =
            |e: std::io::Error| DriveError(format!("the WeaveDrive cache {}: {e}", self.cache_dir.display()));
        std::fs::create_dir_all(&self.cache_dir).map_err(io)?;
        let tmp = self
            .cache_dir
            .join(format!(".{id}.{:?}.part", std::thread::current().id()).replace(['(', ')'], ""));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        Ok(Some(path))
    }

    fn get_optional(&self, what: &str, path: &str) -> Result<Option<Vec<u8>>, DriveError> {
        match self
            .fetcher
            .get_bytes(what, &format!("{}{path}", self.arweave_url))
        {
            Ok(b) => Ok(Some(b)),
            Err(UpstreamError::NotFound(_)) => Ok(None),
            Err(e) => Err(upstream(e)),
        }
    }
}

impl DriveSource for GatewayDrive {
    fn data_size(&self, id: &str) -> Result<Option<u64>, DriveError> {
        match self.cached(id)? {
            Some(path) => std::fs::metadata(&path)
                .map(|m| Some(m.len()))
                .map_err(|e| DriveError(format!("{}: {e}", path.display()))),
            None => Ok(None),
        }
    }

    fn read(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, DriveError> {
        let path = self
            .cached(id)?
            .ok_or_else(|| DriveError(format!("the gateway no longer has data for {id}")))?;
        let io = |e: std::io::Error| DriveError(format!("{}: {e}", path.display()));
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut out = Vec::with_capacity(len.min(64 << 20) as usize);
        file.take(len).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    }

    fn attested(&self, q: &AttestationQuery) -> Result<bool, DriveError> {
        if q.max_height.parse::<u64>().is_err() {
            // `max: undefined` is a GraphQL syntax error: the extension finds no attestation.
            return Ok(false);
        }
        let answer: Value = self
            .fetcher
            .post_json(
                "WeaveDrive attestation",
                &self.graphql_url,
                &json!({"query": q.graphql(), "variables": null}),
            )
            .map_err(upstream)?;
        // `!!json?.data?.transactions?.edges?.length`, as the extension decides.
        Ok(answer["data"]["transactions"]["edges"]
            .as_array()
            .is_some_and(|e| !e.is_empty()))
    }

    fn block(&self, height: &str) -> Result<Option<Vec<u8>>, DriveError> {
        self.get_optional(
            &format!("block header {height}"),
            &format!("/block/height/{}", cu_upstream::http::encode_query(height)),
        )
    }

    fn tx(&self, id: &str) -> Result<Option<Value>, DriveError> {
        let Some(bytes) = self.get_optional(
            &format!("transaction header {id}"),
            &format!("/tx/{}", cu_upstream::http::encode_query(id)),
        )?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| DriveError(format!("the gateway's header of {id} is not JSON: {e}")))
    }
}

/// The node's WeaveDrive: its own store, and in network mode the gateway.
///
/// With a gateway, the network decides what a process observes, so that every CU computes the same:
/// attestations, blocks and transaction headers come from the gateway only. Data is read from the
/// node's store when it holds the id (an id names its bytes, so any copy is the same) and from the
/// gateway otherwise. Without a gateway (the embedded node), everything comes from the store.
pub struct NodeDrive {
    local: LocalDrive,
    gateway: Option<GatewayDrive>,
}

impl NodeDrive {
    /// The drive over `local`, and `gateway` in network mode.
    pub fn new(local: LocalDrive, gateway: Option<GatewayDrive>) -> NodeDrive {
        NodeDrive { local, gateway }
    }

    /// The source that decides facts about the chain.
    fn chain(&self) -> &dyn DriveSource {
        match &self.gateway {
            Some(g) => g,
            None => &self.local,
        }
    }
}

impl DriveSource for NodeDrive {
    fn data_size(&self, id: &str) -> Result<Option<u64>, DriveError> {
        match (self.local.data_size(id)?, &self.gateway) {
            (Some(size), _) => Ok(Some(size)),
            (None, Some(g)) => g.data_size(id),
            (None, None) => Ok(None),
        }
    }

    fn read(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, DriveError> {
        match (self.local.data(id)?, &self.gateway) {
            (Some(data), _) => Ok(slice(&data, offset, len)),
            (None, Some(g)) => g.read(id, offset, len),
            (None, None) => Err(DriveError(format!("{id} is no longer in the node's store"))),
        }
    }

    fn read_whole(&self, id: &str) -> Result<Option<Vec<u8>>, DriveError> {
        match (self.local.read_whole(id)?, &self.gateway) {
            (Some(data), _) => Ok(Some(data)),
            (None, Some(g)) => g.read_whole(id),
            (None, None) => Ok(None),
        }
    }

    fn attested(&self, q: &AttestationQuery) -> Result<bool, DriveError> {
        self.chain().attested(q)
    }

    fn block(&self, height: &str) -> Result<Option<Vec<u8>>, DriveError> {
        self.chain().block(height)
    }

    fn tx(&self, id: &str) -> Result<Option<Value>, DriveError> {
        self.chain().tx(id)
    }
}
