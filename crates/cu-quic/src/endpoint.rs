//! The QUIC endpoint (quinn): accepting and opening connections, admitting peers, and running the
//! protocol's streams over the rules of [`crate::frame`] and [`crate::flow`] (`docs/quic.md`).
//!
//! Every request is one bidirectional stream whose first frame says what it is for. A bad frame or a
//! protocol violation ends that stream with an `Error` frame; the connection and its other streams go
//! on. A peer that is not admitted is closed with the refusal's reason before any request is served.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use cu_attest::NodeKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::watch;

use crate::auth::{Admission, PeerPolicy, Refusal};
use crate::flow::{Accept, FlowError, Publisher, Subscriber};
use crate::frame::{DEFAULT_MAX_FRAME, Frame, FrameDecoder, FrameError};
use crate::stats::QuicStats;
use crate::tls;

/// A boxed future, for the [`Service`] trait's methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An HTTP-like answer: a status and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Vec<u8>,
}

impl Reply {
    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply {
            status,
            body: serde_json::json!({ "error": message.to_string() })
                .to_string()
                .into_bytes(),
        }
    }
}

/// One slot a publisher sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotData {
    /// The nonce.
    pub nonce: u64,
    /// The edge cursor.
    pub cursor: String,
    /// The SU wire JSON node.
    pub node: Vec<u8>,
}

/// What a node serves over QUIC. The node adapter is [`crate::node::NodeService`].
pub trait Service: Send + Sync + 'static {
    /// Up to `max` scheduled slots of `process` from nonce `from`, in order; empty when none yet.
    fn slots(&self, process: String, from: u64, max: usize) -> BoxFuture<'_, Result<Vec<SlotData>, Reply>>;
    /// A value that changes whenever `process` may have new slots.
    fn bell(&self, process: &str) -> watch::Receiver<u64>;
    /// MU ingress of a signed data item (`POST /`).
    fn forward(&self, item: Vec<u8>) -> BoxFuture<'_, Reply>;
    /// `GET /result/:message?process-id=`.
    fn result(&self, process: String, message: String) -> BoxFuture<'_, Reply>;
    /// `POST /dry-run?process-id=`.
    fn dry_run(&self, process: String, message: Vec<u8>) -> BoxFuture<'_, Reply>;
}

/// Produces this node's SEV-SNP evidence for a verifier's nonce (evidence JSON), or says why not.
pub type EvidenceSource = Arc<dyn Fn(&[u8]) -> Result<Vec<u8>, String> + Send + Sync>;

/// A node's QUIC settings.
#[derive(Clone)]
pub struct QuicConfig {
    /// The node key: the certificate key.
    pub key: Arc<NodeKey>,
    /// Whom to admit.
    pub peers: PeerPolicy,
    /// Evidence for peers that ask (inside a TEE); `None`: such a peer is told there is none.
    pub evidence: Option<EvidenceSource>,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// A subscriber that leaves slots waiting without credit this long is dropped.
    pub stall_after: Duration,
    /// A connection with no traffic this long is closed (keep-alives are sent at a third of it).
    pub idle_timeout: Duration,
    /// Slots a subscription keeps granted.
    pub window: u32,
    /// An idle publisher repeats `CaughtUp` this often, so its subscriber knows it is current (a network
    /// CU then answers reads without asking the SU over HTTP).
    pub heartbeat: Duration,
}

impl std::fmt::Debug for QuicConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicConfig")
            .field("key", &self.key.keyid())
            .field("peers", &self.peers)
            .field("evidence", &self.evidence.is_some())
            .field("max_frame", &self.max_frame)
            .finish_non_exhaustive()
    }
}

impl QuicConfig {
    /// Defaults for a node key and peer policy.
    pub fn new(key: Arc<NodeKey>, peers: PeerPolicy) -> QuicConfig {
        QuicConfig {
            key,
            peers,
            evidence: None,
            max_frame: DEFAULT_MAX_FRAME,
            stall_after: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            window: 1024,
            heartbeat: Duration::from_millis(250),
        }
    }
}

