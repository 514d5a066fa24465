//! The fuzz targets. Each takes any bytes and panics only when a property of the code under test fails.

use std::io::Read as _;

use cu_ans104::tags::{decode_tags, decode_tags_checked, encode_tags};
use cu_ans104::{DataItem, MAX_TAG_BYTES, MAX_TAGS};
use cu_engine::checkpoint::{self, CHUNK, CheckpointState};
use cu_node::graphql::{self, MAX_IDS, MAX_QUERY_BYTES};
use cu_node::hbu;
use cu_wasm::Snapshot;
use serde_json::{Value, json};

use crate::alloc::largest_during;

/// Allocation any parse may make whatever its input (small tables, error messages, decoder state).
const SLACK: usize = 1 << 20;

/// Largest memory a target restores for real (the format allows 4 GiB; the fuzzer needs no more).
const RESTORE_CAP: u64 = 16 << 20;

/// The ANS-104 data item: `DataItem::parse`, its accessors, `verify`, the Avro tags, and the SU wire JSON
/// cu-scheduler builds from an item.
///
/// Properties: errors are values; nothing is allocated beyond the input (plus fixed slack); a parsed item
/// re-assembles from its fields to exactly the input; its tags survive `encode_tags` → `decode_tags`;
/// `id` is base64url of 32 bytes; the SU wire JSON carries the item's id and tags as hbu reads them back.
pub fn ans104(data: &[u8]) {
    let (parsed, largest) = largest_during(|| DataItem::parse(data));
    assert!(
        largest <= data.len() + 3 * MAX_TAG_BYTES + SLACK,
        "DataItem::parse of {} bytes allocated {largest} bytes at once",
        data.len()
    );
    if let Ok(item) = parsed {
        let mut again = Vec::with_capacity(data.len());
        again.extend_from_slice(&item.signature_type().as_u16().to_le_bytes());
        again.extend_from_slice(item.signature());
        again.extend_from_slice(item.owner());
        for field in [item.target_bytes(), item.anchor_bytes()] {
            match field {
                Some(b) => {
                    assert_eq!(b.len(), 32);
                    again.push(1);
                    again.extend_from_slice(b);
                }
                None => again.push(0),
            }
        }
        again.extend_from_slice(&(item.tags().len() as u64).to_le_bytes());
        again.extend_from_slice(&(item.raw_tags().len() as u64).to_le_bytes());
        again.extend_from_slice(item.raw_tags());
        again.extend_from_slice(item.data());
        assert_eq!(again, data, "a parsed item re-assembles to its input");
        assert_eq!(item.id().len(), 43);
        assert!(item.tags().len() <= MAX_TAGS);
        if item.non_utf8_tag().is_none() {
            let canonical =
                encode_tags(item.tags()).unwrap_or_else(|e| panic!("re-encoding parsed tags: {e}"));
            let back = decode_tags(&canonical, item.tags().len() as u64)
                .unwrap_or_else(|e| panic!("decoding re-encoded tags: {e}"));
            assert_eq!(back, item.tags());
        }
        let _ = item.verify();
        let _ = item.owner_address();
        for j in [
            cu_scheduler::wire::message_json(&item),
            cu_scheduler::wire::assignment_json(&item),
        ] {
            assert_eq!(j["id"], item.id().as_str());
            let tags = &j["tags"];
            assert_eq!(tags.as_array().map(Vec::len), Some(item.tags().len()));
            for (name, _) in item.tags() {
                let first = item.tag(name);
                assert_eq!(
                    hbu::tag(tags, name),
                    first,
                    "tag {name:?} as hbu reads the SU JSON"
                );
            }
        }
    }
    // The tag decoder on its own, with the declared count in the first byte.
    if let Some((&declared, bytes)) = data.split_first() {
        let (decoded, largest) = largest_during(|| decode_tags_checked(bytes, u64::from(declared)));
        assert!(largest <= 3 * bytes.len() + SLACK);
        if let Ok((tags, invalid)) = decoded {
            assert_eq!(tags.len(), usize::from(declared));
            if invalid.is_none() && encode_tags(&tags).is_ok_and(|e| e.len() <= bytes.len()) {
                let again = encode_tags(&tags).unwrap_or_default();
                assert_eq!(
                    decode_tags(&again, tags.len() as u64).ok().as_deref(),
                    Some(&tags[..])
                );
            }
        }
    }
}

