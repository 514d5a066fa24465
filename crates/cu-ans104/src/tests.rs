//! Unit tests: parsing edge cases, tampering, round trips, wallets.

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::sig::{SignatureType, verify_rsa_pss_sha256};
use crate::{Ans104Error, DataItem, EthereumSigner, Wallet, create_signed};

const TEST_JWK: &str = include_str!("../tests/oracle/test-jwk.json");
const TARGET: &str = "6bV9Uh0Bq2N7Z1f7dUP9hKxYQ0KkR3rCq5m3S1lM1xE";
const ANCHOR: &[u8; 32] = b"00000000000000000000000000000042";

fn wallet() -> &'static Wallet {
    static W: OnceLock<Wallet> = OnceLock::new();
    W.get_or_init(|| Wallet::from_jwk_json(TEST_JWK).unwrap())
}

fn eth() -> EthereumSigner {
    EthereumSigner::from_secret_bytes(&[0x11; 32]).unwrap()
}

fn tags() -> Vec<(String, String)> {
    vec![
        ("Data-Protocol".into(), "ao".into()),
        ("Action".into(), "Eval".into()),
        ("Ünï".into(), "✓".into()),
    ]
}

fn arweave_item() -> Vec<u8> {
    wallet()
        .sign_data_item(b"return 1 + 1", &tags(), Some(TARGET), Some(ANCHOR))
        .unwrap()
}

/// Offsets of the fields in an item signed by `arweave_item` (type 1, target and anchor present).
const TARGET_FLAG: usize = 2 + 512 + 512;
const ANCHOR_FLAG: usize = TARGET_FLAG + 33;
const TAG_COUNT: usize = ANCHOR_FLAG + 33;
const TAG_LEN: usize = TAG_COUNT + 8;
const TAGS: usize = TAG_LEN + 8;

#[test]
fn arweave_round_trip() {
    let raw = arweave_item();
    let item = DataItem::parse(&raw).unwrap();
    item.verify().unwrap();
    assert_eq!(item.signature_type(), SignatureType::Arweave);
    assert_eq!(item.owner(), wallet().owner().as_slice());
    assert_eq!(item.owner_b64url(), wallet().owner_b64url());
    assert_eq!(item.owner_address(), wallet().address());
    assert_eq!(item.target().as_deref(), Some(TARGET));
    assert_eq!(item.anchor().as_deref(), Some("00000000000000000000000000000042"));
    assert_eq!(item.anchor_bytes(), Some(&ANCHOR[..]));
    assert_eq!(item.tags(), tags().as_slice());
    assert_eq!(item.tag("Action"), Some("Eval"));
    assert_eq!(item.tag("action"), None);
    assert_eq!(item.data(), b"return 1 + 1");
    assert_eq!(item.raw(), raw.as_slice());
    assert_eq!(
        item.id(),
        URL_SAFE_NO_PAD.encode(Sha256::digest(item.signature()))
    );
    assert_eq!(item.id().len(), 43);
}

#[test]
fn minimal_items_round_trip() {
    let none: &[(String, String)] = &[];
    for raw in [
        wallet().sign_data_item(b"", none, None, None).unwrap(),
        eth().sign_data_item(b"", none, None, None).unwrap(),
    ] {
        let item = DataItem::parse(&raw).unwrap();
        item.verify().unwrap();
        assert!(item.tags().is_empty());
        assert!(item.raw_tags().is_empty());
        assert_eq!(item.target(), None);
        assert_eq!(item.anchor(), None);
        assert!(item.data().is_empty());
    }
}