/// What went wrong on a connection or stream.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// Setting up the endpoint.
    #[error("{0}")]
    Setup(String),
    /// Connecting (including a handshake the peer or this node refused).
    #[error("connecting to {addr}: {detail}")]
    Connect {
        /// The peer address.
        addr: SocketAddr,
        /// What failed.
        detail: String,
    },
    /// The peer was refused after the handshake.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A frame that is not one.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A protocol violation.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The peer ended the stream with an error frame.
    #[error("the peer answered {code}: {reason}")]
    Remote {
        /// Its status.
        code: u16,
        /// Its reason.
        reason: String,
    },
    /// A frame that makes no sense here.
    #[error("unexpected {0} frame")]
    Unexpected(&'static str),
    /// The stream or connection failed or ended.
    #[error("stream: {0}")]
    Stream(String),
}

fn stream_err(e: impl std::fmt::Display) -> QuicError {
    QuicError::Stream(e.to_string())
}

/// UDP socket buffers asked for, each way.
const SOCKET_BUFFER: usize = 4 << 20;

/// Per-endpoint state shared by its connections.
struct Shared {
    config: QuicConfig,
    stats: Arc<QuicStats>,
    service: Option<Arc<dyn Service>>,
}

/// A QUIC endpoint: a server for its [`Service`] (when it has one) and a client to other nodes.
pub struct QuicEndpoint {
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for QuicEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicEndpoint")
            .field("local", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

fn transport(config: &QuicConfig) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000)));
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(config.idle_timeout / 3));
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(1024));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(t)
}