/// A full answer every selection can be projected on.
fn sample_answer(field: &graphql::Field) -> Value {
    let node = json!({
        "id": "a", "anchor": "b", "signature": "c", "recipient": "d",
        "owner": {"address": "e", "key": "f"}, "fee": {"winston": "0", "ar": "0"},
        "quantity": {"winston": "0", "ar": "0"}, "data": {"size": "0", "type": null},
        "tags": [{"name": "Data-Protocol", "value": "ao"}, {"name": "Type", "value": "Process"}],
        "block": {"id": "g", "timestamp": 1, "height": 2, "previous": "h"}, "parent": null,
    });
    graphql::transactions_answer(field, vec![node.clone(), node], 1)
}

/// How deep a projected value nests.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The GraphQL subset: `graphql::parse`, `Field::tx_filter`, `project`. The input is the query, then
/// optionally a NUL byte and the `variables` JSON.
///
/// Properties (on a [`crate::driver::STACK`] stack in the test mode): every input terminates without
/// stack overflow; a query over [`MAX_QUERY_BYTES`] is refused; a `tx_filter` holds at most [`MAX_IDS`]
/// ids, owners and tags and `first` ≤ 100; projection is idempotent and nests no deeper than the
/// selection bound allows.
pub fn graphql(data: &[u8]) {
    let (query, vars) = match data.iter().position(|&b| b == 0) {
        Some(i) => (
            &data[..i],
            serde_json::from_slice(&data[i + 1..]).unwrap_or(Value::Null),
        ),
        None => (data, Value::Null),
    };
    let query = String::from_utf8_lossy(query);
    let parsed = graphql::parse(&query, &vars);
    if query.len() > MAX_QUERY_BYTES {
        assert!(parsed.is_err(), "a query of {} bytes was accepted", query.len());
    }
    let Ok(fields) = parsed else { return };
    for field in &fields {
        if let Ok(f) = field.tx_filter() {
            assert!(f.ids.as_ref().map_or(0, Vec::len) <= MAX_IDS);
            assert!(f.owners.as_ref().map_or(0, Vec::len) <= MAX_IDS);
            assert!(f.tags.len() <= MAX_IDS);
            assert!(f.first <= 100);
        }
        let answer = sample_answer(field);
        // Projection only ever removes: nothing nests deeper than the full answer (6 levels).
        assert!(
            depth(&answer) <= 6,
            "projected answer nests {} deep",
            depth(&answer)
        );
        assert_eq!(field.project(&answer), answer, "projection is idempotent");
        let _ = field.project(&vars);
    }
}