#[test]
fn ethereum_round_trip() {
    let signer = eth();
    let raw = signer
        .sign_data_item(b"hi", &tags(), Some(TARGET), Some(ANCHOR))
        .unwrap();
    let item = DataItem::parse(&raw).unwrap();
    item.verify().unwrap();
    assert_eq!(item.signature_type(), SignatureType::Ethereum);
    assert_eq!(item.signature().len(), 65);
    assert!(matches!(item.signature()[64], 27 | 28));
    assert_eq!(item.owner_address(), signer.address());
    assert!(item.owner_address().starts_with("0x"));
    assert_eq!(item.owner_address().len(), 42);
    // v is ignored by the verifier, as in arbundles.
    let mut flipped = raw.clone();
    flipped[2 + 64] ^= 1;
    DataItem::parse(&flipped).unwrap().verify().unwrap();
}

#[test]
fn ethereum_high_s_is_refused() {
    // n - s with the same r verifies mathematically, but libsecp256k1 (arbundles) refuses high S.
    let raw = eth().sign_data_item(b"x", &tags(), None, None).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&raw[2..66]).unwrap();
    let high = k256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
    let mut forged = raw.clone();
    forged[2..66].copy_from_slice(&high.to_bytes());
    assert!(matches!(
        DataItem::parse(&forged).unwrap().verify(),
        Err(Ans104Error::InvalidSignature)
    ));
}

#[test]
fn ed25519_round_trip_and_tamper() {
    use ed25519_dalek::Signer as _;
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let owner = key.verifying_key().to_bytes();
    let raw = create_signed(
        SignatureType::Ed25519,
        &owner,
        b"ed",
        &tags(),
        None,
        Some(ANCHOR),
        |m| Ok(key.sign(m).to_bytes().to_vec()),
    )
    .unwrap();
    let item = DataItem::parse(&raw).unwrap();
    item.verify().unwrap();
    assert_eq!(item.signature_type(), SignatureType::Ed25519);
    assert_eq!(
        item.owner_address(),
        URL_SAFE_NO_PAD.encode(Sha256::digest(owner))
    );
    let mut bad = raw.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(DataItem::parse(&bad).unwrap().verify().is_err());
}

#[test]
fn tampering_breaks_verification() {
    let raw = arweave_item();
    let tag_len = u64::from_le_bytes(raw[TAG_LEN..TAG_LEN + 8].try_into().unwrap()) as usize;
    let data = TAGS + tag_len;
    // Signature, owner, target, anchor, a tag value byte, data.
    let tag_byte = raw[TAGS..TAGS + tag_len].iter().position(|&b| b == b'E').unwrap();
    for (what, pos) in [
        ("signature", 2 + 100),
        ("owner", 2 + 512 + 200),
        ("target", TARGET_FLAG + 5),
        ("anchor", ANCHOR_FLAG + 5),
        ("tag", TAGS + tag_byte),
        ("data", data + 3),
    ] {
        let mut bad = raw.clone();
        bad[pos] ^= 0x01;
        let item = DataItem::parse(&bad).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(item.verify().is_err(), "tampered {what} still verifies");
    }
    // Appending data changes the signed data.
    let mut longer = raw.clone();
    longer.push(b'!');
    assert!(DataItem::parse(&longer).unwrap().verify().is_err());
    // A different signature type number changes the layout: type 3 with this length is garbage.
    let mut retyped = raw.clone();
    retyped[0] = 3;
    if let Ok(item) = DataItem::parse(&retyped) {
        assert!(item.verify().is_err());
    }
}

#[test]
fn signature_of_another_item_fails() {
    // A valid signature by the same key, over a different item, does not transfer.
    let a = arweave_item();
    let other = wallet().sign_data_item(b"other", &tags(), None, None).unwrap();
    let mut spliced = a.clone();
    spliced[2..514].copy_from_slice(&other[2..514]);
    assert!(matches!(
        DataItem::parse(&spliced).unwrap().verify(),
        Err(Ans104Error::InvalidSignature)
    ));
    // Same for Ethereum.
    let e1 = eth().sign_data_item(b"one", &tags(), None, None).unwrap();
    let e2 = eth().sign_data_item(b"two", &tags(), None, None).unwrap();
    let mut spliced = e1.clone();
    spliced[2..67].copy_from_slice(&e2[2..67]);
    assert!(DataItem::parse(&spliced).unwrap().verify().is_err());
}

