//! The listener: HTTP/1.1 connections with bounded resources, so that no client can exhaust the node's
//! file descriptors, memory or tasks by holding connections open.
//!
//! - **Connection caps.** At most [`ServerLimits::max_connections`] connections at once: beyond it the
//!   listener stops accepting (the kernel's backlog holds new clients until a slot frees). At most
//!   [`ServerLimits::max_connections_per_ip`] from one peer address (trusted proxies exempt): a peer over
//!   its share is accepted and closed at once, and counted in `ao_cu_http_connections_refused_total`.
//! - **Header and idle timeout.** A connection must deliver a complete request head within
//!   [`ServerLimits::header_timeout`] of opening, and again within that time of each response (hyper's
//!   header-read timer runs while a keep-alive connection is idle): silent sockets and half-sent headers
//!   are closed.
//! - **Body deadline and upload memory.** Request bodies are read under the
//!   [`crate::HttpConfig::body_timeout`] deadline and the node-wide [`crate::HttpConfig::upload_budget`]
//!   (see `routes.rs`, the `guard_body` middleware).
//! - **Graceful shutdown.** When `shutdown` resolves the listener closes, every connection finishes the
//!   request it is serving (idle ones close at once), and [`serve`] returns when all are gone or after
//!   [`ServerLimits::drain_timeout`].

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use crate::client::TrustedProxies;

/// How many connections the listener holds and for how long.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Most open connections (the listener waits for a free slot beyond it).
    pub max_connections: usize,
    /// Most open connections from one peer address; trusted proxies are exempt.
    pub max_connections_per_ip: usize,
    /// Time a connection has to send a complete request head, from opening and between requests.
    pub header_timeout: Duration,
    /// On shutdown: how long in-flight requests may take before the listener gives up on them.
    pub drain_timeout: Duration,
    /// Peers exempt from the per-address cap (their clients are many behind one address).
    pub trusted_proxies: TrustedProxies,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 16_384,
            max_connections_per_ip: 1_024,
            header_timeout: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::none(),
        }
    }
}

/// Connection counters, shared with whoever renders metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Connections closed at once because their peer had its share.
    pub refused_per_ip: AtomicU64,
    /// Failed `accept` calls (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
}

impl ConnectionStats {
    /// Prometheus text of the counters.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let rows = [
            (
                "ao_cu_http_connections_open",
                "gauge",
                "Open HTTP connections.",
                &self.open,
            ),
            (
                "ao_cu_http_connections_accepted_total",
                "counter",
                "HTTP connections accepted.",
                &self.accepted,
            ),
            (
                "ao_cu_http_connections_refused_total",
                "counter",
                "HTTP connections closed at once: their peer address had its share of connections.",
                &self.refused_per_ip,
            ),
            (
                "ao_cu_http_accept_errors_total",
                "counter",
                "Failed accepts (such as running out of file descriptors).",
                &self.accept_errors,
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Relaxed)
            );
        }
    }
}

/// Open connections per peer address; an entry disappears with its peer's last connection.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

struct PerIpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<PerIpSlot> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PerIpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves, then drains (see the module docs).
/// Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_ip = Arc::new(PerIp::default());
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off briefly instead
                    // of spinning on the error.
                    stats.accept_errors.fetch_add(1, Relaxed);
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip();
        let slot = if limits.trusted_proxies.contains(ip) {
            None
        } else {
            match per_ip.try_take(ip, limits.max_connections_per_ip) {
                Some(s) => Some(s),
                None => {
                    stats.refused_per_ip.fetch_add(1, Relaxed);
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        stats.accepted.fetch_add(1, Relaxed);
        stats.open.fetch_add(1, Relaxed);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        let stats = stats.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
            stats.open.fetch_sub(1, Relaxed);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.drain_timeout) => {
            tracing::warn!("connections still open after {:?}; stopping anyway", limits.drain_timeout);
        }
    }
    Ok(())
}

/// The connection counters' peer accounting, for the module's tests.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn per_ip_slots_are_counted_and_released() {
        let table = Arc::new(PerIp::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = table.try_take(ip, 2).unwrap();
        let _b = table.try_take(ip, 2).unwrap();
        assert!(table.try_take(ip, 2).is_none());
        assert!(table.try_take("10.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(table.try_take(ip, 2).is_some());
        drop(_b);
        // Entries of peers with no connection left are removed (the table does not grow without bound).
        assert!(table.0.lock().unwrap().is_empty());
    }
}