/// SU pages as hbu mode receives them (`POST /result/:slot`): JSON, then `hbu::edge_at`, `msg_of`,
/// `check_chain` and `verify_assignment`.
///
/// Properties: errors are values; the msg `msg_of` builds is a JSON object whose `Id`, `Nonce`,
/// `Timestamp` and `Block-Height` are the values it returns, and whose `Target` is the assignment's
/// `Process` tag; an assignment that verifies has an id that is the hash of its signature.
pub fn su_page(data: &[u8]) {
    let Ok(page) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = hbu::check_chain(&page);
    let cursors: Vec<u64> = page["edges"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["cursor"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for slot in [0, 1, 2, 3, u64::MAX].into_iter().chain(cursors) {
        let Ok(edge) = hbu::edge_at(&page, slot) else {
            continue;
        };
        let assignment = &edge["node"]["assignment"];
        if let Ok((msg, nonce, ts, height, id)) = hbu::msg_of(&edge["node"]["message"], assignment) {
            let m: Value = serde_json::from_str(&msg).unwrap_or_else(|e| panic!("msg is not JSON: {e}"));
            assert_eq!(m["Id"], id.as_str());
            assert_eq!(m["Nonce"], nonce);
            assert_eq!(m["Timestamp"], ts);
            assert_eq!(m["Block-Height"], height);
            let process = hbu::tag(&assignment["tags"], "Process").unwrap_or_default();
            assert_eq!(m["Target"], process);
            assert!(m["Tags"].is_array());
            let _ = hbu::headers(nonce, ts, height);
        }
        if hbu::verify_assignment(assignment).is_ok() {
            assert!(assignment["id"].as_str().is_some_and(|id| id.len() == 43));
        }
    }
}

/// Bytes a zstd stream really produces (at most `cap`), counted without keeping them.
fn zstd_output_len(src: &[u8], cap: u64) -> u64 {
    let Ok(decoder) = zstd::stream::read::Decoder::with_buffer(src) else {
        return 0;
    };
    let mut decoder = decoder.take(cap);
    let mut buf = [0u8; 4096];
    let mut n = 0u64;
    while let Ok(k) = decoder.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n
}

/// The bytes after a `MAGIC, version, header length, header` prefix (plus `skip`), if there are any.
fn tail(data: &[u8], skip: usize) -> &[u8] {
    let len = data
        .get(12..16)
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
    data.get(16 + len + skip..).unwrap_or_default()
}

/// Checks the largest allocation of a decoder against what its compressed tail really yields: at most
/// what `cu_wasm::snapshot::decompress_exact` reserves from the input's size (64 bytes a byte plus 1 MiB),
/// or twice the bytes the stream really produces (the buffer doubling as it grows).
fn assert_bounded(what: &str, data: &[u8], largest: usize, compressed: &[u8]) {
    let plain = data.len().saturating_mul(64) + 2 * SLACK;
    if largest <= plain {
        return;
    }
    let produced = zstd_output_len(compressed, largest as u64) as usize;
    assert!(
        largest <= plain + 2 * produced,
        "{what}: {} input bytes (whose zstd stream yields {produced}) made a {largest}-byte allocation",
        data.len()
    );
}

/// Process snapshots (`--state-in`): `Snapshot::decode`.
///
/// Properties: errors are values; no allocation follows the header's `memory_len` beyond what the
/// compressed memory really yields; a decoded snapshot re-encodes and decodes to itself, and its memory
/// has the BLAKE3 its header named.
pub fn snapshot(data: &[u8]) {
    let (decoded, largest) = largest_during(|| Snapshot::decode(data));
    assert_bounded("Snapshot::decode", data, largest, tail(data, 0));
    if let Ok(snap) = decoded {
        let bytes = snap
            .encode()
            .unwrap_or_else(|e| panic!("re-encoding a decoded snapshot: {e}"));
        match Snapshot::decode(&bytes) {
            Ok(again) => assert!(again == snap, "snapshot round trip"),
            Err(e) => panic!("decoding a re-encoded snapshot: {e}"),
        }
    }
}

/// Rewrites the header digest of a checkpoint file so that mutations of the header reach the JSON and
/// payload checks instead of stopping at the digest.
fn with_header_digest(data: &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(data.get(12..16)?.try_into().ok()?) as usize;
    let json = data.get(16..16 + len)?;
    let mut out = data.to_vec();
    out.get_mut(16 + len..16 + len + 32)?
        .copy_from_slice(blake3::hash(json).as_bytes());
    Some(out)
}

/// Checkpoint files and restore validation: `checkpoint::decode`, then `apply` onto a zeroed memory of the
/// header's size (up to [`RESTORE_CAP`]) and `verify`; `decode_into` (the restore path) must agree with
/// them. Run on the input as is and with its header digest
/// fixed up.
///
/// Properties: errors are values; no allocation follows `payload_len` or `memory_len` beyond what the
/// payload really yields; the payload has its declared length; memory that verifies has the header's
/// BLAKE3; applying a checkpoint whose runs are ascending and disjoint, then encoding those chunks again,
/// gives back the same payload.
pub fn checkpoint(data: &[u8]) {
    checkpoint_one(data);
    if let Some(fixed) = with_header_digest(data) {
        checkpoint_one(&fixed);
    }
}

fn checkpoint_one(data: &[u8]) {
    // Straight into a memory of any size (restore decodes before the file's hash is known): errors are
    // values.
    let _ = checkpoint::decode_into(&mut vec![0u8; 2 * CHUNK], data);
    let (decoded, largest) = largest_during(|| checkpoint::decode(data));
    assert_bounded("checkpoint::decode", data, largest, tail(data, 32));
    let Ok(decoded) = decoded else { return };
    let h = &decoded.header;
    assert_eq!(decoded.payload.len() as u64, h.payload_len);
    assert!(h.payload_len <= h.memory_len);
    if h.memory_len > RESTORE_CAP {
        return;
    }
    let mut memory = vec![0u8; h.memory_len as usize];
    let applied = checkpoint::apply(&mut memory, &decoded);
    // decode_into is decode + apply in one pass: the same verdict, the same bytes.
    let mut direct = vec![0u8; h.memory_len as usize];
    let into = checkpoint::decode_into(&mut direct, data);
    assert_eq!(
        applied.is_ok(),
        into.is_ok(),
        "decode_into and decode + apply disagree"
    );
    if applied.is_err() {
        return;
    }
    assert_eq!(
        direct, memory,
        "decode_into wrote other bytes than decode + apply"
    );
    if checkpoint::verify(&memory, h).is_ok() {
        assert_eq!(blake3::hash(&memory).to_hex().as_str(), h.memory_blake3);
    }
    let disjoint = h
        .runs
        .windows(2)
        .all(|w| u64::from(w[0][0]) + u64::from(w[0][1]) <= u64::from(w[1][0]));
    let Some(module_sha256) = hex_32(&h.module_sha256) else {
        return;
    };
    if disjoint && h.runs.iter().all(|r| r[1] > 0) {
        let indices: Vec<u32> = h
            .runs
            .iter()
            .flat_map(|r| r[0]..r[0].saturating_add(r[1]))
            .collect();
        // Chunks past the end of memory hold nothing; encode skips them as apply does.
        if indices.iter().any(|&i| i as usize * CHUNK >= memory.len()) {
            return;
        }
        let state = CheckpointState {
            format: h.format,
            module_sha256,
            pos: h.pos,
            globals: h.globals.clone(),
            glue: h.glue.clone(),
            memory: &memory,
        };
        let again = checkpoint::encode(&state, h.parent, &indices)
            .and_then(|b| checkpoint::decode(&b))
            .unwrap_or_else(|e| panic!("re-encoding an applied checkpoint: {e}"));
        assert_eq!(again.payload, decoded.payload, "checkpoint payload round trip");
    }
}

fn hex_32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// An independent decoder of `application/x-www-form-urlencoded` queries as the routes promise: pairs split
/// on `&` (empty parts skipped) and the first `=`, `+` is a space, `%` must be followed by two hex digits,
/// and the result must be UTF-8.
fn reference_query(raw: &str) -> Option<Vec<(String, String)>> {
    fn decode(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hi = (*b.get(i + 1)? as char).to_digit(16)?;
                    let lo = (*b.get(i + 2)? as char).to_digit(16)?;
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).ok()
    }
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// HTTP query strings: the parser behind every route's `?...` (`cu_http::parse_query`).
///
/// Properties: the parser agrees with an independent decoder ([`reference_query`]) on what is accepted
/// and what it decodes to; a rejection is a 400; decoded pairs, percent-encoded again, parse back to
/// themselves.
pub fn http_query(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let ours = cu_http::parse_query(Some(&raw));
    match (&ours, reference_query(&raw)) {
        (Ok(pairs), Some(want)) => assert_eq!(pairs, &want, "query {raw:?}"),
        (Err(e), None) => assert_eq!(e.status().as_u16(), 400, "{e}"),
        (Ok(pairs), None) => panic!("query {raw:?} was accepted as {pairs:?}, the reference refuses it"),
        (Err(e), Some(want)) => panic!("query {raw:?} was refused ({e}), the reference reads {want:?}"),
    }
    if let Ok(pairs) = ours {
        let again: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let again = again.join("&");
        let reparsed = cu_http::parse_query(Some(&again)).unwrap_or_else(|e| panic!("{again:?}: {e}"));
        let want: Vec<_> = pairs
            .into_iter()
            .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
            .collect();
        // `=` alone (an empty key and value) survives as a pair; re-encoded it is `=` again.
        let got: Vec<_> = reparsed
            .into_iter()
            .filter(|(k, v)| !(k.is_empty() && v.is_empty()))
            .collect();
        assert_eq!(got, want, "query round trip via {again:?}");
    }
}
