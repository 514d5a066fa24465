//! Data items uploaded to the node's bundler surface (`POST /tx`), kept whole and indexed by tag so the
//! gateway surface serves them (`GET /raw/:id`, GraphQL `transactions` by id, owner and tags): process
//! checkpoints uploaded by CUs, WeaveDrive data, models. An item is stored once (its id is the hash of
//! its signature); its metadata lives in the row, so queries never read the data.
//!
//! Also here: the *adopted* mark of a process whose log begins after a checkpoint made elsewhere (a
//! cold start from an Arweave checkpoint): such a process has no log before that checkpoint, so it
//! must never be booted fresh and replayed.

use crate::db::{Conn, DbError, Row, args};
use crate::error::StoreError;
use crate::records::Tag;
use crate::store::Store;
use crate::writer::Job;

/// Most items one tag query answers.
pub const MAX_ITEMS_PER_QUERY: usize = 1_000;

/// A stored data item's metadata (no data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMeta {
    /// Upload order (higher is newer).
    pub seq: u64,
    /// The item id (base64url).
    pub id: String,
    /// The signer's address.
    pub owner: String,
    /// The signer's public key (base64url).
    pub owner_key: String,
    /// The signature (base64url).
    pub signature: String,
    /// The target, if any.
    pub target: Option<String>,
    /// The anchor, if any (as the gateway shows it).
    pub anchor: Option<String>,
    /// The tags, in order.
    pub tags: Vec<Tag>,
    /// Bytes of data.
    pub data_size: u64,
    /// When the node received it (ms).
    pub timestamp: u64,
    /// The node's block height when it received it.
    pub block_height: u64,
}

/// A data item to store: its metadata and the whole signed item.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// The metadata (`seq` is ignored: the store assigns it).
    pub meta: ItemMeta,
    /// The signed item, as uploaded.
    pub raw: Vec<u8>,
}

/// A process whose log begins after a checkpoint made elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The process.
    pub process_id: String,
    /// The checkpoint's id (an uploaded data item).
    pub checkpoint_id: String,
    /// The nonce of the last message the checkpoint includes.
    pub nonce: u64,
    /// That message's timestamp.
    pub timestamp: u64,
}

const ITEM_COLS: &str =
    "seq, id, owner, owner_key, signature, target, anchor, tags, data_size, timestamp, block_height";

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn item_row(row: &Row<'_>) -> Result<ItemMeta, DbError> {
    Ok(ItemMeta {
        seq: row.u64(0)?,
        id: row.text(1)?,
        owner: row.text(2)?,
        owner_key: row.text(3)?,
        signature: row.text(4)?,
        target: row.opt_text(5)?,
        anchor: row.opt_text(6)?,
        tags: row.json::<Vec<Tag>>(7)?,
        data_size: row.u64(8)?,
        timestamp: row.u64(9)?,
        block_height: row.u64(10)?,
    })
}

impl Store {
    /// Stores an uploaded data item and its tag index in one transaction, durable on return. An item
    /// already stored is left as it is (same id, same signed bytes).
    pub fn put_item(&self, item: NewItem) -> Result<(), StoreError> {
        let tags = serde_json::to_string(&item.meta.tags).map_err(|e| StoreError::Json {
            context: format!("encoding the tags of item {}", item.meta.id),
            source: e,
        })?;
        let ctx = self.ctx(format_args!("storing item {}", item.meta.id));
        self.submit_wait(|done| {
            Job::atomic(
                Box::new(move |conn: &Conn| {
                    let sql = |e| StoreError::db(ctx.clone(), e);
                    let m = &item.meta;
                    // `RETURNING` gives the new row's seq, and no row when the item was stored already.
                    let inserted = conn
                        .query_opt(
                            "INSERT INTO items (id, owner, owner_key, signature, target, anchor, tags, \
                             data_size, timestamp, block_height, raw) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                             ON CONFLICT DO NOTHING RETURNING seq",
                            args![
                                &m.id,
                                &m.owner,
                                &m.owner_key,
                                &m.signature,
                                &m.target,
                                &m.anchor,
                                &tags,
                                i64_of(m.data_size),
                                i64_of(m.timestamp),
                                i64_of(m.block_height),
                                &item.raw
                            ],
                            |r| r.int(0),
                        )
                        .map_err(sql)?;
                    let Some(seq) = inserted else {
                        return Ok(());
                    };
                    for t in &m.tags {
                        conn.execute(
                            "INSERT INTO item_tags (item_seq, name, value) VALUES (?1, ?2, ?3)",
                            args![seq, &t.name, &t.value],
                        )
                        .map_err(sql)?;
                    }
                    Ok(())
                }),
                done,
            )
        })
    }

