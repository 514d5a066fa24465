//! The gateway: GraphQL `transactions` (by ids; by owner and tags) and `GET /raw/:id`, with the queries
//! the reference CU and `@permaweb/ao-scheduler-utils` send.

use serde::Deserialize;
use serde_json::json;

use crate::error::UpstreamError;
use crate::http::Fetcher;
use crate::wire::{Owner, SuMessage, Tag, tag};

/// A transaction as GraphQL answers it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GqlTx {
    /// The id.
    pub id: String,
    /// The signature, base64url.
    #[serde(default)]
    pub signature: Option<String>,
    /// The anchor.
    #[serde(default)]
    pub anchor: Option<String>,
    /// The signer.
    #[serde(default)]
    pub owner: Owner,
    /// The tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// The target (`""` when none).
    #[serde(default)]
    pub recipient: Option<String>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<TxData>,
    #[serde(default)]
    errors: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TxData {
    transactions: Edges,
}

#[derive(Deserialize)]
struct Edges {
    #[serde(default)]
    edges: Vec<Edge>,
}

#[derive(Deserialize)]
struct Edge {
    node: GqlTx,
}

/// `loadTransactionMetaWith` (servers/cu `effects/ao-*.js`): a transaction's meta by id.
pub const TRANSACTIONS_BY_ID: &str = "query GetTransactions ($transactionIds: [ID!]!) {
  transactions(ids: $transactionIds) {
    edges { node { id signature anchor owner { address key } tags { name value } recipient } }
  }
}";

