//! ao-cu's embedded scheduler unit (SU): what `ao-cu serve` uses to order messages itself.
//!
//! - [`chain`]: the SU hash chain (`base64url(sha256(prev_assignment_id_bytes || prev_hash_chain_bytes))`,
//!   seeded with the process id's bytes) and the node's local block height, a pure function of the
//!   timestamp: `height = timestamp_ms / 120_000` (one local "block" every two minutes, Arweave's target
//!   block time); the block `h` starts at `h * 120_000` ms.
//! - [`cron`]: `Cron-Interval` / `Cron-Tag-*` parsing as the reference CU does it (`ms` 2.1.3 units), and
//!   the cron ticks between two scheduled messages computed arithmetically (time proportional to the
//!   number of ticks), in the reference's order.
//! - [`scheduler`]: [`Scheduler`]: per process nonce (0 = the process itself), strictly increasing
//!   timestamps (the clock is passed in), epoch 0, the hash chain, assignments signed as ANS-104 data
//!   items by the node wallet, interleaved cron messages; every step is committed durably in `cu-store`
//!   (`schedule.rs`) before it returns.
//! - [`wire`]: the SU's JSON shapes (`ProcessInner`, the `page_info`/`edges` page, `/timestamp`).

pub mod chain;
pub mod cron;
pub mod error;
pub mod scheduler;
pub mod wire;

pub use chain::{BLOCK_MS, block_height, block_timestamp, hash_chain};
pub use cron::{Cron, CronKind, CronTick, parse_crons, ticks};
pub use error::SchedError;
pub use scheduler::{Assigned, ScheduleRequest, Scheduled, Scheduler};

#[cfg(test)]
mod tests;
