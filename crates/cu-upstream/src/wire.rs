//! The SU's JSON wire format (`servers/su/src/domain/core/json.rs`), as typed views. Every field the CU
//! does not need is ignored; every field it needs is checked when an edge is turned into a
//! [`Scheduled`] (an edge without `Nonce`, `Timestamp` or `Block-Height` is malformed).

use serde::{Deserialize, Deserializer};

/// `{name, value}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Tag {
    /// Tag name.
    pub name: String,
    /// Tag value.
    pub value: String,
}

/// The value of the first tag called `name`.
pub fn tag<'a>(tags: &'a [Tag], name: &str) -> Option<&'a str> {
    tags.iter().find(|t| t.name == name).map(|t| t.value.as_str())
}

/// `owner: {address, key}` (`key`: base64url public key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Owner {
    /// The owner's address, as the SU or gateway computed it.
    #[serde(default)]
    pub address: Option<String>,
    /// The owner's public key, base64url.
    #[serde(default)]
    pub key: Option<String>,
}

impl Owner {
    /// The reference's `addressFrom(owner)`: a 65-byte key is an Ethereum key (its EIP-55 address), else
    /// the given `address`.
    pub fn address_from(&self) -> String {
        use base64::Engine as _;
        let key = self.key.as_deref().unwrap_or_default().trim_end_matches('=');
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key) {
            Ok(bytes) if bytes.len() == 65 => cu_ans104::sig::ethereum_address(&bytes),
            _ => self.address.clone().unwrap_or_default(),
        }
    }
}

/// A number the SU sends as a JSON number or as a string of digits.
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Text(String),
    }
    match N::deserialize(d)? {
        N::Num(n) => Ok(n),
        N::Text(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a number"))),
    }
}

/// A cursor the SU sends as a string or a number; kept as text.
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    match v {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "cursor {other} is not a string or a number"
        ))),
    }
}

/// `GET /processes/:pid`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuProcess {
    /// The process id.
    pub process_id: String,
    /// The block height it was scheduled at.
    #[serde(deserialize_with = "lenient_u64")]
    pub block: u64,
    /// Its signer.
    #[serde(default)]
    pub owner: Owner,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// When it was scheduled (ms).
    #[serde(deserialize_with = "lenient_u64")]
    pub timestamp: u64,
    /// Its data as text (may be absent).
    #[serde(default)]
    pub data: Option<String>,
    /// Its anchor.
    #[serde(default)]
    pub anchor: Option<String>,
    /// Its signature, base64url.
    #[serde(default)]
    pub signature: Option<String>,
}

/// A scheduled message (`node.message`), or a hydrated stand-in for an assigned one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuMessage {
    /// The data item id.
    pub id: String,
    /// Its signer.
    #[serde(default)]
    pub owner: Owner,
    /// Its data, as UTF-8 (lossy) text.
    #[serde(default)]
    pub data: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Its signature, base64url.
    #[serde(default)]
    pub signature: Option<String>,
    /// Its anchor.
    #[serde(default)]
    pub anchor: Option<String>,
    /// Its target.
    #[serde(default)]
    pub target: Option<String>,
}

/// The SU's assignment of a slot (`node.assignment`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuAssignment {
    /// The assignment's data item id.
    pub id: String,
    /// Its signer (the SU).
    #[serde(default)]
    pub owner: Owner,
    /// `Process`, `Epoch`, `Nonce`, `Timestamp`, `Block-Height`, `Hash-Chain`, `Message`?, `Exclude`*.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Its signature, base64url.
    #[serde(default)]
    pub signature: Option<String>,
}

/// `edges[].node`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuNode {
    /// The message; `null` for an assignment of an existing message.
    #[serde(default)]
    pub message: Option<SuMessage>,
    /// The assignment.
    pub assignment: SuAssignment,
}

/// `edges[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuEdge {
    /// The page cursor (a timestamp, or a nonce in the SU's sequence mode).
    #[serde(deserialize_with = "lenient_text")]
    pub cursor: String,
    /// The slot.
    pub node: SuNode,
}

/// `page_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct PageInfo {
    /// More edges follow this page.
    #[serde(default)]
    pub has_next_page: bool,
}

/// `GET /:pid?from&to&limit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SuPage {
    /// Paging.
    #[serde(default)]
    pub page_info: PageInfo,
    /// The slots, in order.
    #[serde(default)]
    pub edges: Vec<SuEdge>,
}

/// One edge, checked: the slot it holds and what is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    /// The page cursor of the edge (what `from` resumes after).
    pub cursor: String,
    /// `Process` tag of the assignment.
    pub process_id: String,
    /// `Epoch` (0 when absent).
    pub epoch: u64,
    /// `Nonce`: the slot.
    pub nonce: u64,
    /// `Timestamp` (ms).
    pub timestamp: u64,
    /// `Block-Height`.
    pub block_height: u64,
    /// `Hash-Chain`, when the SU chains.
    pub hash_chain: Option<String>,
    /// The assignment id.
    pub assignment_id: String,
    /// The message, or `None` for an assignment of the message [`Scheduled::assigned`].
    pub message: Option<SuMessage>,
    /// `Message` tag: the id of the assigned message (assignments only).
    pub assigned: Option<String>,
    /// `Exclude` tags: fields the hydrated message leaves out (`Data`, `Tags`, ...).
    pub exclude: Vec<String>,
}

