//! The node's bundler surface: `POST /tx` (and `/tx/:currency`, as Irys and Turbo take uploads)
//! verifies a signed ANS-104 data item and stores it whole (`cu_store::items`), so the gateway surface
//! serves it: `GET /raw/:id` answers its data, GraphQL `transactions` finds it by id, owner and tags.
//! This is where CUs upload process checkpoints (`crate::checkpoints`) and where data a process reads
//! later (WeaveDrive, models) lands. Uploading is not scheduling: an item posted here is not a message.

use std::sync::atomic::Ordering::Relaxed;

use cu_ans104::DataItem;
use cu_store::{ItemMeta, NewItem, Tag};
use serde_json::{Value, json};

use crate::error::NodeError;
use crate::node::Node;

impl Node {
    /// `POST /tx`: verifies and stores one signed data item (the checks of [`Node::ingest`]:
    /// `Node::accept_item`); answers `{id, owner, timestamp}` as a bundler does. Storing an
    /// item twice is harmless (same id, same bytes).
    pub fn upload(&self, raw: &[u8]) -> Result<Value, NodeError> {
        let now = self.now();
        let item = self.accept_item(raw, || now)?;
        let meta = ItemMeta {
            seq: 0,
            id: item.id(),
            owner: item.owner_address(),
            owner_key: item.owner_b64url(),
            signature: item.signature_b64url(),
            target: item.target(),
            anchor: cu_scheduler::wire::anchor_of(&item),
            tags: item
                .tags()
                .iter()
                .map(|(name, value)| Tag {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            data_size: item.data().len() as u64,
            timestamp: now,
            block_height: self.block_height_at(now),
        };
        let answer = json!({"id": meta.id, "owner": item.owner_b64url(), "timestamp": now});
        self.inner.store.put_item(NewItem {
            meta,
            raw: item.into_raw(),
        })?;
        self.inner.uploaded.fetch_add(1, Relaxed);
        Ok(answer)
    }

    /// The data of an uploaded item and its `Content-Type` tag, for `GET /raw/:id`.
    pub(crate) fn item_data(&self, id: &str) -> Result<Option<(Vec<u8>, String)>, NodeError> {
        let Some(raw) = self.inner.store.item_raw(id)? else {
            return Ok(None);
        };
        let item = DataItem::from_vec(raw).map_err(|e| NodeError::Internal(e.to_string()))?;
        let ty = item
            .tag("Content-Type")
            .unwrap_or("application/octet-stream")
            .to_owned();
        Ok(Some((item.data().to_vec(), ty)))
    }
}

/// The gateway node of an uploaded item (every field the GraphQL subset can select).
pub(crate) fn item_node(m: &ItemMeta) -> Value {
    let content_type = m
        .tags
        .iter()
        .find(|t| t.name == "Content-Type")
        .map(|t| t.value.clone());
    json!({
        "id": m.id, "anchor": m.anchor, "signature": m.signature,
        "recipient": m.target.clone().unwrap_or_default(),
        "owner": {"address": m.owner, "key": m.owner_key},
        "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
        "data": {"size": m.data_size.to_string(), "type": content_type},
        "tags": m.tags.iter().map(|t| json!({"name": t.name, "value": t.value})).collect::<Vec<_>>(),
        "block": {"id": format!("local-{}", m.block_height), "timestamp": m.timestamp / 1000,
                  "height": m.block_height, "previous": null},
        "parent": null,
    })
}
