//! Signed results (RFC 9421 + RFC 9530) and the node key file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use cu_attest::httpsig::{content_digest, verify_content_digest};
use cu_attest::key::{KEY_FILE, public_key_from_keyid};
use cu_attest::{NodeKey, Position, sign_response, verify_response};

type Headers = Vec<(String, String)>;

fn signed(key: &NodeKey, body: &[u8], position: Position) -> Headers {
    let mut h: Headers = vec![("Content-Type".into(), "application/json".into())];
    sign_response(
        key,
        200,
        &mut h,
        body,
        "pid-Qx3_abc",
        position,
        Some(1_700_000_000),
    )
    .unwrap();
    h
}

fn set(h: &mut Headers, name: &str, value: &str) {
    for (k, v) in h.iter_mut() {
        if k.eq_ignore_ascii_case(name) {
            *v = value.to_string();
        }
    }
}

const BODY: &[u8] = br#"{"Output":{"data":"1"},"Messages":[],"Spawns":[],"Assignments":[],"GasUsed":12}"#;

#[test]
fn own_signed_results_verify_end_to_end() {
    let key = NodeKey::from_seed([7; 32]);
    let h = signed(&key, BODY, Position::Slot(42));
    let vk = public_key_from_keyid(&key.keyid()).unwrap();
    let r = verify_response(&vk, 200, &h, BODY).unwrap();
    assert_eq!(r.process_id, "pid-Qx3_abc");
    assert_eq!(r.position, Position::Slot(42));
    assert_eq!(r.keyid, key.keyid());
    assert_eq!(r.created, Some(1_700_000_000));
    let input = h.iter().find(|(k, _)| k == "signature-input").unwrap().1.clone();
    assert_eq!(
        input,
        format!(
            "ao-cu=(\"@status\" \"content-type\" \"content-digest\" \"ao-process-id\" \"ao-position\");created=1700000000;keyid=\"{}\";alg=\"ed25519\";tag=\"ao-cu/result/v1\"",
            key.keyid()
        )
    );
    // Header names are case-insensitive for the verifier.
    let upper: Headers = h
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    assert!(verify_response(&vk, 200, &upper, BODY).is_ok());
}

#[test]
fn dry_runs_are_signed_and_marked() {
    let key = NodeKey::from_seed([7; 32]);
    for pos in [
        Position::DryRun { after: None },
        Position::DryRun { after: Some(41) },
    ] {
        let h = signed(&key, BODY, pos);
        let r = verify_response(&key.verifying_key(), 200, &h, BODY).unwrap();
        assert_eq!(r.position, pos);
        assert!(
            h.iter()
                .any(|(k, v)| k == "ao-position" && v.starts_with("dry-run"))
        );
        // A dry-run result cannot be passed off as a scheduled slot.
        let mut forged = h.clone();
        set(&mut forged, "ao-position", "41");
        assert!(verify_response(&key.verifying_key(), 200, &forged, BODY).is_err());
    }
}