impl Scheduled {
    /// Checks an edge's assignment tags; `Err` names what is missing.
    pub fn from_edge(edge: &SuEdge) -> Result<Scheduled, String> {
        let a = &edge.node.assignment;
        let num = |name: &str| -> Result<u64, String> {
            let v = tag(&a.tags, name).ok_or_else(|| format!("assignment {} has no {name} tag", a.id))?;
            v.trim()
                .parse::<u64>()
                .map_err(|_| format!("assignment {}: {name} {v:?} is not a number", a.id))
        };
        let process_id = tag(&a.tags, "Process")
            .ok_or_else(|| format!("assignment {} has no Process tag", a.id))?
            .to_owned();
        let assigned = tag(&a.tags, "Message").map(str::to_owned);
        if edge.node.message.is_none() && assigned.is_none() {
            return Err(format!(
                "assignment {} has neither a message nor a Message tag",
                a.id
            ));
        }
        Ok(Scheduled {
            cursor: edge.cursor.clone(),
            process_id,
            epoch: tag(&a.tags, "Epoch")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
            nonce: num("Nonce")?,
            timestamp: num("Timestamp")?,
            block_height: num("Block-Height")?,
            hash_chain: tag(&a.tags, "Hash-Chain").map(str::to_owned),
            assignment_id: a.id.clone(),
            message: edge.node.message.clone(),
            assigned,
            exclude: a
                .tags
                .iter()
                .filter(|t| t.name == "Exclude")
                .map(|t| t.value.clone())
                .collect(),
        })
    }

    /// The id of the message in this slot (scheduled or assigned).
    pub fn message_id(&self) -> &str {
        match (&self.message, &self.assigned) {
            (Some(m), _) => &m.id,
            (None, Some(id)) => id,
            (None, None) => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"{"page_info":{"has_next_page":true},"edges":[
      {"cursor":"1700000000123","node":{
        "message":{"id":"m1","owner":{"address":"addr","key":"k"},"data":"1984","tags":[{"name":"Action","value":"Eval"}],
                   "signature":"sig","anchor":null,"target":"pid"},
        "assignment":{"id":"a1","owner":{"address":"su","key":"k"},"tags":[
          {"name":"Process","value":"pid"},{"name":"Epoch","value":"0"},{"name":"Nonce","value":"23"},
          {"name":"Timestamp","value":"1700000000123"},{"name":"Block-Height","value":"000001393008"},
          {"name":"Hash-Chain","value":"hc"}],"signature":"s"}}},
      {"cursor":1700000000200,"node":{"message":null,"assignment":{"id":"a2","tags":[
          {"name":"Process","value":"pid"},{"name":"Nonce","value":"24"},{"name":"Timestamp","value":"1700000000200"},
          {"name":"Block-Height","value":"1393009"},{"name":"Message","value":"m0"},{"name":"Exclude","value":"Data"}]}}}
    ]}"#;

    #[test]
    fn a_page_parses_into_checked_slots() {
        let page: SuPage = serde_json::from_str(PAGE).unwrap();
        assert!(page.page_info.has_next_page);
        let a = Scheduled::from_edge(&page.edges[0]).unwrap();
        assert_eq!(
            (a.nonce, a.timestamp, a.block_height, a.epoch),
            (23, 1_700_000_000_123, 1_393_008, 0)
        );
        assert_eq!(a.hash_chain.as_deref(), Some("hc"));
        assert_eq!(a.message_id(), "m1");
        let b = Scheduled::from_edge(&page.edges[1]).unwrap();
        assert_eq!(b.cursor, "1700000000200");
        assert_eq!(b.message_id(), "m0");
        assert_eq!(b.exclude, vec!["Data".to_string()]);
        assert!(b.hash_chain.is_none());
    }

    #[test]
    fn an_edge_without_a_nonce_is_refused() {
        let mut page: SuPage = serde_json::from_str(PAGE).unwrap();
        page.edges[0].node.assignment.tags.retain(|t| t.name != "Nonce");
        let e = Scheduled::from_edge(&page.edges[0]).unwrap_err();
        assert!(e.contains("Nonce"), "{e}");
        page.edges[1].node.assignment.tags.retain(|t| t.name != "Message");
        assert!(
            Scheduled::from_edge(&page.edges[1])
                .unwrap_err()
                .contains("Message tag")
        );
    }

    #[test]
    fn process_block_may_be_a_string() {
        let p: SuProcess = serde_json::from_str(
            r#"{"process_id":"p","block":"000001393008","owner":{"address":"a","key":"k"},"tags":[],"timestamp":17,"data":"x","anchor":null,"signature":"s"}"#,
        )
        .unwrap();
        assert_eq!((p.block, p.timestamp), (1_393_008, 17));
        assert_eq!(p.owner.address_from(), "a");
    }
}
