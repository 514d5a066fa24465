//! ao-cu's node: the use cases of `ao-cu serve` (a Messenger, Scheduler and Compute Unit in one), with no
//! HTTP in it (`cu-http` maps routes onto [`Node`]).
//!
//! Work in progress: see the crate's report.

mod error;
pub mod graphql;
mod node;

pub use error::NodeError;
pub use node::{
    COMPUTE_MAX_LIMIT, DEFAULT_MAX_ITEM_BYTES, IngestKind, Ingested, MEMORY_MAX_LIMIT, Node, NodeConfig,
    ResultsParams, StateReply, build_msg,
};