impl QuicEndpoint {
    /// Binds a UDP socket at `addr` (port 0: any) and serves `service` there, when given; the endpoint
    /// also opens connections. Must run inside a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        config: QuicConfig,
        service: Option<Arc<dyn Service>>,
        stats: Arc<QuicStats>,
    ) -> Result<QuicEndpoint, QuicError> {
        let socket = std::net::UdpSocket::bind(addr)
            .map_err(|e| QuicError::Setup(format!("binding UDP {addr}: {e}")))?;
        // The kernel's default buffers (about 200 KiB) drop datagrams of a publisher's burst on
        // loopback, which quinn then retransmits; ask for more (the kernel may grant less).
        if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
            let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
            let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
        }
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = runtime
            .wrap_udp_socket(socket)
            .map_err(|e| QuicError::Setup(format!("UDP socket: {e}")))?;
        QuicEndpoint::with_socket(socket, config, service, stats)
    }

    /// As [`QuicEndpoint::bind`] over any datagram socket (tests use a lossy one).
    pub fn with_socket(
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        config: QuicConfig,
        service: Option<Arc<dyn Service>>,
        stats: Arc<QuicStats>,
    ) -> Result<QuicEndpoint, QuicError> {
        let (server_tls, client_tls) =
            tls::configs(&config.key, &config.peers, &stats).map_err(|e| QuicError::Setup(e.to_string()))?;
        let transport = transport(&config);
        let server = match &service {
            Some(_) => {
                let crypto =
                    QuicServerConfig::try_from(server_tls).map_err(|e| QuicError::Setup(e.to_string()))?;
                let mut s = quinn::ServerConfig::with_crypto(Arc::new(crypto));
                s.transport_config(transport.clone());
                Some(s)
            }
            None => None,
        };
        let crypto = QuicClientConfig::try_from(client_tls).map_err(|e| QuicError::Setup(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport);
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            server,
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| QuicError::Setup(format!("QUIC endpoint: {e}")))?;
        let shared = Arc::new(Shared {
            config,
            stats,
            service,
        });
        if shared.service.is_some() {
            let ep = endpoint.clone();
            let sh = shared.clone();
            tokio::spawn(async move {
                while let Some(incoming) = ep.accept().await {
                    let sh = sh.clone();
                    tokio::spawn(async move {
                        let remote = incoming.remote_address();
                        match incoming.await {
                            Ok(conn) => run_connection(sh, conn, true).await,
                            Err(e) => tracing::info!(%remote, error = %e, "QUIC handshake failed"),
                        }
                    });
                }
            });
        }
        Ok(QuicEndpoint {
            endpoint,
            client,
            shared,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, QuicError> {
        self.endpoint
            .local_addr()
            .map_err(|e| QuicError::Setup(e.to_string()))
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<QuicStats> {
        &self.shared.stats
    }

    /// Opens a connection to the node at `addr`, admitted both ways: this node admitted the peer, and
    /// the peer answered a `Ping` (it admitted this node).
    pub async fn connect(&self, addr: SocketAddr) -> Result<Peer, QuicError> {
        let connecting = self
            .endpoint
            .connect_with(self.client.clone(), addr, tls::SERVER_NAME)
            .map_err(|e| QuicError::Connect {
                addr,
                detail: e.to_string(),
            })?;
        let conn = connecting.await.map_err(|e| QuicError::Connect {
            addr,
            detail: e.to_string(),
        })?;
        let key = peer_key(&conn)?;
        let (admitted_tx, admitted) = watch::channel(None);
        // The peer may ask this side for evidence while this side checks it.
        tokio::spawn(serve_streams(self.shared.clone(), conn.clone(), admitted));
        match admit(&self.shared, &conn, &key).await {
            Ok(()) => {
                let _ = admitted_tx.send(Some(true));
                let peer = Peer {
                    conn,
                    key,
                    shared: self.shared.clone(),
                };
                // The handshake completes on this side before the peer has judged this node's
                // certificate (and evidence comes after it): wait for the peer's word.
                match tokio::time::timeout(Duration::from_secs(30), peer.request(Frame::Ping)).await {
                    Ok(Ok(reply)) if reply.status == 200 => {}
                    Ok(Ok(reply)) => {
                        return Err(QuicError::Connect {
                            addr,
                            detail: format!("the peer answered the admission check with {}", reply.status),
                        });
                    }
                    Ok(Err(e)) => {
                        let detail = match peer.conn.close_reason() {
                            Some(reason) => format!("the peer did not admit this node: {reason}"),
                            None => format!("the peer did not admit this node: {e}"),
                        };
                        return Err(QuicError::Connect { addr, detail });
                    }
                    Err(_) => {
                        return Err(QuicError::Connect {
                            addr,
                            detail: "the peer did not admit this node within 30 s".into(),
                        });
                    }
                }
                self.shared.stats.connections_opened.fetch_add(1, Relaxed);
                Ok(peer)
            }
            Err(refusal) => {
                let _ = admitted_tx.send(Some(false));
                conn.close(quinn::VarInt::from_u32(403), refusal.to_string().as_bytes());
                Err(refusal.into())
            }
        }
    }

    /// Stops accepting and closes every connection.
    pub fn close(&self) {
        self.endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    }
}

impl Drop for QuicEndpoint {
    /// The accept loop holds the quinn endpoint too: without this, a dropped endpoint would go on
    /// serving.
    fn drop(&mut self) {
        self.close();
    }
}

fn peer_key(conn: &Connection) -> Result<[u8; 32], Refusal> {
    let certs = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| Refusal::new("not_ed25519", "the peer presented no certificate"))?;
    let cert = certs
        .first()
        .ok_or_else(|| Refusal::new("not_ed25519", "the peer presented no certificate"))?;
    tls::certificate_key(cert)
}

/// Decides on a connected peer: allowed, or its evidence verified.
async fn admit(shared: &Shared, conn: &Connection, key: &[u8; 32]) -> Result<(), Refusal> {
    let out = match shared.config.peers.admit(key)? {
        Admission::Allowed => Ok(()),
        Admission::NeedsEvidence => attest(shared, conn, key).await,
    };
    if let Err(r) = &out {
        shared.stats.refused(r.reason);
        tracing::warn!(peer = %cu_attest::key::keyid_for(key), reason = r.reason, detail = %r.detail, "QUIC peer refused");
    }
    out
}

/// Asks the peer for evidence for a fresh nonce and verifies it.
async fn attest(shared: &Shared, conn: &Connection, key: &[u8; 32]) -> Result<(), Refusal> {
    let mut nonce = vec![0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| Refusal::new("no_evidence", format!("no randomness for a nonce: {e}")))?;
    let ask = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(stream_err)?;
        write_frames(
            &shared.stats,
            &mut send,
            &[Frame::AttestRequest { nonce: nonce.clone() }],
        )
        .await?;
        send.finish().map_err(stream_err)?;
        let mut dec = FrameDecoder::new(shared.config.max_frame);
        read_frame(&shared.stats, &mut recv, &mut dec).await
    };
    match tokio::time::timeout(Duration::from_secs(30), ask).await {
        Ok(Ok(Some(Frame::Evidence { json }))) => shared.config.peers.check_evidence(key, &json, &nonce),
        Ok(Ok(Some(Frame::Error { reason, .. }))) => Err(Refusal::new(
            "no_evidence",
            format!("the peer is not on the allow-list and has no evidence: {reason}"),
        )),
        Ok(Ok(other)) => Err(Refusal::new(
            "no_evidence",
            format!(
                "the peer answered an evidence request with {:?}",
                other.map(|f| f.kind())
            ),
        )),
        Ok(Err(e)) => Err(Refusal::new("no_evidence", format!("asking for evidence: {e}"))),
        Err(_) => Err(Refusal::new("no_evidence", "no evidence within 30 s")),
    }
}

/// Serves an accepted connection once the peer is admitted.
async fn run_connection(shared: Arc<Shared>, conn: Connection, accepted: bool) {
    let key = match peer_key(&conn) {
        Ok(k) => k,
        Err(r) => {
            shared.stats.refused(r.reason);
            conn.close(quinn::VarInt::from_u32(403), r.to_string().as_bytes());
            return;
        }
    };
    let (admitted_tx, admitted) = watch::channel(None);
    let streams = tokio::spawn(serve_streams(shared.clone(), conn.clone(), admitted));
    match admit(&shared, &conn, &key).await {
        Ok(()) => {
            let _ = admitted_tx.send(Some(true));
            if accepted {
                shared.stats.connections_accepted.fetch_add(1, Relaxed);
            }
            shared.stats.connections_open.fetch_add(1, Relaxed);
            let _ = streams.await;
            shared.stats.connections_open.fetch_sub(1, Relaxed);
        }
        Err(r) => {
            let _ = admitted_tx.send(Some(false));
            conn.close(quinn::VarInt::from_u32(403), r.to_string().as_bytes());
        }
    }
}

async fn serve_streams(shared: Arc<Shared>, conn: Connection, admitted: watch::Receiver<Option<bool>>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(serve_stream(shared.clone(), send, recv, admitted.clone()));
    }
}