    /// The metadata of a stored item.
    pub fn item(&self, id: &str) -> Result<Option<ItemMeta>, StoreError> {
        self.read(|conn| {
            conn.query_opt(
                &format!("SELECT {ITEM_COLS} FROM items WHERE id = ?1"),
                args![id],
                item_row,
            )
            .map_err(|e| StoreError::db(self.ctx(format_args!("reading item {id}")), e))
        })
    }

    /// The whole signed bytes of a stored item.
    pub fn item_raw(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            conn.query_opt("SELECT raw FROM items WHERE id = ?1", args![id], |r| r.bytes(0))
                .map_err(|e| StoreError::db(self.ctx(format_args!("reading item {id}")), e))
        })
    }

    /// Items with tag `name` equal to one of `values`, newest first, at most `limit`
    /// (capped at [`MAX_ITEMS_PER_QUERY`]).
    pub fn items_tagged(
        &self,
        name: &str,
        values: &[String],
        limit: usize,
    ) -> Result<Vec<ItemMeta>, StoreError> {
        let limit = limit.min(MAX_ITEMS_PER_QUERY);
        let mut out: Vec<ItemMeta> = Vec::new();
        self.read(|conn| {
            let sql = format!(
                "SELECT {ITEM_COLS} FROM items WHERE seq IN \
                 (SELECT item_seq FROM item_tags WHERE name = ?1 AND value = ?2) \
                 ORDER BY seq DESC LIMIT ?3"
            );
            for value in values {
                let rows = conn
                    .query(&sql, args![name, value, limit as i64], item_row)
                    .map_err(|e| StoreError::db(self.ctx("querying items by tag"), e))?;
                out.extend(rows);
            }
            Ok(())
        })?;
        out.sort_by_key(|m| std::cmp::Reverse(m.seq));
        out.dedup_by(|a, b| a.seq == b.seq);
        out.truncate(limit);
        Ok(out)
    }

    /// The newest items, at most `limit` (capped at [`MAX_ITEMS_PER_QUERY`]).
    pub fn items_newest(&self, limit: usize) -> Result<Vec<ItemMeta>, StoreError> {
        let limit = limit.min(MAX_ITEMS_PER_QUERY) as i64;
        self.read(|conn| {
            conn.query(
                &format!("SELECT {ITEM_COLS} FROM items ORDER BY seq DESC LIMIT ?1"),
                args![limit],
                item_row,
            )
            .map_err(|e| StoreError::db(self.ctx("listing items"), e))
        })
    }

    /// The ids of the items in block `height` of the node's chain, in upload order, at most `limit`
    /// (capped at [`MAX_ITEMS_PER_QUERY`]).
    pub fn items_at_height(&self, height: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        let limit = limit.min(MAX_ITEMS_PER_QUERY) as i64;
        self.read(|conn| {
            conn.query(
                "SELECT id FROM items WHERE block_height = ?1 ORDER BY seq LIMIT ?2",
                args![i64_of(height), limit],
                |r| r.text(0),
            )
            .map_err(|e| StoreError::db(self.ctx(format_args!("listing the items of block {height}")), e))
        })
    }

    /// Whether (and from which checkpoint) a process's log begins after an adopted checkpoint.
    pub fn adopted(&self, process_id: &str) -> Result<Option<Adopted>, StoreError> {
        self.read(|conn| {
            conn.query_opt(
                "SELECT process_id, checkpoint_id, nonce, timestamp FROM adopted WHERE process_id = ?1",
                args![process_id],
                |r| {
                    Ok(Adopted {
                        process_id: r.text(0)?,
                        checkpoint_id: r.text(1)?,
                        nonce: r.u64(2)?,
                        timestamp: r.u64(3)?,
                    })
                },
            )
            .map_err(|e| StoreError::db(self.ctx(format_args!("reading the origin of {process_id}")), e))
        })
    }
}

