//! The node over QUIC: [`NodeService`] serves a [`Node`]'s schedule, MU and CU reads to peers, and
//! [`UpstreamSubscriptions`] makes a network CU (`--roles cu`) follow its remote processes' schedules
//! pushed by their SUs instead of polling for pages, when the SU offers QUIC in `GET /`.
//!
//! Pushed slots are stored through [`Node::apply_remote_slots`], the same checks as a page read over
//! HTTP (order, assignment tags, hash chain, hydration), and the subscription's credit is only topped up
//! once they are committed, so a CU that is killed resumes from its stored cursor: no gap, no duplicate.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cu_node::{Node, NodeError};
use cu_upstream::wire::SuEdge;
use serde_json::Value;
use tokio::sync::watch;

use crate::endpoint::{BoxFuture, Event, Peer, QuicEndpoint, QuicError, Reply, Service, SlotData};

fn node_reply(e: &NodeError) -> Reply {
    Reply::error(e.status(), e)
}

fn json_reply(status: u16, v: &Value) -> Reply {
    Reply {
        status,
        body: v.to_string().into_bytes(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Internal(format!("a blocking task failed: {e}")))?
}

/// A [`Node`] as a QUIC [`Service`]: replies carry the bodies the HTTP routes answer.
#[derive(Clone)]
pub struct NodeService {
    node: Node,
}

impl NodeService {
    /// Serves `node`.
    pub fn new(node: Node) -> NodeService {
        NodeService { node }
    }
}

impl Service for NodeService {
    fn slots(&self, process: String, from: u64, max: usize) -> BoxFuture<'_, Result<Vec<SlotData>, Reply>> {
        let node = self.node.clone();
        Box::pin(async move {
            let slots = blocking(move || node.su_slots(&process, from, max))
                .await
                .map_err(|e| node_reply(&e))?;
            Ok(slots
                .into_iter()
                .map(|(nonce, cursor, node)| SlotData { nonce, cursor, node })
                .collect())
        })
    }

    fn bell(&self, process: &str) -> watch::Receiver<u64> {
        self.node.schedule_bell(process)
    }

    fn forward(&self, item: Vec<u8>) -> BoxFuture<'_, Reply> {
        let node = self.node.clone();
        Box::pin(async move {
            match blocking(move || node.ingest(&item)).await {
                Ok(ingested) => json_reply(
                    202,
                    &serde_json::json!({ "message": "Processing DataItem", "id": ingested.id }),
                ),
                Err(e) => node_reply(&e),
            }
        })
    }

    fn result(&self, process: String, message: String) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            match self.node.result_with_slot(&process, &message).await {
                Ok((value, _)) => json_reply(200, &value),
                Err(e) => node_reply(&e),
            }
        })
    }

    fn dry_run(&self, process: String, message: Vec<u8>) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let msg: Value = match serde_json::from_slice(&message) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => return Reply::error(400, "the dry-run body must be a JSON object"),
                Err(e) => return Reply::error(400, format!("malformed JSON body: {e}")),
            };
            match self.node.dry_run_with_slot(&process, msg).await {
                Ok((value, _)) => json_reply(200, &value),
                Err(e) => node_reply(&e),
            }
        })
    }
}

/// How an SU offers QUIC in its `GET /`: `"quic": {"port": N, "keyid": "...", "alpn": "ao-cu/1"}`.
pub fn advertisement(port: u16, keyid: &str) -> Value {
    serde_json::json!({ "port": port, "keyid": keyid, "alpn": String::from_utf8_lossy(crate::tls::ALPN) })
}

/// The QUIC address an SU at `su_url` advertises, if it does: its `GET /`'s `quic.port` on the URL's
/// host. Blocking (one HTTP request).
pub fn discover(su_url: &str) -> Result<Option<SocketAddr>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("{}/", su_url.trim_end_matches('/'));
    let mut resp = agent.get(&url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let info: Value = serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let Some(quic) = info.get("quic") else {
        return Ok(None);
    };
    if quic.get("alpn").and_then(Value::as_str) != Some(&*String::from_utf8_lossy(crate::tls::ALPN)) {
        return Ok(None);
    }
    let port = quic
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| format!("GET {url}: quic.port is not a port"))?;
    let host = host_of(su_url).ok_or_else(|| format!("no host in {su_url}"))?;
    use std::net::ToSocketAddrs as _;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    Ok(Some(addr))
}

/// The host of an `http(s)://host[:port][/...]` URL (brackets stripped from IPv6 literals).
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// Slots applied per store transaction at most.
const APPLY_BATCH: usize = 512;