#[test]
fn truncation_anywhere_is_an_error_not_a_panic() {
    let raw = arweave_item();
    let tag_len = u64::from_le_bytes(raw[TAG_LEN..TAG_LEN + 8].try_into().unwrap()) as usize;
    let data_start = TAGS + tag_len;
    for cut in 0..data_start {
        let r = DataItem::parse(&raw[..cut]);
        assert!(r.is_err(), "prefix of {cut} bytes parsed");
    }
    // Cutting into the data still parses (data is "the rest") but no longer verifies.
    let item = DataItem::parse(&raw[..data_start + 1]).unwrap();
    assert!(item.verify().is_err());
    assert!(matches!(
        DataItem::parse(&raw[..100]),
        Err(Ans104Error::Truncated {
            field: "signature",
            ..
        })
    ));
    assert!(matches!(
        DataItem::parse(&[]),
        Err(Ans104Error::Truncated {
            field: "signature type",
            ..
        })
    ));
}

#[test]
fn forged_lengths_are_refused() {
    let raw = arweave_item();
    // Huge tag byte length.
    let mut bad = raw.clone();
    bad[TAG_LEN..TAG_LEN + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        DataItem::parse(&bad),
        Err(Ans104Error::TagBytesTooLong(u64::MAX))
    ));
    // Tag byte length within the 4096 cap but past the end of the input.
    let mut short = raw[..TAGS + 10].to_vec();
    short[TAG_LEN..TAG_LEN + 8].copy_from_slice(&4000u64.to_le_bytes());
    assert!(matches!(
        DataItem::parse(&short),
        Err(Ans104Error::Truncated { field: "tags", .. })
    ));
    // Huge tag count.
    let mut bad = raw.clone();
    bad[TAG_COUNT..TAG_COUNT + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        DataItem::parse(&bad),
        Err(Ans104Error::TooManyTags(u64::MAX))
    ));
    // Tag count that disagrees with the encoding.
    let mut bad = raw.clone();
    bad[TAG_COUNT..TAG_COUNT + 8].copy_from_slice(&2u64.to_le_bytes());
    assert!(matches!(
        DataItem::parse(&bad),
        Err(Ans104Error::TagCountMismatch {
            declared: 2,
            decoded: 3
        })
    ));
    // Tag byte length one short of the encoding: the Avro array is cut.
    let tag_len = u64::from_le_bytes(raw[TAG_LEN..TAG_LEN + 8].try_into().unwrap());
    let mut bad = raw.clone();
    bad[TAG_LEN..TAG_LEN + 8].copy_from_slice(&(tag_len - 1).to_le_bytes());
    assert!(matches!(
        DataItem::parse(&bad),
        Err(Ans104Error::BadTagEncoding(_))
    ));
}

#[test]
fn presence_flags_and_signature_types() {
    let raw = arweave_item();
    for (pos, field) in [(TARGET_FLAG, "target"), (ANCHOR_FLAG, "anchor")] {
        let mut bad = raw.clone();
        bad[pos] = 2;
        assert!(matches!(
            DataItem::parse(&bad),
            Err(Ans104Error::BadPresenceFlag { field: f, value: 2 }) if f == field
        ));
    }
    for ty in [0u16, 4, 5, 7, 101, u16::MAX] {
        let mut bad = raw.clone();
        bad[..2].copy_from_slice(&ty.to_le_bytes());
        assert!(matches!(
            DataItem::parse(&bad),
            Err(Ans104Error::UnsupportedSignatureType(t)) if t == ty
        ));
    }
}