/// ao-scheduler-utils `loadScheduler`: the newest `Scheduler-Location` record an address signed.
pub const SCHEDULER_LOCATION: &str = "query GetSchedulerLocation ($owner: String!) {
  transactions(
    owners: [$owner]
    tags: [
      { name: \"Data-Protocol\", values: [\"ao\"] }
      { name: \"Type\", values: [\"Scheduler-Location\"] }
    ]
    first: 1
  ) {
    edges { node { id signature anchor owner { address key } tags { name value } recipient } }
  }
}";

/// The reference CU's `GetAoProcessCheckpoints` (`effects/ao-process.js`): a process's checkpoints
/// signed by trusted owners, newest block first.
pub const PROCESS_CHECKPOINTS: &str = "query GetAoProcessCheckpoints(
  $owners: [String!]!
  $processId: String!
  $limit: Int!
) {
  transactions(
    tags: [
      { name: \"Process\", values: [$processId] }
      { name: \"Type\", values: [\"Checkpoint\"] }
      { name: \"Data-Protocol\", values: [\"ao\"] }
    ],
    owners: $owners,
    first: $limit,
    sort: HEIGHT_DESC
  ) {
    edges { node { id owner { address } tags { name value } } }
  }
}";

/// The reference CU's `GetAoProcessCheckpoint` (`saveCheckpointWith`): whether `owner` already
/// uploaded a checkpoint of the process at this nonce and timestamp.
pub const EXISTING_CHECKPOINT: &str = "query GetAoProcessCheckpoint(
  $owner: String!
  $processId: String!
  $timestamp: String!
  $nonce: String!
) {
  transactions(
    tags: [
      { name: \"Process\", values: [$processId] }
      { name: \"Nonce\", values: [$nonce] }
      { name: \"Timestamp\", values: [$timestamp] }
      { name: \"Type\", values: [\"Checkpoint\"] }
      { name: \"Data-Protocol\", values: [\"ao\"] }
    ],
    owners: [$owner]
    first: 1
  ) {
    edges { node { id owner { address } tags { name value } } }
  }
}";

/// Where the gateway is.
#[derive(Debug, Clone)]
pub struct Gateway {
    fetcher: Fetcher,
    graphql_url: String,
    arweave_url: String,
}

impl Gateway {
    /// A gateway answering GraphQL at `graphql_url` and raw data under `arweave_url`.
    pub fn new(fetcher: Fetcher, graphql_url: String, arweave_url: String) -> Gateway {
        Gateway {
            fetcher,
            graphql_url,
            arweave_url: arweave_url.trim_end_matches('/').to_owned(),
        }
    }

    fn transactions(
        &self,
        what: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<Vec<GqlTx>, UpstreamError> {
        let answer: Answer = self.fetcher.post_json(
            what,
            &self.graphql_url,
            &json!({"query": query, "variables": variables}),
        )?;
        if let Some(errors) = answer.errors.filter(|e| !e.is_null()) {
            return Err(UpstreamError::malformed(
                what,
                &self.graphql_url,
                format!("GraphQL errors: {errors}"),
            ));
        }
        let data = answer
            .data
            .ok_or_else(|| UpstreamError::malformed(what, &self.graphql_url, "no data in the answer"))?;
        Ok(data.transactions.edges.into_iter().map(|e| e.node).collect())
    }

    /// The meta of transaction `id`; [`UpstreamError::NotFound`] when the gateway has none.
    pub fn transaction(&self, id: &str) -> Result<GqlTx, UpstreamError> {
        let what = format!("gateway meta of {id}");
        self.transactions(&what, TRANSACTIONS_BY_ID, json!({"transactionIds": [id]}))?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| UpstreamError::NotFound(format!("transaction {id} was not found on the gateway")))
    }

    /// The `Url` and `Time-To-Live` (ms) of the newest `Scheduler-Location` record signed by `address`.
    pub fn scheduler_location(&self, address: &str) -> Result<(String, u64), UpstreamError> {
        let what = format!("Scheduler-Location of {address}");
        let txs = self.transactions(&what, SCHEDULER_LOCATION, json!({"owner": address}))?;
        let record = txs.first().ok_or_else(|| {
            UpstreamError::NotFound(format!("no Scheduler-Location record for scheduler {address}"))
        })?;
        let url = tag(&record.tags, "Url")
            .ok_or_else(|| UpstreamError::malformed(&what, &self.graphql_url, "the record has no Url tag"))?;
        let ttl = tag(&record.tags, "Time-To-Live")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok((url.trim_end_matches('/').to_owned(), ttl))
    }

    /// This gateway with GraphQL answered at `graphql_url` instead (the reference's
    /// `CHECKPOINT_GRAPHQL_URL`).
    pub fn with_graphql(&self, graphql_url: String) -> Gateway {
        Gateway {
            graphql_url,
            ..self.clone()
        }
    }

    /// Checkpoints of `process_id` signed by one of `owners`, as the reference queries them (at most
    /// `limit`, newest block first).
    pub fn process_checkpoints(
        &self,
        process_id: &str,
        owners: &[String],
        limit: usize,
    ) -> Result<Vec<GqlTx>, UpstreamError> {
        let what = format!("checkpoints of {process_id}");
        self.transactions(
            &what,
            PROCESS_CHECKPOINTS,
            json!({"owners": owners, "processId": process_id, "limit": limit}),
        )
    }

    /// The checkpoint `owner` uploaded of `process_id` at `nonce` and `timestamp`, if any.
    pub fn existing_checkpoint(
        &self,
        owner: &str,
        process_id: &str,
        nonce: &str,
        timestamp: &str,
    ) -> Result<Option<GqlTx>, UpstreamError> {
        let what = format!("existing checkpoint of {process_id}");
        Ok(self
            .transactions(
                &what,
                EXISTING_CHECKPOINT,
                json!({"owner": owner, "processId": process_id, "timestamp": timestamp, "nonce": nonce}),
            )?
            .into_iter()
            .next())
    }

    /// `GET {arweave}/raw/{id}`: the bytes of a data item's data.
    pub fn raw(&self, id: &str) -> Result<Vec<u8>, UpstreamError> {
        let url = format!("{}/raw/{}", self.arweave_url, crate::http::encode_query(id));
        self.fetcher.get_bytes(&format!("raw data of {id}"), &url)
    }

    /// An assigned message, hydrated as the reference CU does: its meta from GraphQL and its data as text
    /// from `/raw` (not fetched when the assignment `Exclude`s `Data`).
    pub fn hydrate(&self, id: &str, exclude: &[String]) -> Result<SuMessage, UpstreamError> {
        let tx = self.transaction(id)?;
        let skip = |f: &str| exclude.iter().any(|e| e == f);
        let data = if skip("Data") {
            None
        } else {
            Some(String::from_utf8_lossy(&self.raw(id)?).into_owned())
        };
        Ok(SuMessage {
            id: tx.id,
            owner: tx.owner,
            data,
            tags: if skip("Tags") { Vec::new() } else { tx.tags },
            signature: if skip("Signature") { None } else { tx.signature },
            anchor: if skip("Anchor") { None } else { tx.anchor },
            target: tx.recipient,
        })
    }
}