async fn wait_admitted(mut admitted: watch::Receiver<Option<bool>>) -> bool {
    match admitted.wait_for(Option::is_some).await {
        Ok(v) => *v == Some(true),
        Err(_) => false,
    }
}

async fn serve_stream(
    shared: Arc<Shared>,
    mut send: SendStream,
    mut recv: RecvStream,
    admitted: watch::Receiver<Option<bool>>,
) {
    let mut dec = FrameDecoder::new(shared.config.max_frame);
    let first = match read_frame(&shared.stats, &mut recv, &mut dec).await {
        Ok(Some(f)) => f,
        Ok(None) => return,
        Err(e) => {
            end_with_error(&shared, &mut send, 400, &e).await;
            return;
        }
    };
    shared.stats.stream(first.kind());
    if let Frame::AttestRequest { nonce } = &first {
        let answer = match shared.config.evidence.clone() {
            // A firmware call, maybe a certificate fetch: off the async workers.
            Some(source) => {
                let nonce = nonce.clone();
                match tokio::task::spawn_blocking(move || source(&nonce)).await {
                    Ok(Ok(json)) => Frame::Evidence { json },
                    Ok(Err(e)) => Frame::Error { code: 503, reason: e },
                    Err(e) => Frame::Error {
                        code: 500,
                        reason: format!("the evidence task failed: {e}"),
                    },
                }
            }
            None => Frame::Error {
                code: 503,
                reason: "no TEE: this node has no evidence".into(),
            },
        };
        let _ = write_frames(&shared.stats, &mut send, &[answer]).await;
        let _ = send.finish();
        return;
    }
    if !wait_admitted(admitted).await {
        return;
    }
    if let Frame::Ping = first {
        let _ = write_frames(
            &shared.stats,
            &mut send,
            &[Frame::Reply {
                status: 200,
                body: b"{}".to_vec(),
            }],
        )
        .await;
        let _ = send.finish();
        return;
    }
    let Some(service) = shared.service.clone() else {
        end_with_error(&shared, &mut send, 404, "this endpoint serves no requests").await;
        return;
    };
    let reply = match first {
        Frame::Subscribe {
            process,
            from,
            credit,
        } => {
            if let Err(e) = publish(
                &shared,
                service.as_ref(),
                &process,
                from,
                credit,
                &mut send,
                &mut recv,
                &mut dec,
            )
            .await
            {
                tracing::info!(process = %process, error = %e, "QUIC subscription ended");
                end_with_error(&shared, &mut send, e.status(), &e).await;
            }
            return;
        }
        Frame::Forward { item } => service.forward(item).await,
        Frame::ResultRequest { process, message } => service.result(process, message).await,
        Frame::DryRunRequest { process, message } => service.dry_run(process, message).await,
        other => {
            end_with_error(
                &shared,
                &mut send,
                400,
                format!("a stream cannot begin with a {} frame", other.kind()),
            )
            .await;
            return;
        }
    };
    let _ = write_frames(
        &shared.stats,
        &mut send,
        &[Frame::Reply {
            status: reply.status,
            body: reply.body,
        }],
    )
    .await;
    let _ = send.finish();
}