#[test]
fn tampered_results_fail() {
    let key = NodeKey::from_seed([7; 32]);
    let vk = key.verifying_key();
    let h = signed(&key, BODY, Position::Slot(42));

    // Body changed.
    let mut body = BODY.to_vec();
    body[12] ^= 1;
    let err = verify_response(&vk, 200, &h, &body).unwrap_err().to_string();
    assert!(err.contains("content-digest"), "{err}");
    // Body and its digest changed together: the signature covers the digest.
    let mut h2 = h.clone();
    set(&mut h2, "content-digest", &content_digest(&body));
    assert!(
        verify_response(&vk, 200, &h2, &body)
            .unwrap_err()
            .to_string()
            .contains("does not verify")
    );
    // Each covered header changed.
    for (name, value) in [
        ("ao-process-id", "another-pid"),
        ("ao-position", "43"),
        ("content-type", "text/plain"),
    ] {
        let mut t = h.clone();
        set(&mut t, name, value);
        assert!(
            verify_response(&vk, 200, &t, BODY).is_err(),
            "{name} tamper accepted"
        );
    }
    // Status changed.
    assert!(verify_response(&vk, 500, &h, BODY).is_err());
    // A covered header removed.
    let stripped: Headers = h.iter().filter(|(k, _)| k != "ao-process-id").cloned().collect();
    assert!(verify_response(&vk, 200, &stripped, BODY).is_err());
    // Signature bytes changed.
    let mut t = h.clone();
    let sig = t.iter().find(|(k, _)| k == "signature").unwrap().1.clone();
    let flipped = if sig.contains(":A") {
        sig.replacen(":A", ":B", 1)
    } else {
        sig.replacen("ao-cu=:", "ao-cu=:A", 1)
    };
    set(&mut t, "signature", &flipped);
    assert!(verify_response(&vk, 200, &t, BODY).is_err());
    // Signature-input narrowed to fewer components (re-signed base would differ; also required set).
    let mut t = h.clone();
    let input = t
        .iter()
        .find(|(k, _)| k == "signature-input")
        .unwrap()
        .1
        .replace(" \"ao-position\"", "");
    set(&mut t, "signature-input", &input);
    assert!(
        verify_response(&vk, 200, &t, BODY)
            .unwrap_err()
            .to_string()
            .contains("ao-position")
    );
    // Another node's key.
    let other = NodeKey::from_seed([8; 32]);
    assert!(verify_response(&other.verifying_key(), 200, &h, BODY).is_err());
    // Unsigned response.
    let unsigned: Headers = vec![("content-digest".into(), content_digest(BODY))];
    assert!(verify_response(&vk, 200, &unsigned, BODY).is_err());
}

#[test]
fn content_digest_is_rfc9530() {
    // RFC 9530 appendix B: {"hello": "world"} with a trailing newline.
    let body = b"{\"hello\": \"world\"}\n";
    assert_eq!(
        content_digest(body),
        "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    );
    let h = vec![(
        "Content-Digest".to_string(),
        "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:"
            .to_string(),
    )];
    assert!(verify_content_digest(&h, body).is_ok());
    assert!(verify_content_digest(&h, b"other").is_err());
    let unknown = vec![("content-digest".to_string(), "md5=:AAAA:".to_string())];
    assert!(verify_content_digest(&unknown, body).is_err());
}

#[test]
fn signing_replaces_stale_signature_headers() {
    let key = NodeKey::from_seed([7; 32]);
    let mut h: Headers = vec![
        ("signature".into(), "old=:AAAA:".into()),
        ("Content-Digest".into(), "sha-256=:AAAA:".into()),
    ];
    sign_response(&key, 200, &mut h, BODY, "p", Position::Slot(1), None).unwrap();
    assert_eq!(
        h.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-digest"))
            .count(),
        1
    );
    assert_eq!(
        h.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("signature"))
            .count(),
        1
    );
    let r = verify_response(&key.verifying_key(), 200, &h, BODY).unwrap();
    assert_eq!(r.created, None);
    // Values with line breaks are refused rather than signed.
    let mut h: Headers = vec![];
    assert!(sign_response(&key, 200, &mut h, BODY, "p\r\nx: y", Position::Slot(1), None).is_err());
}

#[cfg(unix)]
#[test]
fn node_key_is_created_once_with_0600_and_reloaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let k1 = NodeKey::load_or_create(&data).unwrap();
    let path = data.join(KEY_FILE);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read(&path).unwrap().len(), 32);
    let k2 = NodeKey::load_or_create(&data).unwrap();
    assert_eq!(k1.public_key(), k2.public_key());
    // Signatures made by the reloaded key verify under the first one's public key.
    let mut h: Headers = vec![];
    sign_response(&k2, 200, &mut h, BODY, "p", Position::Slot(3), None).unwrap();
    assert!(verify_response(&k1.verifying_key(), 200, &h, BODY).is_ok());
    // Another directory gets another key.
    let k3 = NodeKey::load_or_create(&dir.path().join("other")).unwrap();
    assert_ne!(k1.public_key(), k3.public_key());
    // A key file readable by others is refused; a truncated one too.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        NodeKey::load_or_create(&data)
            .unwrap_err()
            .to_string()
            .contains("0600")
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&path, [1u8; 31]).unwrap();
    assert!(NodeKey::load_or_create(&data).is_err());
    // Debug output never shows the secret.
    assert!(!format!("{k1:?}").contains(&hex::encode(std::fs::read(&path).unwrap())));
}
