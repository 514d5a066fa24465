//! Differential tests against the real client libraries (`tests/oracle/oracle.mjs`: `@permaweb/aoconnect`
//! 0.0.98 and `@dha-team/arbundles` 1.0.3 from npm).
//!
//! 1. Items signed by aoconnect's `createDataItemSigner` (captured from `message()`), by arbundles'
//!    `ArweaveSigner` and by its `EthereumSigner` must parse and verify here, with every field equal to what
//!    arbundles reads back (id, owner, address, target, anchor, tags, data, deep hash).
//! 2. Items we sign (Arweave wallet, Ethereum signer) must verify in arbundles with the same fields.
//! 3. Tampered items must fail on both sides.
//!
//! Needs `npm ci --ignore-scripts --prefix crates/cu-ans104/tests/oracle` (done by `tests/setup.sh`); without
//! it these tests fail, naming that command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cu_ans104::{DataItem, EthereumSigner, SignatureType, Wallet};
use serde_json::Value;

const INSTALL: &str = "npm ci --ignore-scripts --prefix crates/cu-ans104/tests/oracle";
const TARGET: &str = "6bV9Uh0Bq2N7Z1f7dUP9hKxYQ0KkR3rCq5m3S1lM1xE";
const ETH_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle")
}

fn oracle(args: &[&str]) -> String {
    let dir = oracle_dir();
    for pkg in ["@permaweb/aoconnect", "@dha-team/arbundles"] {
        assert!(
            dir.join("node_modules").join(pkg).join("package.json").exists(),
            "the npm oracle is not installed ({pkg} missing): run `{INSTALL}` from the repository root"
        );
    }
    let out = Command::new("node")
        .arg(dir.join("oracle.mjs"))
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node (is Node.js installed?): {e}"));
    assert!(
        out.status.success(),
        "oracle {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Compare our reading of `item` with the oracle's JSON description of the same bytes.
fn assert_same(name: &str, item: &DataItem, want: &Value) {
    assert_eq!(want["valid"], true, "{name}: oracle says invalid: {want}");
    assert_eq!(item.id(), want["id"], "{name}: id");
    assert_eq!(
        u64::from(item.signature_type().as_u16()),
        want["signatureType"],
        "{name}: type"
    );
    assert_eq!(item.owner_b64url(), want["owner"], "{name}: owner");
    assert_eq!(item.owner_address(), want["address"], "{name}: address");
    assert_eq!(
        item.target().map(Value::from).unwrap_or(Value::Null),
        want["target"],
        "{name}: target"
    );
    assert_eq!(
        item.anchor().map(Value::from).unwrap_or(Value::Null),
        want["anchor"],
        "{name}: anchor"
    );
    let tags: Vec<Value> = item
        .tags()
        .iter()
        .map(|(n, v)| Value::from(vec![n.clone(), v.clone()]))
        .collect();
    assert_eq!(Value::from(tags), want["tags"], "{name}: tags");
    assert_eq!(URL_SAFE_NO_PAD.encode(item.data()), want["data"], "{name}: data");
    assert_eq!(
        URL_SAFE_NO_PAD.encode(item.signature_data()),
        want["signatureDeepHash"],
        "{name}: deep hash"
    );
}

#[test]
fn client_signed_items_verify_here() {
    let dir = tempfile::tempdir().unwrap();
    let listing = oracle(&["sign", dir.path().to_str().unwrap()]);
    let names: Vec<&str> = listing.lines().collect();
    assert!(names.len() >= 7, "oracle produced {names:?}");
    let mut seen_types = std::collections::BTreeSet::new();
    for name in names {
        let raw = std::fs::read(dir.path().join(format!("{name}.bin"))).unwrap();
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("{name}.json"))).unwrap())
                .unwrap();
        let item = DataItem::parse(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = Instant::now();
        item.verify().unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: {} bytes, verified in {:?}", raw.len(), t.elapsed());
        assert_same(name, &item, &want);
        seen_types.insert(item.signature_type().as_u16());

        // Tampering with the last byte (data, or a length field when there is no data) must fail here.
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert!(
            DataItem::parse(&bad).and_then(|i| i.verify()).is_err(),
            "{name}: tampered item verifies"
        );
    }
    assert_eq!(seen_types.into_iter().collect::<Vec<_>>(), vec![1, 3]);
    // aoconnect's message() adds its protocol tags and the process as target; check one to be sure the
    // captured body is really what aoconnect sends.
    let raw = std::fs::read(dir.path().join("ao-anchor.bin")).unwrap();
    let item = DataItem::parse(&raw).unwrap();
    assert_eq!(item.target().as_deref(), Some(TARGET));
    assert_eq!(item.anchor().as_deref(), Some("00000000000000000000000000000042"));
    assert_eq!(item.tag("Data-Protocol"), Some("ao"));
    assert_eq!(item.tag("Type"), Some("Message"));
    let wallet =
        Wallet::from_jwk_json(&std::fs::read_to_string(oracle_dir().join("test-jwk.json")).unwrap()).unwrap();
    assert_eq!(item.owner_address(), wallet.address());
}