impl QuicError {
    fn status(&self) -> u16 {
        match self {
            QuicError::Frame(_)
            | QuicError::Flow(FlowError::CreditOverflow(_))
            | QuicError::Unexpected(_) => 400,
            QuicError::Flow(FlowError::Stalled(_)) => 408,
            QuicError::Remote { code, .. } => *code,
            _ => 500,
        }
    }
}

async fn end_with_error(shared: &Shared, send: &mut SendStream, code: u16, reason: impl std::fmt::Display) {
    shared.stats.stream_errors.fetch_add(1, Relaxed);
    let _ = write_frames(
        &shared.stats,
        send,
        &[Frame::Error {
            code,
            reason: reason.to_string(),
        }],
    )
    .await;
    let _ = send.finish();
}

/// Most slots read from the service per round.
const PUBLISH_BATCH: u64 = 512;

/// Pushes `process`'s slots from `from` as they are scheduled, within the subscriber's credit.
#[allow(clippy::too_many_arguments)]
async fn publish(
    shared: &Shared,
    service: &dyn Service,
    process: &str,
    from: u64,
    credit: u32,
    send: &mut SendStream,
    recv: &mut RecvStream,
    dec: &mut FrameDecoder,
) -> Result<(), QuicError> {
    let stall_ms = u64::try_from(shared.config.stall_after.as_millis()).unwrap_or(u64::MAX);
    let mut flow = Publisher::new(from, credit, stall_ms);
    let mut bell = service.bell(process);
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut told_caught_up = false;
    let remote = |r: Reply| QuicError::Remote {
        code: r.status,
        reason: String::from_utf8_lossy(&r.body).into_owned(),
    };
    // The next batch, read from the service while the previous one is written. Only a non-empty one is
    // kept: an empty read may predate a slot whose bell is marked seen below.
    let mut prefetched: Option<Vec<SlotData>> = None;
    loop {
        bell.borrow_and_update();
        let mut pending = false;
        if flow.window() > 0 {
            let slots = match prefetched.take() {
                Some(slots) => slots,
                None => {
                    let max = flow.window().min(PUBLISH_BATCH) as usize;
                    service
                        .slots(process.to_owned(), flow.next_nonce(), max)
                        .await
                        .map_err(remote)?
                }
            };
            if !slots.is_empty() {
                let mut frames = Vec::with_capacity(slots.len());
                for s in slots {
                    flow.sent(s.nonce)?;
                    frames.push(Frame::Slot {
                        nonce: s.nonce,
                        cursor: s.cursor,
                        node: s.node,
                    });
                }
                let n = frames.len() as u64;
                let max = flow.window().min(PUBLISH_BATCH) as usize;
                if max > 0 {
                    let (written, next) = tokio::join!(
                        write_frames(&shared.stats, send, &frames),
                        service.slots(process.to_owned(), flow.next_nonce(), max)
                    );
                    written?;
                    prefetched = Some(next.map_err(remote)?).filter(|s| !s.is_empty());
                } else {
                    write_frames(&shared.stats, send, &frames).await?;
                }
                shared.stats.slots_published.fetch_add(n, Relaxed);
                told_caught_up = false;
                continue;
            }
            if !told_caught_up {
                write_frames(
                    &shared.stats,
                    send,
                    &[Frame::CaughtUp {
                        nonce: flow.next_nonce().checked_sub(1),
                    }],
                )
                .await?;
                told_caught_up = true;
            }
        } else {
            pending = !service
                .slots(process.to_owned(), flow.next_nonce(), 1)
                .await
                .map_err(remote)?
                .is_empty();
        }
        flow.poll(now_ms(), pending)?;
        let stall_in = flow
            .stall_deadline()
            .map(|d| Duration::from_millis(d.saturating_sub(now_ms())));
        tokio::select! {
            changed = bell.changed() => {
                if changed.is_err() {
                    return Err(QuicError::Remote { code: 503, reason: "the node is shutting down".into() });
                }
            }
            frame = read_frame(&shared.stats, recv, dec) => match frame? {
                Some(Frame::Credit { slots }) => flow.grant(slots)?,
                Some(other) => return Err(QuicError::Unexpected(other.kind())),
                None => return Ok(()),
            },
            () = tokio::time::sleep(stall_in.unwrap_or(Duration::from_secs(3600))), if stall_in.is_some() => {}
            // Idle and caught up: look again and say so again, so the subscriber knows it is current.
            () = tokio::time::sleep(shared.config.heartbeat), if told_caught_up => told_caught_up = false,
        }
    }
}

