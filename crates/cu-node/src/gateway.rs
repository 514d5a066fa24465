//! The gateway surface: GraphQL over the store, `GET /raw/:id` (and `/:id`), the node's
//! `Scheduler-Location` record, and the Arweave API headers (`crate::arweave`).

use base64::Engine as _;
use cu_ans104::DataItem;
use cu_scheduler::wire;
use serde_json::{Map, Value, json};

use crate::error::NodeError;
use crate::graphql;
use crate::node::{Node, bad, tags_value};

impl Node {
    /// The GraphQL subset aoconnect needs (see [`crate::graphql`]): `transactions` over the stored modules,
    /// processes and messages, plus the node's own `Scheduler-Location` record (`Url` = its public URL).
    pub fn graphql(&self, query: &str, variables: Value) -> Result<Value, NodeError> {
        let fields = graphql::parse(query, &variables)?;
        let mut data = Map::new();
        for f in fields {
            match f.name() {
                "transactions" => {
                    let filter = f.tx_filter()?;
                    let mut nodes = Vec::new();
                    match &filter.ids {
                        Some(ids) => {
                            for id in ids {
                                if let Some(n) = self.gql_node(id)? {
                                    nodes.push(n);
                                }
                            }
                        }
                        None => {
                            nodes.push(self.scheduler_location());
                            for pid in self.inner.store.process_ids()? {
                                if let Some(n) = self.gql_node(&pid)? {
                                    nodes.push(n);
                                }
                            }
                            // Uploaded items, newest first: through the tag index when a tag filter
                            // names values (the other filters are applied below).
                            let items = match filter.tags.iter().find(|(_, values)| !values.is_empty()) {
                                Some((name, values)) => self.inner.store.items_tagged(
                                    name,
                                    values,
                                    cu_store::items::MAX_ITEMS_PER_QUERY,
                                )?,
                                None => self
                                    .inner
                                    .store
                                    .items_newest(cu_store::items::MAX_ITEMS_PER_QUERY)?,
                            };
                            nodes.extend(items.iter().map(crate::bundler::item_node));
                        }
                    }
                    nodes.retain(|n| filter.matches(n));
                    data.insert(
                        "transactions".into(),
                        graphql::transactions_answer(&f, nodes, filter.first),
                    );
                }
                "blocks" => {
                    let now = self.now();
                    let answer = graphql::blocks_answer(
                        &f,
                        cu_scheduler::chain::block_height(now),
                        cu_scheduler::chain::block_timestamp,
                    )?;
                    data.insert("blocks".into(), answer);
                }
                other => return Err(bad(format!("GraphQL: field {other:?} is not supported"))),
            }
        }
        Ok(json!({ "data": data }))
    }

    pub(crate) fn scheduler_location(&self) -> Value {
        use sha2::Digest;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(format!(
            "Scheduler-Location:{}",
            self.inner.address
        )));
        json!({
            "id": id, "anchor": null, "signature": null, "recipient": "",
            "owner": {"address": self.inner.address, "key": self.inner.wallet.owner_b64url()},
            "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
            "data": {"size": "0", "type": null},
            "tags": [
                {"name": "Data-Protocol", "value": "ao"},
                {"name": "Variant", "value": "ao.TN.1"},
                {"name": "Type", "value": "Scheduler-Location"},
                {"name": "Url", "value": self.inner.public_url},
                {"name": "Time-To-Live", "value": "3600000"},
            ],
            "block": null, "parent": null,
        })
    }

    /// `GET /raw/{id}` as a gateway serves it: the data of a stored module (its WASM), process or
    /// message, with its `Content-Type` tag (`application/octet-stream` when none).
    pub fn raw(&self, id: &str) -> Result<(Vec<u8>, String), NodeError> {
        let reads = self.inner.scheduler.reads();
        let raw = match reads.by_nonce(id, 0)? {
            Some(r) => r.message,
            None => reads.message_item(id)?,
        };
        if let Some(raw) = raw {
            let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
            let ty = item
                .tag("Content-Type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            return Ok((item.data().to_vec(), ty));
        }
        if let Some(m) = self.inner.store.module(id)? {
            let ty = m
                .tags
                .iter()
                .find(|t| t.name == "Content-Type")
                .map_or("application/wasm", |t| t.value.as_str())
                .to_owned();
            return Ok((m.wasm, ty));
        }
        if let Some(found) = self.item_data(id)? {
            return Ok(found);
        }
        Err(NodeError::NotFound(format!("transaction {id} was not found")))
    }

    /// `GET /block/height/{h}`: block `h` of the node's chain (see [`crate::arweave`]).
    pub fn block_header(&self, height: &str) -> Result<Value, NodeError> {
        let missing = || NodeError::NotFound(format!("block {height} was not found"));
        let h = height.parse::<u64>().map_err(|_| missing())?;
        let current = self.block_height_at(self.now());
        crate::arweave::block_header(&self.inner.store, h, current)?.ok_or_else(missing)
    }

    /// `GET /tx/{id}`: an uploaded item's Arweave transaction header.
    pub fn tx_header(&self, id: &str) -> Result<Value, NodeError> {
        self.inner
            .store
            .item(id)?
            .map(|m| crate::arweave::tx_header(&m))
            .ok_or_else(|| NodeError::NotFound(format!("transaction {id} was not found")))
    }

    /// The gateway node of a stored item: a module, a process (its spawn) or a scheduled message.
    pub(crate) fn gql_node(&self, id: &str) -> Result<Option<Value>, NodeError> {
        let sl = self.scheduler_location();
        if sl["id"] == id {
            return Ok(Some(sl));
        }
        let reads = self.inner.scheduler.reads();
        let found = match reads.by_nonce(id, 0)? {
            Some(r) => Some((r.message, r.timestamp, r.block_height)),
            None => reads.message_item(id)?.map(|raw| (Some(raw), 0, 0)),
        };
        if let Some((Some(raw), ts, height)) = found {
            let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
            let block = if ts > 0 {
                json!({"id": format!("local-{height}"), "timestamp": ts / 1000, "height": height, "previous": null})
            } else {
                Value::Null
            };
            return Ok(Some(json!({
                "id": item.id(), "anchor": wire::anchor_of(&item), "signature": item.signature_b64url(),
                "recipient": item.target().unwrap_or_default(),
                "owner": {"address": item.owner_address(), "key": item.owner_b64url()},
                "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
                "data": {"size": item.data().len().to_string(), "type": item.tag("Content-Type")},
                "tags": item.tags().iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
                "block": block, "parent": null,
            })));
        }
        if let Some(m) = self.inner.store.item(id)? {
            return Ok(Some(crate::bundler::item_node(&m)));
        }
        if let Some(m) = self.inner.store.module(id)? {
            return Ok(Some(json!({
                "id": m.id, "anchor": null, "signature": null, "recipient": "",
                "owner": {"address": m.owner, "key": m.owner_key},
                "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
                "data": {"size": m.wasm.len().to_string(), "type": null},
                "tags": tags_value(&m.tags), "block": null, "parent": null,
            })));
        }
        Ok(None)
    }
}