#[test]
fn our_items_verify_in_arbundles() {
    let wallet =
        Wallet::from_jwk_json(&std::fs::read_to_string(oracle_dir().join("test-jwk.json")).unwrap()).unwrap();
    let eth = EthereumSigner::from_secret_bytes(&hex(ETH_KEY)).unwrap();
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("Tag-{i}"), "ü".repeat(i * 2))).collect();
    let none: Vec<(String, String)> = Vec::new();
    let tags = vec![
        ("Data-Protocol".to_string(), "ao".to_string()),
        ("Type".to_string(), "Message".to_string()),
        ("Empty".to_string(), String::new()),
    ];
    let big = vec![0xa5u8; 300_000];

    let t = Instant::now();
    let items: Vec<(&str, Vec<u8>)> = vec![
        (
            "arw-full",
            wallet
                .sign_data_item(
                    b"Send({})",
                    &tags,
                    Some(TARGET),
                    Some(b"00000000000000000000000000000007"),
                )
                .unwrap(),
        ),
        ("arw-bare", wallet.sign_data_item(b"", &none, None, None).unwrap()),
        (
            "arw-many",
            wallet.sign_data_item(&big, &many, Some(TARGET), None).unwrap(),
        ),
        (
            "eth-full",
            eth.sign_data_item(
                b"eth",
                &tags,
                Some(TARGET),
                Some(b"abcdefghijklmnopqrstuvwxyz012345"),
            )
            .unwrap(),
        ),
        ("eth-bare", eth.sign_data_item(b"", &none, None, None).unwrap()),
    ];
    eprintln!("signed {} items in {:?}", items.len(), t.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, raw) in &items {
        let p = dir.path().join(format!("{name}.bin"));
        std::fs::write(&p, raw).unwrap();
        paths.push(p);
        // A tampered copy of each: arbundles must reject it too.
        let mut bad = raw.clone();
        bad[2 + 10] ^= 0x40; // inside the signature
        let p = dir.path().join(format!("{name}.bad"));
        std::fs::write(&p, bad).unwrap();
        paths.push(p);
    }
    let args: Vec<&str> = std::iter::once("verify")
        .chain(paths.iter().map(|p| p.to_str().unwrap()))
        .collect();
    let out = oracle(&args);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), items.len() * 2);
    for (i, (name, raw)) in items.iter().enumerate() {
        let item = DataItem::parse(raw).unwrap();
        assert_same(name, &item, &lines[2 * i]);
        assert_eq!(
            lines[2 * i + 1]["valid"],
            false,
            "{name}: arbundles accepts a tampered item"
        );
    }
    assert_eq!(
        DataItem::parse(&items[3].1).unwrap().signature_type(),
        SignatureType::Ethereum
    );
    assert_eq!(
        DataItem::parse(&items[3].1).unwrap().owner_address(),
        "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    );
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