async fn write_frames(stats: &QuicStats, send: &mut SendStream, frames: &[Frame]) -> Result<(), QuicError> {
    let mut buf = Vec::new();
    for f in frames {
        buf.extend(f.encode()?);
    }
    send.write_all(&buf).await.map_err(stream_err)?;
    stats.sent(frames.len() as u64, buf.len());
    Ok(())
}

/// The next frame on `recv`, `None` at a clean end of the stream. Cancel-safe: bytes read are kept in
/// `dec`.
async fn read_frame(
    stats: &QuicStats,
    recv: &mut RecvStream,
    dec: &mut FrameDecoder,
) -> Result<Option<Frame>, QuicError> {
    loop {
        if let Some(f) = dec.next_frame()? {
            stats.frames_received.fetch_add(1, Relaxed);
            return Ok(Some(f));
        }
        match recv.read_chunk(64 * 1024, true).await.map_err(stream_err)? {
            Some(chunk) => {
                stats.bytes_received.fetch_add(chunk.bytes.len() as u64, Relaxed);
                dec.push(&chunk.bytes);
            }
            None => {
                dec.finish()?;
                return Ok(None);
            }
        }
    }
}

/// An admitted connection to another node.
#[derive(Clone)]
pub struct Peer {
    conn: Connection,
    key: [u8; 32],
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("remote", &self.conn.remote_address())
            .field("key", &cu_attest::key::keyid_for(&self.key))
            .finish()
    }
}

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The next slot.
    Slot(SlotData),
    /// Everything scheduled so far was sent.
    CaughtUp(Option<u64>),
}

impl Peer {
    /// The peer's node key.
    pub fn key(&self) -> [u8; 32] {
        self.key
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.conn.close_reason().is_some()
    }

    /// Subscribes to `process`'s schedule from nonce `from`.
    pub async fn subscribe(&self, process: &str, from: u64) -> Result<Subscription, QuicError> {
        let (mut send, recv) = self.conn.open_bi().await.map_err(stream_err)?;
        let mut flow = Subscriber::new(from, self.shared.config.window);
        let credit = flow.open();
        write_frames(
            &self.shared.stats,
            &mut send,
            &[Frame::Subscribe {
                process: process.to_owned(),
                from,
                credit,
            }],
        )
        .await?;
        Ok(Subscription {
            send,
            recv,
            dec: FrameDecoder::new(self.shared.config.max_frame),
            flow,
            shared: self.shared.clone(),
            ended: None,
        })
    }

    /// Sends one request frame and reads its reply.
    pub async fn request(&self, frame: Frame) -> Result<Reply, QuicError> {
        frame.check()?;
        let (mut send, mut recv) = self.conn.open_bi().await.map_err(stream_err)?;
        write_frames(&self.shared.stats, &mut send, &[frame]).await?;
        send.finish().map_err(stream_err)?;
        let mut dec = FrameDecoder::new(self.shared.config.max_frame);
        match read_frame(&self.shared.stats, &mut recv, &mut dec).await? {
            Some(Frame::Reply { status, body }) => Ok(Reply { status, body }),
            Some(Frame::Error { code, reason }) => Err(QuicError::Remote { code, reason }),
            Some(other) => Err(QuicError::Unexpected(other.kind())),
            None => Err(QuicError::Stream(
                "the peer ended the stream without a reply".into(),
            )),
        }
    }

    /// Forwards a signed data item to the peer's MU.
    pub async fn forward(&self, item: Vec<u8>) -> Result<Reply, QuicError> {
        self.request(Frame::Forward { item }).await
    }

    /// A result from the peer's CU.
    pub async fn result(&self, process: &str, message: &str) -> Result<Reply, QuicError> {
        self.request(Frame::ResultRequest {
            process: process.to_owned(),
            message: message.to_owned(),
        })
        .await
    }

