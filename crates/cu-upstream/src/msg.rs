//! The msg handed to `handle` for a slot read from an SU, as the reference CU builds it: `mapNode`
//! (`effects/ao-su.js`), the hydration of assignments (`lib/hydrateMessages.js`) and `messageSchema`'s key
//! order (`Id, Signature, Data, Owner, Target, Anchor, From, Forwarded-By, Tags, Epoch, Nonce, Timestamp,
//! Block-Height, Hash-Chain, Cron, Read-Only`; absent keys vanish). Tags named `From` or `Owner` are
//! dropped from `Tags`.

use serde_json::{Map, Value, json};

use crate::wire::{Scheduled, SuMessage, SuProcess, Tag, tag};

fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .filter(|t| t.name != "From" && t.name != "Owner")
            .map(|t| json!({"name": t.name, "value": t.value}))
            .collect(),
    )
}

fn from_of(tags: &[Tag], owner: &str) -> String {
    tag(tags, "From-Process")
        .filter(|v| !v.is_empty())
        .unwrap_or(owner)
        .to_owned()
}

/// The msg of a slot. For a scheduled message `Target` is the assignment's `Process` and `Forwarded-By`
/// is the signer when the message has a `From-Process` tag; for an assignment `message` is the hydrated
/// assigned message, `Target` is its own recipient (`""` when none) and there is no `Forwarded-By`.
pub fn slot_msg(s: &Scheduled, message: &SuMessage) -> String {
    let is_assignment = s.message.is_none();
    let owner = message.owner.address_from();
    let mut m = Map::new();
    m.insert("Id".into(), message.id.clone().into());
    if let Some(sig) = &message.signature {
        m.insert("Signature".into(), sig.clone().into());
    }
    if let Some(d) = &message.data {
        m.insert("Data".into(), d.clone().into());
    }
    m.insert("Owner".into(), owner.clone().into());
    let target = if is_assignment {
        message.target.clone().unwrap_or_default()
    } else {
        s.process_id.clone()
    };
    m.insert("Target".into(), target.into());
    // The SU and the gateway always answer an `anchor` (null when none) and the reference keeps it.
    m.insert(
        "Anchor".into(),
        message.anchor.clone().map_or(Value::Null, Value::from),
    );
    m.insert("From".into(), from_of(&message.tags, &owner).into());
    if !is_assignment && tag(&message.tags, "From-Process").is_some() {
        m.insert("Forwarded-By".into(), owner.into());
    }
    m.insert("Tags".into(), tags_json(&message.tags));
    m.insert("Epoch".into(), s.epoch.into());
    m.insert("Nonce".into(), s.nonce.into());
    m.insert("Timestamp".into(), s.timestamp.into());
    m.insert("Block-Height".into(), s.block_height.into());
    if let Some(h) = &s.hash_chain {
        m.insert("Hash-Chain".into(), h.clone().into());
    }
    m.insert("Cron".into(), false.into());
    m.insert("Read-Only".into(), false.into());
    Value::Object(m).to_string()
}

/// The aop-6 boot message the reference CU prepends on a cold start when the SU's schedule does not
/// begin with the process itself (`maybePrependProcessMessage`): the process's fields, `Data` = the text
/// of its raw data, no `Epoch`/`Nonce`/`Hash-Chain`.
pub fn boot_msg(p: &SuProcess, data: &str) -> String {
    let owner = p.owner.address_from();
    let mut m = Map::new();
    m.insert("Id".into(), p.process_id.clone().into());
    if let Some(sig) = &p.signature {
        m.insert("Signature".into(), sig.clone().into());
    }
    m.insert("Data".into(), data.into());
    m.insert("Owner".into(), owner.clone().into());
    m.insert("Target".into(), p.process_id.clone().into());
    m.insert("Anchor".into(), p.anchor.clone().map_or(Value::Null, Value::from));
    m.insert("From".into(), from_of(&p.tags, &owner).into());
    m.insert("Tags".into(), tags_json(&p.tags));
    m.insert("Timestamp".into(), p.timestamp.into());
    m.insert("Block-Height".into(), p.block.into());
    m.insert("Cron".into(), false.into());
    m.insert("Read-Only".into(), false.into());
    Value::Object(m).to_string()
}