#[test]
fn create_rejects_bad_target_anchor_and_tags() {
    let none: &[(&str, &str)] = &[];
    let w = wallet();
    assert!(matches!(
        w.sign_data_item(b"", none, Some("short"), None),
        Err(Ans104Error::BadTarget(_))
    ));
    assert!(matches!(
        w.sign_data_item(b"", none, Some("!!!not base64!!!"), None),
        Err(Ans104Error::BadTarget(_))
    ));
    assert!(matches!(
        w.sign_data_item(b"", none, None, Some(b"31 bytes...................... ")),
        Err(Ans104Error::BadAnchor(31))
    ));
    let long = "v".repeat(3073);
    assert!(matches!(
        w.sign_data_item(b"", &[("n", long.as_str())], None, None),
        Err(Ans104Error::TagValueTooLong(3073))
    ));
    // A signer returning the wrong length is caught.
    assert!(matches!(
        create_signed(
            SignatureType::Ethereum,
            &eth().public_key(),
            b"",
            none,
            None,
            None,
            |_| Ok(vec![0; 64])
        ),
        Err(Ans104Error::BadSignatureLength {
            expected: 65,
            got: 64
        })
    ));
}

#[test]
fn rsa_pss_salt_lengths_all_verify() {
    use rsa::Pss;
    use rsa::rand_core::OsRng;
    // Our wallet signs with salt 32; aoconnect (Node default) with the maximum, 478; any other must verify
    // too, as OpenSSL's RSA_PSS_SALTLEN_AUTO does.
    let key = rsa::RsaPrivateKey::from_components(
        rsa::BigUint::from_bytes_be(&wallet().owner()),
        rsa::BigUint::from(65537u32),
        rsa::BigUint::from_bytes_be(&jwk_field("d")),
        vec![
            rsa::BigUint::from_bytes_be(&jwk_field("p")),
            rsa::BigUint::from_bytes_be(&jwk_field("q")),
        ],
    )
    .unwrap();
    let msg = b"deep hash stand-in";
    let digest = Sha256::digest(msg);
    for salt in [0usize, 20, 32, 64, 478] {
        let sig = key
            .sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha256>(salt), &digest)
            .unwrap();
        verify_rsa_pss_sha256(&wallet().owner(), msg, &sig).unwrap_or_else(|e| panic!("salt {salt}: {e}"));
        assert!(verify_rsa_pss_sha256(&wallet().owner(), b"other", &sig).is_err());
        let mut bad = sig.clone();
        bad[300] ^= 0x80;
        assert!(verify_rsa_pss_sha256(&wallet().owner(), msg, &bad).is_err());
    }
    // PKCS#1 v1.5 signatures are not PSS.
    let v15 = key.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest).unwrap();
    assert!(verify_rsa_pss_sha256(&wallet().owner(), msg, &v15).is_err());
    // A "signature" ≥ the modulus is refused.
    assert!(verify_rsa_pss_sha256(&wallet().owner(), msg, &[0xff; 512]).is_err());
}

fn jwk_field(name: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(TEST_JWK).unwrap();
    URL_SAFE_NO_PAD.decode(v[name].as_str().unwrap()).unwrap()
}

#[test]
fn jwk_round_trip_and_validation() {
    let w = wallet();
    let json = w.to_jwk_json();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["kty", "n", "e", "d", "p", "q", "dp", "dq", "qi"]);
    // Byte-for-byte the fields Node's crypto exported for the test key.
    let orig: serde_json::Value = serde_json::from_str(TEST_JWK).unwrap();
    for k in keys {
        assert_eq!(v[k], orig[k], "field {k}");
    }
    assert_eq!(Wallet::from_jwk_json(&json).unwrap().address(), w.address());
    assert_eq!(
        w.address(),
        URL_SAFE_NO_PAD.encode(Sha256::digest(jwk_field("n")))
    );

    let mut broken = orig.clone();
    broken["qi"] = serde_json::Value::String(orig["dp"].as_str().unwrap().into());
    assert!(matches!(
        Wallet::from_jwk_json(&broken.to_string()),
        Err(Ans104Error::JwkField { field: "qi", .. })
    ));
    let mut broken = orig.clone();
    broken.as_object_mut().unwrap().remove("d");
    assert!(matches!(
        Wallet::from_jwk_json(&broken.to_string()),
        Err(Ans104Error::JwkField { field: "d", .. })
    ));
    let mut broken = orig.clone();
    broken["kty"] = "EC".into();
    assert!(matches!(
        Wallet::from_jwk_json(&broken.to_string()),
        Err(Ans104Error::JwkField { field: "kty", .. })
    ));
    let mut broken = orig.clone();
    broken["p"] = orig["q"].clone();
    assert!(Wallet::from_jwk_json(&broken.to_string()).is_err());
    assert!(matches!(
        Wallet::from_jwk_json("[1"),
        Err(Ans104Error::JwkJson(_))
    ));
}

