//! ao-cu's unit-to-unit protocol over QUIC (`docs/quic.md`).
//!
//! Between AO units, HTTP/1.1 JSON means a CU polls its SU for pages of a schedule, an MU posts each
//! message and results are fetched one by one. This crate gives ao-cu nodes a native protocol for that
//! traffic on QUIC (quinn), in four layers, each testable alone:
//!
//! | module | what |
//! | --- | --- |
//! | [`frame`] | the frames: rkyv archives behind a length prefix, validated by bytecheck and protocol limits before use |
//! | [`flow`] | the schedule subscription's rules without I/O or clocks: credit, order, resumption, stalls |
//! | [`auth`], [`tls`] | peers are node keys: self-signed ed25519 certificates, an allow-list or SEV-SNP evidence |
//! | [`endpoint`] | quinn: connections, admission, one bidirectional stream per request, the publisher and subscriber loops |
//! | [`node`] | the node adapter: the SU side serves a [`cu_node::Node`]'s schedule, the CU side subscribes to its upstream SUs |
//!
//! HTTP stays for clients and for units that do not speak this protocol; a node advertises it in `GET /`
//! (`quic: {port, keyid, alpn}`).

pub mod auth;
pub mod endpoint;
pub mod flow;
pub mod frame;
pub mod node;
pub mod stats;
pub mod tls;

pub use auth::{AllowList, EvidencePolicy, PeerPolicy, Refusal};
pub use endpoint::{
    Event, Peer, QuicConfig, QuicEndpoint, QuicError, Reply, Service, SlotData, Subscription,
};
pub use frame::{Frame, FrameDecoder, FrameError};
pub use stats::QuicStats;