/// The QUIC peers of a network node: which SU URL offers QUIC where, and one connection per peer.
pub struct PeerBook {
    endpoint: Arc<QuicEndpoint>,
    /// QUIC address per SU URL (`None`: the SU does not offer QUIC).
    offers: Mutex<HashMap<String, Option<SocketAddr>>>,
    peers: tokio::sync::Mutex<HashMap<SocketAddr, Peer>>,
}

impl std::fmt::Debug for PeerBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerBook").finish_non_exhaustive()
    }
}

impl PeerBook {
    /// Peers reached through `endpoint`.
    pub fn new(endpoint: Arc<QuicEndpoint>) -> Arc<PeerBook> {
        Arc::new(PeerBook {
            endpoint,
            offers: Mutex::default(),
            peers: tokio::sync::Mutex::default(),
        })
    }

    /// The QUIC address the SU at `su_url` offers, asked once per URL (a failed discovery is asked
    /// again next time).
    pub async fn offer(&self, su_url: &str) -> Option<SocketAddr> {
        if let Some(known) = self.offers.lock().unwrap_or_else(|p| p.into_inner()).get(su_url) {
            return *known;
        }
        let url = su_url.to_owned();
        let found = match tokio::task::spawn_blocking(move || discover(&url)).await {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                tracing::info!(su = %su_url, error = %e, "QUIC discovery");
                return None;
            }
            Err(_) => return None,
        };
        self.offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(su_url.to_owned(), found);
        found
    }

    /// An open, admitted connection to `addr` (reused while it lives).
    pub async fn peer(&self, addr: SocketAddr) -> Result<Peer, QuicError> {
        let mut peers = self.peers.lock().await;
        if let Some(p) = peers.get(&addr)
            && !p.is_closed()
        {
            return Ok(p.clone());
        }
        let p = self.endpoint.connect(addr).await?;
        peers.insert(addr, p.clone());
        Ok(p)
    }
}

/// The MU's forwarding over QUIC ([`cu_node::ItemTransport`]): an item for a remote SU that offers QUIC
/// goes as a `Forward` request; otherwise (or when the connection cannot be made) over HTTP.
pub struct QuicItemTransport {
    book: Arc<PeerBook>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for QuicItemTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicItemTransport").finish_non_exhaustive()
    }
}

impl QuicItemTransport {
    /// Forwards through `book`'s peers, driving the requests on `runtime`.
    pub fn new(book: Arc<PeerBook>, runtime: tokio::runtime::Handle) -> QuicItemTransport {
        QuicItemTransport { book, runtime }
    }
}

/// How long the MU waits for a forward over QUIC before it posts over HTTP instead.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

impl cu_node::ItemTransport for QuicItemTransport {
    fn post_item(&self, su_url: &str, raw: &[u8]) -> Option<Result<Value, NodeError>> {
        // Driven on the runtime and waited for here (not `block_on`, which must not run on a thread
        // that is inside the runtime).
        let (tx, rx) = std::sync::mpsc::channel();
        let book = self.book.clone();
        let su = su_url.to_owned();
        let raw = raw.to_vec();
        self.runtime.spawn(async move {
            let _ = tx.send(forward(&book, &su, raw).await);
        });
        match rx.recv_timeout(FORWARD_TIMEOUT) {
            Ok(answer) => answer,
            Err(_) => {
                tracing::info!(su = %su_url, "forwarding over HTTP: no QUIC answer in time");
                None
            }
        }
    }
}

/// A `Forward` request to the SU at `su_url`: `None` when it cannot be made (HTTP is used).
async fn forward(book: &PeerBook, su_url: &str, raw: Vec<u8>) -> Option<Result<Value, NodeError>> {
    let addr = book.offer(su_url).await?;
    let peer = match book.peer(addr).await {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(su = %su_url, error = %e, "forwarding over HTTP: no QUIC connection");
            return None;
        }
    };
    let bad = |status: u16, body: &[u8]| {
        NodeError::BadGateway(format!(
            "the SU at {su_url} answered {status}: {}",
            String::from_utf8_lossy(body)
        ))
    };
    match peer.forward(raw).await {
        Ok(reply) if (200..300).contains(&reply.status) => {
            Some(serde_json::from_slice(&reply.body).map_err(|_| bad(reply.status, &reply.body)))
        }
        Ok(reply) => Some(Err(bad(reply.status, &reply.body))),
        Err(QuicError::Remote { code, reason }) => Some(Err(bad(code, reason.as_bytes()))),
        // The stream failed before an answer: HTTP tries again (the SU schedules an item once).
        Err(e) => {
            tracing::info!(su = %su_url, error = %e, "forwarding over HTTP: the QUIC request failed");
            None
        }
    }
}

