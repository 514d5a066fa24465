//! The AO network upstream of a Compute Unit: a real Scheduler Unit and a gateway, read the way the
//! reference CU reads them (`reference/ao-cu.md` §2.2–2.7).
//!
//! - [`wire`]: the SU's JSON wire format as typed views (process, schedule pages, edges, assignments) and
//!   [`wire::Scheduled`], one parsed edge (nonce, timestamp, block height, hash chain, what it assigns).
//! - [`chain`]: the SU hash chain, checked link by link ([`chain::check_link`]).
//! - [`msg`]: the msg handed to `handle`, built from an edge exactly as the reference CU's `mapNode`,
//!   assignment hydration and `messageSchema` key order make it.
//! - [`http`]: a blocking HTTP client with per-request timeouts, retries with exponential backoff on
//!   transport errors, 5xx and 429, and a cap on body size.
//! - [`gateway`]: GraphQL (`transactions` by ids, by owner and tags) and `GET /raw/:id`.
//! - [`Upstream`]: the facade a node uses: locate a process's SU through the gateway's
//!   `Scheduler-Location` records (cached for their `Time-To-Live`, or a static SU URL), read the process
//!   and its schedule in pages, load modules, hydrate assigned messages.
//!
//! Everything here is blocking I/O (`ureq`); callers run it off async worker threads. Nothing here
//! writes anything: the node stores what it verified, all or nothing.

pub mod chain;
mod error;
pub mod gateway;
pub mod http;
mod locate;
pub mod msg;
mod upstream;
pub mod wire;

pub use error::UpstreamError;
pub use upstream::{Upstream, UpstreamConfig};
