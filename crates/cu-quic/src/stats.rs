//! Counters of the QUIC side, rendered on `GET /metrics` (`ao_cu_quic_*`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Connection, stream, frame, byte and refusal counters.
#[derive(Debug, Default)]
pub struct QuicStats {
    /// Connections accepted from peers (handshake and admission passed).
    pub connections_accepted: AtomicU64,
    /// Connections opened to peers (handshake and admission passed).
    pub connections_opened: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Streams served, by what they were for.
    streams: Mutex<BTreeMap<&'static str, u64>>,
    /// Frames sent.
    pub frames_sent: AtomicU64,
    /// Frames received.
    pub frames_received: AtomicU64,
    /// Bytes sent in frames.
    pub bytes_sent: AtomicU64,
    /// Bytes received in frames.
    pub bytes_received: AtomicU64,
    /// Streams ended by a bad frame or a protocol violation.
    pub stream_errors: AtomicU64,
    /// Slots pushed to subscribers.
    pub slots_published: AtomicU64,
    /// Slots received from subscriptions and stored.
    pub slots_received: AtomicU64,
    /// Peers refused, by reason.
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl QuicStats {
    /// Counts a refused peer.
    pub fn refused(&self, reason: &'static str) {
        let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        *r.entry(reason).or_default() += 1;
    }

    /// Refusals so far with this reason.
    pub fn refusals(&self, reason: &str) -> u64 {
        let r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        r.get(reason).copied().unwrap_or(0)
    }

    /// Counts a stream by kind.
    pub fn stream(&self, kind: &'static str) {
        let mut s = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        *s.entry(kind).or_default() += 1;
    }

    pub(crate) fn sent(&self, frames: u64, bytes: usize) {
        self.frames_sent.fetch_add(frames, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        let counters = [
            (
                "ao_cu_quic_connections_accepted_total",
                "QUIC connections accepted from admitted peers",
                &self.connections_accepted,
            ),
            (
                "ao_cu_quic_connections_opened_total",
                "QUIC connections opened to admitted peers",
                &self.connections_opened,
            ),
            ("ao_cu_quic_frames_sent_total", "Frames sent", &self.frames_sent),
            (
                "ao_cu_quic_frames_received_total",
                "Frames received",
                &self.frames_received,
            ),
            (
                "ao_cu_quic_bytes_sent_total",
                "Bytes sent in frames",
                &self.bytes_sent,
            ),
            (
                "ao_cu_quic_bytes_received_total",
                "Bytes received in frames",
                &self.bytes_received,
            ),
            (
                "ao_cu_quic_stream_errors_total",
                "Streams ended by a bad frame or a protocol violation",
                &self.stream_errors,
            ),
            (
                "ao_cu_quic_slots_published_total",
                "Schedule slots pushed to subscribers",
                &self.slots_published,
            ),
            (
                "ao_cu_quic_slots_received_total",
                "Schedule slots received over subscriptions and stored",
                &self.slots_received,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ao_cu_quic_connections_open QUIC connections open now\n# TYPE ao_cu_quic_connections_open gauge\nao_cu_quic_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ao_cu_quic_streams_total QUIC streams served, by kind\n# TYPE ao_cu_quic_streams_total counter"
        );
        for (kind, n) in self.streams.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "ao_cu_quic_streams_total{{kind=\"{kind}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP ao_cu_quic_refusals_total QUIC peers refused, by reason\n# TYPE ao_cu_quic_refusals_total counter"
        );
        for (reason, n) in self.refusals.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "ao_cu_quic_refusals_total{{reason=\"{reason}\"}} {n}");
        }
    }
}
