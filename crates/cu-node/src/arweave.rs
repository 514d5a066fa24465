//! The Arweave HTTP API a gateway serves besides `/raw` and GraphQL, over the node's own chain:
//! `GET /block/height/{h}` (a block: its id, height, timestamp, predecessor and the ids of the items
//! uploaded in it, consistent with GraphQL `blocks` and the items' `block`) and `GET /tx/{id}` (an
//! uploaded data item as an Arweave format-2 transaction header: tags base64url-encoded, no data).
//! WeaveDrive's `/block/<h>` and `/tx/<id>` files read these (`crate::drive`).

use base64::Engine as _;
use cu_store::{ItemMeta, Store, StoreError};
use serde_json::{Value, json};

/// The header of block `height` of the node's chain, `None` above `current` (the chain's height now).
pub fn block_header(store: &Store, height: u64, current: u64) -> Result<Option<Value>, StoreError> {
    if height > current {
        return Ok(None);
    }
    let txs = store.items_at_height(height, cu_store::items::MAX_ITEMS_PER_QUERY)?;
    Ok(Some(json!({
        "indep_hash": format!("local-{height}"),
        "previous_block": if height == 0 { String::new() } else { format!("local-{}", height - 1) },
        "height": height,
        "timestamp": cu_scheduler::chain::block_timestamp(height) / 1000,
        "txs": txs,
    })))
}

/// An uploaded item as an Arweave transaction header (what `GET /tx/{id}` answers).
pub fn tx_header(m: &ItemMeta) -> Value {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    json!({
        "format": 2,
        "id": m.id,
        "last_tx": m.anchor.clone().unwrap_or_default(),
        "owner": m.owner_key,
        "tags": m.tags.iter().map(|t| json!({
            "name": b64.encode(t.name.as_bytes()),
            "value": b64.encode(t.value.as_bytes()),
        })).collect::<Vec<_>>(),
        "target": m.target.clone().unwrap_or_default(),
        "quantity": "0",
        "data": "",
        "data_size": m.data_size.to_string(),
        "data_root": "",
        "reward": "0",
        "signature": m.signature,
    })
}
