//! The QUIC endpoint end to end on 127.0.0.1: subscriptions with credit, resumption, pipelined requests,
//! refusals, stalled subscribers, hostile streams, and a lossy, reordering network.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use cu_quic::frame::DEFAULT_MAX_FRAME;
use cu_quic::{
    Event, Frame, FrameDecoder, Peer, QuicConfig, QuicEndpoint, QuicError, QuicStats, Service, Subscription,
};
use quinn::udp::{EcnCodepoint, RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(20);

/// A tiny deterministic PRNG (xorshift64*).
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// What a subscription delivered, checked as it arrives: slots in order from `from` with no gap or
/// duplicate, and every `CaughtUp` naming the last slot before it.
struct Received {
    nonces: Vec<u64>,
    next: u64,
    caught_up: Vec<(usize, Option<u64>)>,
}

impl Received {
    fn from(next: u64) -> Received {
        Received {
            nonces: Vec::new(),
            next,
            caught_up: Vec::new(),
        }
    }

    /// Takes one batch; returns the last nonce in it.
    fn take(&mut self, batch: Vec<Event>) -> Option<u64> {
        assert!(!batch.is_empty(), "next_batch returned no events");
        let mut last = None;
        for event in batch {
            match event {
                Event::Slot(slot) => {
                    assert_eq!(
                        slot.nonce,
                        self.next,
                        "slot out of order (after {:?})",
                        self.nonces.last()
                    );
                    assert_slot(&slot);
                    self.nonces.push(slot.nonce);
                    self.next += 1;
                    last = Some(slot.nonce);
                }
                Event::CaughtUp(n) => {
                    assert_eq!(n, self.next.checked_sub(1), "CaughtUp names the last slot sent");
                    self.caught_up.push((self.nonces.len(), n));
                }
            }
        }
        last
    }
}

/// Reads until `total` slots have arrived and then a `CaughtUp` for the last of them, consuming each batch.
async fn drain(sub: &mut Subscription, got: &mut Received, total: u64) {
    loop {
        let batch = sub.next_batch(64).await.unwrap();
        if let Some(last) = got.take(batch) {
            sub.consumed(last).await.unwrap();
        }
        if got.next == total && got.caught_up.last() == Some(&(got.nonces.len(), total.checked_sub(1))) {
            return;
        }
    }
}

async fn connect(client: &QuicEndpoint, server: &Server) -> Peer {
    timeout(LIMIT, client.connect(server.addr))
        .await
        .expect("connect timed out")
        .unwrap()
}

fn reply_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("reply body is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_delivers_every_slot_once_in_order_with_credit_then_caught_up() {
    let (server, client) = pair(|_| {}, |c| c.window = 16);
    server.service.push_many(2000);
    let peer = connect(&client, &server).await;
    let mut sub = peer.subscribe(PROCESS, 0).await.unwrap();
    let mut got = Received::from(0);
    let service = server.service.clone();
    timeout(LIMIT, async {
        // Everything scheduled before the subscription, then CaughtUp.
        while got.caught_up.is_empty() {
            let batch = sub.next_batch(64).await.unwrap();
            assert!(
                batch.len() <= 16,
                "a batch of {} with a window of 16",
                batch.len()
            );
            if let Some(last) = got.take(batch) {
                sub.consumed(last).await.unwrap();
            }
        }
        assert_eq!(
            got.caught_up[0],
            (2000, Some(1999)),
            "first CaughtUp after the backlog"
        );
        // Then 500 more, scheduled while subscribed: the bell wakes the publisher.
        let pusher = tokio::spawn(async move {
            for i in 0..500 {
                service.push();
                if i % 25 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        drain(&mut sub, &mut got, 2500).await;
        pusher.await.unwrap();
    })
    .await
    .expect("the subscription stalled");
    assert_eq!(got.nonces, (0..2500).collect::<Vec<_>>());
    assert_eq!(sub.resume_from(), 2500);
    // The publisher sent each slot exactly once.
    let published = || server.stats.slots_published.load(Ordering::Relaxed) == 2500;
    assert!(wait_until(Duration::from_secs(5), published).await);
    assert_eq!(server.stats.connections_accepted.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_resumed_on_a_new_connection_has_no_gap_and_no_duplicate() {
    let server = server_with(config(SERVER, &[CLIENT]));
    server.service.push_many(1000);
    let client_config = || {
        let mut c = config(CLIENT, &[SERVER]);
        c.window = 16;
        c
    };
    let mut stored = Received::from(0);
    let resume = {
        let client = client_with(client_config());
        let peer = connect(&client, &server).await;
        let mut sub = peer.subscribe(PROCESS, 0).await.unwrap();
        timeout(LIMIT, async {
            while stored.nonces.len() < 300 {
                let batch = sub.next_batch(300 - stored.nonces.len()).await.unwrap();
                if let Some(last) = stored.take(batch) {
                    sub.consumed(last).await.unwrap();
                }
            }
        })
        .await
        .expect("first subscription stalled");
        let resume = sub.resume_from();
        drop(sub);
        drop(peer);
        client.close();
        resume
    };
    assert_eq!(resume, 300);
    // More is scheduled while no one is subscribed.
    server.service.push_many(1000);
    let client = client_with(client_config());
    let peer = connect(&client, &server).await;
    let mut sub = peer.subscribe(PROCESS, resume).await.unwrap();
    timeout(LIMIT, drain(&mut sub, &mut stored, 2000))
        .await
        .expect("resumed subscription stalled");
    assert_eq!(stored.nonces, (0..2000).collect::<Vec<_>>());
    assert_eq!(server.stats.connections_accepted.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pipelined_requests_on_one_connection_are_all_answered() {
    let (server, client) = pair(|_| {}, |_| {});
    let peer = connect(&client, &server).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let peer = peer.clone();
        tasks.spawn(async move {
            let message = format!("message-{i}");
            let reply = peer.result(PROCESS, &message).await.unwrap();
            (i, message, reply)
        });
    }
    let mut answered = [false; 200];
    timeout(LIMIT, async {
        while let Some(done) = tasks.join_next().await {
            let (i, message, reply) = done.unwrap();
            assert_eq!(reply.status, 200);
            let want = serde_json::json!({ "process": PROCESS, "message": message });
            assert_eq!(reply_json(&reply.body), want);
            answered[i as usize] = true;
        }
    })
    .await
    .expect("requests were not all answered");
    assert!(answered.iter().all(|&a| a));
    // They ran concurrently, on the one connection.
    assert!(
        server.service.max_in_flight.load(Ordering::SeqCst) > 1,
        "requests were served one at a time"
    );
    assert_eq!(server.stats.connections_accepted.load(Ordering::Relaxed), 1);
    // The other request kinds answer too.
    let reply = peer.dry_run(PROCESS, br#"{"Tags":[]}"#.to_vec()).await.unwrap();
    assert_eq!(
        reply_json(&reply.body)["dry_run"],
        serde_json::json!({ "Tags": [] })
    );
    let reply = peer.forward(vec![7; 1000]).await.unwrap();
    assert_eq!(
        (reply.status, reply_json(&reply.body)),
        (202, serde_json::json!({ "forwarded": 1000 }))
    );
    assert_eq!(
        server.service.forwarded.lock().unwrap().as_slice(),
        &[vec![7u8; 1000]]
    );
    // An unknown process is the service's 404, passed through.
    let mut sub = peer.subscribe("no-such-process", 0).await.unwrap();
    let err = timeout(LIMIT, sub.next_batch(1)).await.unwrap().unwrap_err();
    assert!(matches!(err, QuicError::Remote { code: 404, .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_off_the_allow_list_is_refused_on_either_side() {
    // The server does not allow the client (seed 3).
    let server = server_with(config(SERVER, &[CLIENT]));
    let stranger = client_with(config(3, &[SERVER]));
    // The client finishes its half of the handshake first; its Ping is never answered.
    let err = timeout(LIMIT, stranger.connect(server.addr))
        .await
        .expect("connect timed out")
        .expect_err("a client the server does not allow connected");
    assert!(matches!(err, QuicError::Connect { .. }), "{err:?}");
    assert_eq!(stranger.stats().connections_opened.load(Ordering::Relaxed), 0);
    assert!(
        wait_until(Duration::from_secs(5), || server.stats.refusals("not_allowed")
            >= 1)
        .await,
        "the server did not count the refusal"
    );
    assert_eq!(server.stats.connections_accepted.load(Ordering::Relaxed), 0);
    assert_eq!(server.service.max_in_flight.load(Ordering::SeqCst), 0);

    // The client does not allow the server (seed 1): the client refuses.
    let wary = client_with(config(CLIENT, &[4]));
    let wary_stats = wary.stats().clone();
    let err = timeout(LIMIT, wary.connect(server.addr))
        .await
        .expect("connect timed out")
        .expect_err("a client connected to a server it does not allow");
    assert!(matches!(err, QuicError::Connect { .. }), "{err:?}");
    assert!(wary_stats.refusals("not_allowed") >= 1);
    assert_eq!(wary_stats.connections_opened.load(Ordering::Relaxed), 0);

    // And a pair that allow each other still connect.
    let friend = client_with(config(CLIENT, &[SERVER]));
    let peer = connect(&friend, &server).await;
    assert_eq!(peer.key(), key(SERVER).public_key());
    assert_eq!(peer.result(PROCESS, "m").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_is_dropped_with_408_and_the_connection_goes_on() {
    let (server, client) = pair(|s| s.stall_after = Duration::from_millis(300), |c| c.window = 4);
    server.service.push_many(10);
    let peer = connect(&client, &server).await;
    let mut sub = peer.subscribe(PROCESS, 0).await.unwrap();
    let mut got = Received::from(0);
    // Never consumed: no credit after the first window.
    let err = timeout(Duration::from_secs(10), async {
        loop {
            match sub.next_batch(16).await {
                Ok(batch) => {
                    got.take(batch);
                }
                Err(e) => return e,
            }
        }
    })
    .await
    .expect("a stalled subscriber was not dropped within 10 s");
    assert!(matches!(err, QuicError::Remote { code: 408, .. }), "{err:?}");
    // Exactly the window was sent. (Slots buffered together with the error frame are not returned,
    // so the subscriber may have seen fewer.)
    assert_eq!(server.stats.slots_published.load(Ordering::Relaxed), 4);
    assert!(got.nonces.len() <= 4, "{:?}", got.nonces);
    assert!(server.stats.stream_errors.load(Ordering::Relaxed) >= 1);
    // The same connection serves requests and new subscriptions.
    assert!(!peer.is_closed());
    let reply = peer.result(PROCESS, "after-stall").await.unwrap();
    assert_eq!(reply_json(&reply.body)["message"], "after-stall");
    let mut sub = peer.subscribe(PROCESS, 4).await.unwrap();
    let mut again = Received::from(4);
    timeout(LIMIT, drain(&mut sub, &mut again, 10))
        .await
        .expect("second subscription stalled");
    assert_eq!(again.nonces, (4..10).collect::<Vec<_>>());
}

/// Accepts any server certificate whose handshake signature verifies: a raw client that skips the
/// crate's own verifier.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A plain quinn client presenting the node key of `seed`, speaking the ALPN, but none of the protocol.
fn raw_client(seed: u8) -> quinn::Endpoint {
    raw_client_with(Some(seed), cu_quic::tls::ALPN)
}

/// A plain quinn client presenting the node key of `seed` (or no certificate) and offering `alpn`.
fn raw_client_with(seed: Option<u8>, alpn: &[u8]) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)));
    let mut tls = match seed {
        Some(seed) => {
            let (cert, private) = cu_quic::tls::node_certificate(&key(seed)).unwrap();
            builder.with_client_auth_cert(vec![cert], private).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client(localhost()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

async fn raw_connect(endpoint: &quinn::Endpoint, server: &Server) -> quinn::Connection {
    let connecting = endpoint.connect(server.addr, cu_quic::tls::SERVER_NAME).unwrap();
    timeout(LIMIT, connecting)
        .await
        .expect("raw connect timed out")
        .unwrap()
}

/// Sends `bytes` on a new stream (finishing it when asked) and decodes the server's whole answer, which
/// must be exactly one frame.
async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8], finish: bool) -> Frame {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    let answer = timeout(LIMIT, recv.read_to_end(1 << 20))
        .await
        .expect("no answer from the server")
        .unwrap();
    let mut dec = FrameDecoder::new(DEFAULT_MAX_FRAME);
    dec.push(&answer);
    let frame = dec.next_frame().unwrap().expect("the answer is a whole frame");
    dec.finish().expect("the answer is exactly one frame");
    frame
}

fn assert_400(frame: &Frame, what: &str) -> String {
    match frame {
        Frame::Error { code: 400, reason } => reason.clone(),
        other => panic!("{what}: expected an Error 400 frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_streams_get_400_and_the_node_keeps_serving() {
    let server = server_with(config(SERVER, &[CLIENT]));
    let raw = raw_client(CLIENT);
    let conn = raw_connect(&raw, &server).await;
    let request = Frame::ResultRequest {
        process: PROCESS.into(),
        message: "m".repeat(100),
    }
    .encode()
    .unwrap();

    // (a) half a frame, then the end of the stream.
    let frame = raw_exchange(&conn, &request[..request.len() / 2], true).await;
    let reason = assert_400(&frame, "half a frame");
    assert!(reason.contains("ended inside a frame"), "{reason}");

    // (b) a length prefix past the limit, refused before its bytes arrive (the stream stays open).
    let mut oversized = u32::MAX.to_le_bytes().to_vec();
    oversized.extend_from_slice(&[1; 64]);
    let frame = raw_exchange(&conn, &oversized, false).await;
    let reason = assert_400(&frame, "oversized prefix");
    assert!(reason.contains("exceeds the limit"), "{reason}");

    // (c) random bytes.
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for round in 0..8 {
        let len = 1 + (rng.next() % 2048) as usize;
        let bytes = rng.bytes(len);
        let frame = raw_exchange(&conn, &bytes, true).await;
        assert_400(&frame, &format!("random bytes, round {round}"));
    }
    // A plausible length over garbage.
    let mut garbage = 200u32.to_le_bytes().to_vec();
    garbage.push(1);
    garbage.extend(rng.bytes(199));
    assert_400(&raw_exchange(&conn, &garbage, true).await, "garbage archive");

    // (d) a valid frame that cannot open a stream.
    for first in [
        Frame::Credit { slots: 5 },
        Frame::Reply {
            status: 200,
            body: b"{}".to_vec(),
        },
        Frame::Slot {
            nonce: 1,
            cursor: "1".into(),
            node: b"{}".to_vec(),
        },
    ] {
        let frame = raw_exchange(&conn, &first.encode().unwrap(), true).await;
        let reason = assert_400(&frame, first.kind());
        assert!(reason.contains("cannot begin"), "{reason}");
    }
    assert!(server.stats.stream_errors.load(Ordering::Relaxed) >= 14);

    // The same connection still serves a well-formed request.
    match raw_exchange(&conn, &request, true).await {
        Frame::Reply { status: 200, body } => assert_eq!(reply_json(&body)["message"], "m".repeat(100)),
        other => panic!("expected a reply, got {other:?}"),
    }
    assert!(
        conn.close_reason().is_none(),
        "the server closed the connection: {:?}",
        conn.close_reason()
    );

    // A peer that vanishes mid-frame.
    let open_before = server.stats.connections_open.load(Ordering::Relaxed);
    let quitter = raw_connect(&raw, &server).await;
    assert!(
        wait_until(LIMIT, || server.stats.connections_open.load(Ordering::Relaxed)
            == open_before + 1)
        .await,
        "the quitter was not admitted"
    );
    let received_before = server.stats.bytes_received.load(Ordering::Relaxed);
    let big = Frame::Forward {
        item: vec![9; 64 * 1024],
    }
    .encode()
    .unwrap();
    let (mut send, _recv) = quitter.open_bi().await.unwrap();
    send.write_all(&big[..big.len() / 2]).await.unwrap();
    assert!(
        wait_until(LIMIT, || server.stats.bytes_received.load(Ordering::Relaxed)
            > received_before)
        .await,
        "the server never read the half frame"
    );
    quitter.close(quinn::VarInt::from_u32(0), b"gone");
    assert!(
        wait_until(LIMIT, || server.stats.connections_open.load(Ordering::Relaxed)
            == open_before)
        .await,
        "the server did not notice the peer left"
    );
    assert!(
        server.service.forwarded.lock().unwrap().is_empty(),
        "a half frame was acted on"
    );

    // A normal peer on a new connection gets results.
    let client = client_with(config(CLIENT, &[SERVER]));
    let peer = connect(&client, &server).await;
    let reply = peer.result(PROCESS, "still-here").await.unwrap();
    assert_eq!(reply_json(&reply.body)["message"], "still-here");
    // And the first raw connection is still up.
    match raw_exchange(&conn, &request, true).await {
        Frame::Reply { status: 200, .. } => {}
        other => panic!("expected a reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_or_with_another_alpn_is_not_served() {
    let server = server_with(config(SERVER, &[CLIENT]));
    let request = Frame::ResultRequest {
        process: PROCESS.into(),
        message: "m".into(),
    }
    .encode()
    .unwrap();

    // Another protocol: refused at the server's first flight.
    let other = raw_client_with(Some(CLIENT), b"h3");
    let connecting = other.connect(server.addr, cu_quic::tls::SERVER_NAME).unwrap();
    let outcome = timeout(LIMIT, connecting).await.expect("connect timed out");
    assert!(outcome.is_err(), "a client speaking another protocol connected");

    // No client certificate: mutual TLS is mandatory. The client may complete its half of the
    // handshake; nothing is served on it.
    let anonymous = raw_client_with(None, cu_quic::tls::ALPN);
    let connecting = anonymous.connect(server.addr, cu_quic::tls::SERVER_NAME).unwrap();
    if let Ok(conn) = timeout(LIMIT, connecting).await.expect("connect timed out") {
        let answer = timeout(LIMIT, async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(&request).await?;
            send.finish()?;
            Ok::<_, Box<dyn std::error::Error>>(recv.read_to_end(1 << 20).await?)
        })
        .await
        .expect("no answer and no close");
        assert!(
            answer.is_err(),
            "a client without a certificate was answered: {answer:?}"
        );
    }
    assert_eq!(server.stats.connections_accepted.load(Ordering::Relaxed), 0);
    assert_eq!(server.service.max_in_flight.load(Ordering::SeqCst), 0);

    // The allowed key on the same raw client code is served.
    let raw = raw_client(CLIENT);
    let conn = raw_connect(&raw, &server).await;
    assert!(matches!(
        raw_exchange(&conn, &request, true).await,
        Frame::Reply { status: 200, .. }
    ));
}

/// Counters of a [`Lossy`] socket.
#[derive(Debug, Default)]
struct LossCounters {
    sent: AtomicU64,
    dropped: AtomicU64,
    reordered: AtomicU64,
}

/// A datagram held back to be sent after the next one.
#[derive(Debug)]
struct Held {
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    contents: Vec<u8>,
    segment_size: Option<usize>,
    src_ip: Option<IpAddr>,
}

/// A UDP socket that drops about 5 % of the datagrams it sends and swaps about 5 % with the next one,
/// deterministically from a seed.
#[derive(Debug)]
struct Lossy {
    inner: Arc<dyn AsyncUdpSocket>,
    state: Mutex<(XorShift, Option<Held>)>,
    counters: Arc<LossCounters>,
}

impl Lossy {
    fn bind(seed: u64) -> (Arc<Lossy>, Arc<LossCounters>) {
        let socket = std::net::UdpSocket::bind(localhost()).unwrap();
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let inner = runtime.wrap_udp_socket(socket).unwrap();
        let counters = Arc::new(LossCounters::default());
        let lossy = Arc::new(Lossy {
            inner,
            state: Mutex::new((XorShift(seed), None)),
            counters: counters.clone(),
        });
        (lossy, counters)
    }
}

impl AsyncUdpSocket for Lossy {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let mut state = self.state.lock().unwrap();
        let (rng, held) = &mut *state;
        let roll = rng.next() % 100;
        if roll < 5 {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if roll < 10 && held.is_none() {
            *held = Some(Held {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: transmit.contents.to_vec(),
                segment_size: transmit.segment_size,
                src_ip: transmit.src_ip,
            });
            self.counters.reordered.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        self.inner.try_send(transmit)?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(h) = held.take() {
            // A late datagram that cannot go out is simply lost.
            let _ = self.inner.try_send(&Transmit {
                destination: h.destination,
                ecn: h.ecn,
                contents: &h.contents,
                segment_size: h.segment_size,
                src_ip: h.src_ip,
            });
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// One datagram per transmit (no GSO), so each loss is one datagram.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

fn lossy_endpoint(
    seed: u64,
    config: QuicConfig,
    service: Option<Arc<dyn Service>>,
) -> (QuicEndpoint, Arc<LossCounters>) {
    let (socket, counters) = Lossy::bind(seed);
    let stats = Arc::new(QuicStats::default());
    let endpoint = QuicEndpoint::with_socket(socket, config, service, stats).unwrap();
    (endpoint, counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_a_lossy_reordering_network_every_slot_arrives_once_in_order() {
    let service = TestService::new();
    service.push_many(1500);
    let dyn_service: Arc<dyn Service> = service.clone();
    let (server, server_loss) = lossy_endpoint(0x5EED_0001, config(SERVER, &[CLIENT]), Some(dyn_service));
    let mut cc = config(CLIENT, &[SERVER]);
    cc.window = 64;
    let (client, client_loss) = lossy_endpoint(0x5EED_0002, cc, None);
    let addr = server.local_addr().unwrap();
    let peer = timeout(LIMIT, client.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    let mut sub = peer.subscribe(PROCESS, 0).await.unwrap();
    let mut got = Received::from(0);
    let pusher = {
        let service = service.clone();
        tokio::spawn(async move {
            for i in 0..500 {
                service.push();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    timeout(Duration::from_secs(30), drain(&mut sub, &mut got, 2000))
        .await
        .expect("the subscription stalled over the lossy network");
    pusher.await.unwrap();
    assert_eq!(got.nonces, (0..2000).collect::<Vec<_>>());
    // Requests survive the loss too.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let peer = peer.clone();
        tasks.spawn(async move { (i, peer.result(PROCESS, &format!("lossy-{i}")).await.unwrap()) });
    }
    timeout(LIMIT, async {
        while let Some(done) = tasks.join_next().await {
            let (i, reply) = done.unwrap();
            assert_eq!(reply_json(&reply.body)["message"], format!("lossy-{i}"));
        }
    })
    .await
    .expect("requests over the lossy network were not answered");
    // The network really was lossy and reordering, both ways.
    for (side, loss) in [("server", &server_loss), ("client", &client_loss)] {
        let (sent, dropped, reordered) = (
            loss.sent.load(Ordering::Relaxed),
            loss.dropped.load(Ordering::Relaxed),
            loss.reordered.load(Ordering::Relaxed),
        );
        assert!(
            dropped > 0 && reordered > 0,
            "{side}: sent {sent}, dropped {dropped}, reordered {reordered}"
        );
    }
    assert!(
        server_loss.sent.load(Ordering::Relaxed) > 1000,
        "the server sent too little to mean anything"
    );
}