/// A network CU following its remote processes' schedules over QUIC.
pub struct UpstreamSubscriptions {
    node: Node,
    book: Arc<PeerBook>,
    following: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for UpstreamSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSubscriptions").finish_non_exhaustive()
    }
}

impl UpstreamSubscriptions {
    /// Starts following every remote process of `node` whose SU offers QUIC, now and as new ones are
    /// read (checked every `scan`).
    pub fn start(node: Node, book: Arc<PeerBook>, scan: Duration) -> Arc<UpstreamSubscriptions> {
        let subs = Arc::new(UpstreamSubscriptions {
            node,
            book,
            following: Mutex::default(),
        });
        let me = Arc::downgrade(&subs);
        tokio::spawn(async move {
            loop {
                let Some(subs) = me.upgrade() else { break };
                if let Err(e) = subs.scan().await {
                    tracing::warn!(error = %e, "scanning remote processes for QUIC subscriptions");
                }
                drop(subs);
                tokio::time::sleep(scan).await;
            }
        });
        subs
    }

    /// Processes followed now.
    pub fn following(&self) -> Vec<String> {
        let f = self.following.lock().unwrap_or_else(|p| p.into_inner());
        f.iter().cloned().collect()
    }

    async fn scan(self: &Arc<Self>) -> Result<(), NodeError> {
        let node = self.node.clone();
        let pids = blocking(move || node.remote_processes()).await?;
        for pid in pids {
            if self
                .following
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&pid)
            {
                continue;
            }
            let node = self.node.clone();
            let p = pid.clone();
            let Some((su_url, _)) = blocking(move || node.remote_resume_point(&p)).await? else {
                continue;
            };
            let Some(addr) = self.book.offer(&su_url).await else {
                continue;
            };
            self.following
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(pid.clone());
            let me = self.clone();
            tokio::spawn(async move { me.follow(pid, su_url, addr).await });
        }
        Ok(())
    }

    async fn follow(self: Arc<Self>, pid: String, su_url: String, addr: SocketAddr) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let node = self.node.clone();
            let p = pid.clone();
            let from = match blocking(move || node.remote_resume_point(&p)).await {
                Ok(Some((url, from))) if url == su_url => from,
                _ => break,
            };
            match self.follow_once(&pid, addr, from).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::info!(process = %pid, %addr, error = %e, "QUIC subscription interrupted; resuming");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.following
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
    }

    /// One subscription until it ends; `Ok` only when the publisher ends it cleanly.
    async fn follow_once(&self, pid: &str, addr: SocketAddr, from: u64) -> Result<(), String> {
        let peer = self.book.peer(addr).await.map_err(|e| e.to_string())?;
        let mut sub = peer.subscribe(pid, from).await.map_err(|e| e.to_string())?;
        tracing::info!(process = %pid, %addr, from, "following the schedule over QUIC");
        loop {
            let events = sub.next_batch(APPLY_BATCH).await.map_err(|e| e.to_string())?;
            let mut edges = Vec::with_capacity(events.len());
            let mut last = None;
            let mut caught_up = false;
            for ev in events {
                match ev {
                    Event::Slot(s) => {
                        let node = serde_json::from_slice(&s.node)
                            .map_err(|e| format!("slot {}: not an SU wire node: {e}", s.nonce))?;
                        edges.push(SuEdge {
                            cursor: s.cursor,
                            node,
                        });
                        last = Some(s.nonce);
                    }
                    Event::CaughtUp(_) => caught_up = true,
                }
            }
            if let Some(last) = last {
                let node = self.node.clone();
                let p = pid.to_owned();
                let n = blocking(move || node.apply_remote_slots(&p, &edges))
                    .await
                    .map_err(|e| e.to_string())?;
                self.book
                    .endpoint
                    .stats()
                    .slots_received
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                sub.consumed(last).await.map_err(|e| e.to_string())?;
            }
            if caught_up {
                self.node.mark_remote_caught_up(pid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_su_urls() {
        assert_eq!(host_of("http://127.0.0.1:8080").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of("https://su.example/x").as_deref(), Some("su.example"));
        assert_eq!(host_of("http://[::1]:9/").as_deref(), Some("::1"));
        assert_eq!(host_of("http://").as_deref(), None);
    }
}