#[test]
fn wallet_rejects_small_keys() {
    let small = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    let b = |n: &rsa::BigUint| URL_SAFE_NO_PAD.encode(n.to_bytes_be());
    let jwk = serde_json::json!({
        "kty": "RSA", "n": b(small.n()), "e": b(small.e()), "d": b(small.d()),
        "p": b(&small.primes()[0]), "q": b(&small.primes()[1]),
    });
    assert!(matches!(
        Wallet::from_jwk_json(&jwk.to_string()),
        Err(Ans104Error::KeySize { bits: 1024 })
    ));
}

#[test]
fn generated_wallet_signs_and_reloads() {
    let w = Wallet::generate().unwrap();
    assert_eq!(w.owner().len(), 512);
    let reloaded = Wallet::from_jwk_json(&w.to_jwk_json()).unwrap();
    assert_eq!(reloaded.address(), w.address());
    assert_ne!(w.address(), wallet().address());
    let raw = reloaded.sign_data_item(b"x", &tags(), None, None).unwrap();
    let item = DataItem::parse(&raw).unwrap();
    item.verify().unwrap();
    assert_eq!(item.owner_address(), w.address());
}

#[test]
fn random_mutations_never_panic_and_never_verify() {
    // Deterministic xorshift so failures reproduce.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let originals = [
        arweave_item(),
        eth()
            .sign_data_item(b"payload", &tags(), Some(TARGET), None)
            .unwrap(),
    ];
    for original in &originals {
        for _ in 0..300 {
            let mut bad = original.clone();
            let flips = 1 + (next() % 4) as usize;
            for _ in 0..flips {
                let pos = (next() % bad.len() as u64) as usize;
                bad[pos] ^= 1 << (next() % 8);
            }
            if next() % 4 == 0 {
                bad.truncate((next() % bad.len() as u64) as usize);
            }
            if &bad == original {
                continue;
            }
            if let Ok(item) = DataItem::parse(&bad) {
                assert!(item.verify().is_err(), "mutated item verifies");
            }
        }
    }
    // Random garbage after a valid type number must not panic either.
    for _ in 0..300 {
        let len = (next() % 1500) as usize;
        let mut junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if junk.len() >= 2 {
            junk[0] = 1 + (next() % 3) as u8;
            junk[1] = 0;
        }
        if let Ok(item) = DataItem::parse(&junk) {
            assert!(item.verify().is_err());
        }
    }
}