    /// A dry-run on the peer's CU.
    pub async fn dry_run(&self, process: &str, message: Vec<u8>) -> Result<Reply, QuicError> {
        self.request(Frame::DryRunRequest {
            process: process.to_owned(),
            message,
        })
        .await
    }
}

/// A live schedule subscription.
pub struct Subscription {
    send: SendStream,
    recv: RecvStream,
    dec: FrameDecoder,
    flow: Subscriber,
    shared: Arc<Shared>,
    /// How the subscription ended, held back while the slots decoded before it are delivered.
    ended: Option<QuicError>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Waits for at least one event and returns it with whatever else is already received, up to
    /// `max`. A duplicate slot (before the subscription's `from`) is skipped; a gap, a slot without
    /// credit or a bad frame is an error and the subscription is over.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<Event>, QuicError> {
        if let Some(e) = self.ended.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        loop {
            while out.len() < max.max(1) {
                match self.next_buffered() {
                    Ok(Some(Some(event))) => out.push(event),
                    Ok(Some(None)) => {}
                    Ok(None) => break,
                    // The slots before the end are delivered first; the end comes on the next call.
                    Err(e) if !out.is_empty() => {
                        self.ended = Some(e);
                        return Ok(out);
                    }
                    Err(e) => return Err(e),
                }
            }
            if !out.is_empty() {
                if out.len() >= max || !self.pull_ready()? {
                    return Ok(out);
                }
                continue;
            }
            // Everything already received, in one go (a chunk is about one packet).
            let mut chunks: [bytes::Bytes; 64] = std::array::from_fn(|_| bytes::Bytes::new());
            match self.recv.read_chunks(&mut chunks).await.map_err(stream_err)? {
                Some(n) => {
                    for c in &chunks[..n] {
                        self.shared
                            .stats
                            .bytes_received
                            .fetch_add(c.len() as u64, Relaxed);
                        self.dec.push(c);
                    }
                }
                None => {
                    self.dec.finish()?;
                    return Err(QuicError::Stream("the publisher ended the subscription".into()));
                }
            }
        }
    }

    /// Takes whatever the stream has received without waiting; whether there was any. An end of the
    /// stream is left for the next waiting read.
    fn pull_ready(&mut self) -> Result<bool, QuicError> {
        let mut chunks: [bytes::Bytes; 64] = std::array::from_fn(|_| bytes::Bytes::new());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // `read_chunks` is cancel-safe: a pending poll that is dropped loses nothing.
        let polled = {
            let read = std::pin::pin!(self.recv.read_chunks(&mut chunks));
            read.poll(&mut cx)
        };
        match polled {
            std::task::Poll::Ready(Ok(Some(n))) if n > 0 => {
                for c in &chunks[..n] {
                    self.shared
                        .stats
                        .bytes_received
                        .fetch_add(c.len() as u64, Relaxed);
                    self.dec.push(c);
                }
                Ok(true)
            }
            std::task::Poll::Ready(Err(e)) => Err(stream_err(e)),
            _ => Ok(false),
        }
    }

    /// The next event already received: `None` when more bytes are needed, `Some(None)` for a
    /// skipped duplicate.
    fn next_buffered(&mut self) -> Result<Option<Option<Event>>, QuicError> {
        let Some(frame) = self.dec.next_frame()? else {
            return Ok(None);
        };
        self.shared.stats.frames_received.fetch_add(1, Relaxed);
        match frame {
            Frame::Slot { nonce, cursor, node } => Ok(Some(
                (self.flow.on_slot(nonce)? == Accept::Next).then_some(Event::Slot(SlotData {
                    nonce,
                    cursor,
                    node,
                })),
            )),
            Frame::CaughtUp { nonce } => Ok(Some(Some(Event::CaughtUp(nonce)))),
            Frame::Error { code, reason } => Err(QuicError::Remote { code, reason }),
            other => Err(QuicError::Unexpected(other.kind())),
        }
    }

    /// Marks slots through `nonce` as stored, and tops up the credit when due.
    pub async fn consumed(&mut self, nonce: u64) -> Result<(), QuicError> {
        self.flow.consumed(nonce);
        if let Some(slots) = self.flow.credit_due() {
            write_frames(&self.shared.stats, &mut self.send, &[Frame::Credit { slots }]).await?;
        }
        Ok(())
    }

    /// Where a new subscription should resume.
    pub fn resume_from(&self) -> u64 {
        self.flow.resume_from()
    }
}