/// Writes an adopted mark (inside a schedule batch's transaction).
pub(crate) fn write_adopted(conn: &Conn, a: &Adopted) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO adopted (process_id, checkpoint_id, nonce, timestamp) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (process_id) DO UPDATE SET checkpoint_id = excluded.checkpoint_id, \
         nonce = excluded.nonce, timestamp = excluded.timestamp",
        args![
            &a.process_id,
            &a.checkpoint_id,
            i64_of(a.nonce),
            i64_of(a.timestamp)
        ],
    )
    .map(|_| ())
    .map_err(|e| StoreError::db(format!("marking the origin of {}", a.process_id), e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::StoreOptions;
    use crate::schedule::ScheduleBatch;

    fn item(id: &str, tags: &[(&str, &str)]) -> NewItem {
        NewItem {
            meta: ItemMeta {
                seq: 0,
                id: id.into(),
                owner: "owner".into(),
                owner_key: "key".into(),
                signature: "sig".into(),
                target: None,
                anchor: None,
                tags: tags
                    .iter()
                    .map(|(n, v)| Tag {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
                data_size: 3,
                timestamp: 7,
                block_height: 9,
            },
            raw: format!("raw-{id}").into_bytes(),
        }
    }

    #[test]
    fn items_are_stored_once_and_found_by_tag_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::test_db::open(dir.path(), StoreOptions::default());
        store
            .put_item(item("a", &[("Type", "Checkpoint"), ("Process", "p")]))
            .unwrap();
        store
            .put_item(item("b", &[("Type", "Checkpoint"), ("Process", "q")]))
            .unwrap();
        store.put_item(item("c", &[("Type", "Other")])).unwrap();
        // The same id again changes nothing (and adds no second tag rows).
        store.put_item(item("a", &[("Type", "Checkpoint")])).unwrap();
        let ids = |v: Vec<ItemMeta>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.items_tagged("Type", &["Checkpoint".into()], 10).unwrap()),
            ["b", "a"]
        );
        assert_eq!(
            ids(store
                .items_tagged("Type", &["Checkpoint".into(), "Other".into()], 10)
                .unwrap()),
            ["c", "b", "a"]
        );
        assert_eq!(
            ids(store.items_tagged("Type", &["Checkpoint".into()], 1).unwrap()),
            ["b"]
        );
        assert_eq!(
            ids(store.items_tagged("Process", &["p".into()], 10).unwrap()),
            ["a"]
        );
        assert!(
            store
                .items_tagged("Process", &["none".into()], 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(ids(store.items_newest(2).unwrap()), ["c", "b"]);
        // All three are in block 9, in upload order.
        assert_eq!(store.items_at_height(9, 10).unwrap(), ["a", "b", "c"]);
        assert_eq!(store.items_at_height(9, 2).unwrap(), ["a", "b"]);
        assert!(store.items_at_height(8, 10).unwrap().is_empty());
        let a = store.item("a").unwrap().unwrap();
        assert_eq!((a.tags.len(), a.data_size, a.block_height), (2, 3, 9));
        assert_eq!(store.item_raw("a").unwrap().unwrap(), b"raw-a");
        assert!(store.item("zz").unwrap().is_none());
        // Durable across a reopen.
        drop(store);
        let store = crate::test_db::open(dir.path(), StoreOptions::default());
        assert_eq!(ids(store.items_newest(10).unwrap()), ["c", "b", "a"]);
    }

    #[test]
    fn the_adopted_mark_commits_with_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::test_db::open(dir.path(), StoreOptions::default());
        assert!(store.adopted("p").unwrap().is_none());
        let mark = Adopted {
            process_id: "p".into(),
            checkpoint_id: "ck".into(),
            nonce: 41,
            timestamp: 1_700,
        };
        // A batch that fails (its entry's process does not exist) writes no mark.
        let failing = ScheduleBatch {
            entries: vec![crate::schedule::ScheduledEntry {
                entry: crate::LogEntry {
                    process_id: "nope".into(),
                    pos: 1,
                    message_id: None,
                    nonce: None,
                    timestamp: 0,
                    block_height: 0,
                    cron: None,
                    msg_json: "{}".into(),
                },
                schedule: None,
            }],
            adopted: Some(mark.clone()),
            ..ScheduleBatch::default()
        };
        assert!(store.commit_schedule(failing).is_err());
        assert!(store.adopted("p").unwrap().is_none());
        store
            .commit_schedule(ScheduleBatch {
                adopted: Some(mark.clone()),
                ..ScheduleBatch::default()
            })
            .unwrap();
        assert_eq!(store.adopted("p").unwrap(), Some(mark));
    }
}