/// Hand-built PSS encodings, valid and flawed in each way RFC 8017 §9.1.2 checks, signed with the raw
/// private operation: AWS-LC's verdict must be the independent big-integer verifier's, and the expected one.
#[test]
fn rsa_pss_verdicts_match_the_reference_verifier() {
    use rsa::hazmat::rsa_decrypt;
    use rsa::rand_core::OsRng;
    let key = rsa::RsaPrivateKey::from_components(
        rsa::BigUint::from_bytes_be(&wallet().owner()),
        rsa::BigUint::from(65537u32),
        rsa::BigUint::from_bytes_be(&jwk_field("d")),
        vec![
            rsa::BigUint::from_bytes_be(&jwk_field("p")),
            rsa::BigUint::from_bytes_be(&jwk_field("q")),
        ],
    )
    .unwrap();
    let msg = b"deep hash stand-in";
    let m_hash = Sha256::digest(msg);
    // emBits = 4095, so emLen = 512 and the top bit of the first byte must be zero.
    let encode = |salt_len: usize, flaw: &str| -> Vec<u8> {
        let salt: Vec<u8> = (0..salt_len).map(|i| (i * 7 + 3) as u8).collect();
        let mut hp = Sha256::new();
        hp.update([0u8; 8]);
        hp.update(m_hash);
        hp.update(&salt);
        let mut h: [u8; 32] = hp.finalize().into();
        if flaw == "hash" {
            h[5] ^= 1;
        }
        let db_len = 512 - 32 - 1;
        let mut db = vec![0u8; db_len];
        let sep = db_len - salt_len - 1;
        db[sep] = if flaw == "separator" { 0x02 } else { 0x01 };
        db[sep + 1..].copy_from_slice(&salt);
        if flaw == "padding" && sep > 0 {
            db[sep - 1] = 0x01;
        }
        // MGF1-SHA-256 mask of H over DB.
        for (counter, chunk) in db.chunks_mut(32).enumerate() {
            let mut m = Sha256::new();
            m.update(h);
            m.update((counter as u32).to_be_bytes());
            for (o, k) in chunk.iter_mut().zip(m.finalize()) {
                *o ^= k;
            }
        }
        db[0] &= 0x7f;
        if flaw == "top-bit" {
            // 0x80 exactly: the encoding stays below this modulus (its top byte is larger), so it can be signed.
            db[0] = 0x80;
        }
        let mut em = db;
        em.extend_from_slice(&h);
        em.push(if flaw == "trailer" { 0xbd } else { 0xbc });
        let s = rsa_decrypt(Some(&mut OsRng), &key, &rsa::BigUint::from_bytes_be(&em)).unwrap();
        let mut sig = vec![0u8; 512];
        let bytes = s.to_bytes_be();
        sig[512 - bytes.len()..].copy_from_slice(&bytes);
        sig
    };
    let owner = wallet().owner();
    for salt_len in [0usize, 1, 32, 100, 478] {
        for flaw in ["none", "hash", "separator", "padding", "top-bit", "trailer"] {
            if flaw == "padding" && salt_len == 478 {
                continue; // the maximum salt leaves no padding byte to flaw
            }
            let sig = encode(salt_len, flaw);
            let fast = verify_rsa_pss_sha256(&owner, msg, &sig).is_ok();
            let reference = crate::pss_reference::reference_verify(&owner, msg, &sig).is_ok();
            assert_eq!(
                fast, reference,
                "salt {salt_len}, flaw {flaw}: AWS-LC {fast}, reference {reference}"
            );
            // A "padding" flaw moves the separator earlier: a longer salt and a hash that no longer matches.
            assert_eq!(fast, flaw == "none", "salt {salt_len}, flaw {flaw}");
        }
    }
}

#[test]
fn rsa_small_or_malformed_moduli_are_refused() {
    let sig = wallet().sign(b"m").unwrap();
    // Under 1024 bits (with leading zero bytes of a 512-byte owner, too).
    let mut small = vec![0u8; 512];
    small[400..].fill(0xff);
    assert!(matches!(
        verify_rsa_pss_sha256(&small, b"m", &sig),
        Err(Ans104Error::BadOwner(_))
    ));
    // An even "modulus" AWS-LC refuses as a key, and a signature whose length is not the modulus's.
    let mut even = wallet().owner();
    even[511] &= 0xfe;
    assert!(verify_rsa_pss_sha256(&even, b"m", &sig).is_err());
    assert!(verify_rsa_pss_sha256(&wallet().owner(), b"m", &sig[1..]).is_err());
    assert!(verify_rsa_pss_sha256(&wallet().owner(), b"m", &sig).is_ok());
}
