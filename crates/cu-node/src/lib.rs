//! ao-cu's node: the use cases of `ao-cu serve` (a Messenger, Scheduler and Compute Unit in one), with no
//! HTTP in it (`cu-http` maps routes onto [`Node`]).
//!
//! - [`Node::ingest`] is the MU: it verifies a signed ANS-104 item (Arweave or Ethereum signature) and
//!   registers a module, spawns a process (scheduled as nonce 0 of itself) or schedules a message; the
//!   embedded scheduler (`cu-scheduler`) commits nonce, timestamp, block height, hash chain, the signed
//!   assignment, due cron messages and the log entry in one transaction before `ingest` returns.
//!   [`Node::assign`] is the MU's `POST /?process-id=&assign=`: a message this node stores, scheduled onto
//!   another local process (the path the outbox's `Assignments` take too).
//! - The engine (`cu-engine`) evaluates each process's log; [`Node::result`], [`Node::results`],
//!   [`Node::cron`], [`Node::dry_run`] and [`Node::state`] are the reference CU's read routes.
//! - Outbox: a delivery thread waits for each process's results and delivers `Messages` to local
//!   targets (signed by the node wallet with the MU's tags `Data-Protocol`, `Type`, `From-Process`,
//!   `From-Module`, `Pushed-For`), `Spawns` (new processes) and `Assignments` (existing messages assigned
//!   to other local processes). Each delivered item is marked in the same transaction that schedules
//!   it, so a restart never delivers twice; outboxes to processes that are not local are not delivered.
//! - [`hbu`]: HyperBEAM's `POST /result/:slot` (evaluate SU-wire pages scheduled elsewhere).
//! - Network mode ([`NetworkConfig`]): processes scheduled by remote SUs are read from them and the
//!   gateway (`cu-upstream`), checked slot by slot (hash chain, nonces) and appended before they are
//!   evaluated; reads sync lazily and a background thread keeps them caught up.
//! - [`checkpoints`]: process checkpoints on Arweave in the reference's format, uploaded through a bundler
//!   and cold-started from in network mode.
//! - [`graphql`]: the gateway GraphQL subset aoconnect needs, from the local store.
//! - Bundler surface ([`Node::upload`], `POST /tx`): signed data items stored whole and served by the
//!   gateway routes (checkpoints that CUs upload, data processes read).
//! - Edges: an ingested item whose tags are not valid UTF-8 is refused (the signature covers the raw
//!   bytes); an optional per-wallet [`UploadQuota`] bounds what one signer may post per window.

pub mod arweave;
mod bells;
mod bundler;
pub mod checkpoints;
mod cluster;
mod cu;
pub mod drive;
mod error;
mod gateway;
pub mod graphql;
pub mod hbu;
mod metrics;
mod mu;
mod network;
mod node;
mod outbox;
mod quota;
mod su;

pub use checkpoints::{CheckpointColdStart, CheckpointUploads};
pub use cluster::{Route, item_process};
pub use cu::{ResultsParams, StateReply};
pub use cu_upstream::{UpstreamConfig, http::HttpOptions};
pub use cu_wasm::models::DEFAULT_MODEL_BUDGET;
pub use error::NodeError;
pub use mu::{IngestKind, Ingested, build_msg};
pub use network::NetworkConfig;
pub use node::{
    COMPUTE_MAX_LIMIT, DEFAULT_MAX_ITEM_BYTES, ItemTransport, MEMORY_MAX_LIMIT, Node, NodeConfig,
};
pub use quota::UploadQuota;