/// The process's env (`AoGlobal`): `{Process: {Id, Owner, Tags}, Module: {Id, Owner, Tags}}`.
pub fn env_json(p: &SuProcess, module_id: &str, module_owner: &str, module_tags: &[Tag]) -> String {
    let all = |tags: &[Tag]| {
        Value::Array(
            tags.iter()
                .map(|t| json!({"name": t.name, "value": t.value}))
                .collect(),
        )
    };
    json!({
        "Process": {"Id": p.process_id, "Owner": p.owner.address_from(), "Tags": all(&p.tags)},
        "Module": {"Id": module_id, "Owner": module_owner, "Tags": all(module_tags)},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Owner, SuEdge};

    fn edge(message: Option<SuMessage>, extra: &[(&str, &str)]) -> Scheduled {
        let mut tags = vec![
            Tag {
                name: "Process".into(),
                value: "pid".into(),
            },
            Tag {
                name: "Epoch".into(),
                value: "0".into(),
            },
            Tag {
                name: "Nonce".into(),
                value: "3".into(),
            },
            Tag {
                name: "Timestamp".into(),
                value: "1700".into(),
            },
            Tag {
                name: "Block-Height".into(),
                value: "0001500000".into(),
            },
            Tag {
                name: "Hash-Chain".into(),
                value: "hc".into(),
            },
        ];
        tags.extend(extra.iter().map(|(n, v)| Tag {
            name: (*n).into(),
            value: (*v).into(),
        }));
        let e: SuEdge = serde_json::from_value(json!({"cursor": "1700", "node": {
            "message": message.map(|m| json!({"id": m.id, "owner": {"address": m.owner.address, "key": m.owner.key},
                "data": m.data, "tags": m.tags, "signature": m.signature, "anchor": m.anchor, "target": m.target})),
            "assignment": {"id": "a3", "tags": tags}}}))
        .unwrap();
        Scheduled::from_edge(&e).unwrap()
    }

    fn message(tags: &[(&str, &str)]) -> SuMessage {
        SuMessage {
            id: "mid".into(),
            owner: Owner {
                address: Some("wallet".into()),
                key: Some("k".into()),
            },
            data: Some("hello".into()),
            tags: tags
                .iter()
                .map(|(n, v)| Tag {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            signature: Some("sig".into()),
            anchor: None,
            target: Some("elsewhere".into()),
        }
    }

    #[test]
    fn a_scheduled_message_in_reference_order() {
        let m = message(&[("Action", "Eval"), ("From", "x")]);
        let s = edge(Some(m.clone()), &[]);
        assert_eq!(
            slot_msg(&s, &m),
            r#"{"Id":"mid","Signature":"sig","Data":"hello","Owner":"wallet","Target":"pid","Anchor":null,"From":"wallet","Tags":[{"name":"Action","value":"Eval"}],"Epoch":0,"Nonce":3,"Timestamp":1700,"Block-Height":1500000,"Hash-Chain":"hc","Cron":false,"Read-Only":false}"#
        );
    }

    #[test]
    fn a_pushed_message_is_forwarded_by_its_signer() {
        let m = message(&[("From-Process", "sender")]);
        let s = edge(Some(m.clone()), &[]);
        let v: Value = serde_json::from_str(&slot_msg(&s, &m)).unwrap();
        assert_eq!(v["From"], "sender");
        assert_eq!(v["Forwarded-By"], "wallet");
    }

    #[test]
    fn an_assignment_targets_the_message_recipient() {
        let m = message(&[("From-Process", "sender")]);
        let s = edge(None, &[("Message", "mid")]);
        let v: Value = serde_json::from_str(&slot_msg(&s, &m)).unwrap();
        assert_eq!(v["Target"], "elsewhere");
        assert_eq!(v["From"], "sender");
        assert!(v.get("Forwarded-By").is_none());
        assert_eq!(v["Nonce"], 3);
    }
}
