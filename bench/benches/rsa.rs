//! Criterion benchmarks of the RSA-4096 work on the ingest path (issue 15): the SU signs every assignment
//! (in series per process: the next assignment's hash chain names this one's id) and the MU verifies every
//! posted data item.
//! - `rsa/sign/aws_lc`: `Wallet::sign` (AWS-LC, PSS salt 32), what the node does per assignment;
//! - `rsa/sign/rsa_crate`: the same signature by the pure-Rust `rsa` crate, what it did before;
//! - `rsa/verify/aws_lc_salt_{32,478}`: `sig::verify_rsa_pss_sha256` (AWS-LC, salt recovered) of a
//!   browser-style (32) and an aoconnect-style (478, Node's maximum) signature;
//! - `rsa/verify/rsa_crate_salt_32`: the `rsa` crate's PSS verification (it cannot recover the salt);
//! - `rsa/data_item/sign_and_verify`: a whole 100-byte data item signed by the wallet and parsed + verified.
//!
//! `cargo bench -p cu-bench --bench rsa`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use cu_ans104::sig::verify_rsa_pss_sha256;
use cu_ans104::{DataItem, Wallet};
use rsa::rand_core::OsRng;
use rsa::{BigUint, Pss, RsaPrivateKey};
use sha2::{Digest, Sha256};

const JWK: &str = include_str!("../../crates/cu-ans104/tests/oracle/test-jwk.json");

fn field(jwk: &serde_json::Value, name: &str) -> BigUint {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk[name].as_str().unwrap())
        .unwrap();
    BigUint::from_bytes_be(&bytes)
}

fn benches(c: &mut Criterion) {
    let wallet = Wallet::from_jwk_json(JWK).unwrap();
    let jwk: serde_json::Value = serde_json::from_str(JWK).unwrap();
    let mut key = RsaPrivateKey::from_components(
        field(&jwk, "n"),
        field(&jwk, "e"),
        field(&jwk, "d"),
        vec![field(&jwk, "p"), field(&jwk, "q")],
    )
    .unwrap();
    key.precompute().unwrap();
    // A deep hash is 48 bytes.
    let message = [0x5au8; 48];
    let digest = Sha256::digest(message);
    let owner = wallet.owner();

    let mut sign = c.benchmark_group("rsa/sign");
    sign.bench_function("aws_lc", |b| b.iter(|| black_box(wallet.sign(&message).unwrap())));
    sign.bench_function("rsa_crate", |b| {
        b.iter(|| {
            black_box(
                key.sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha256>(32), &digest)
                    .unwrap(),
            )
        })
    });
    sign.finish();

    let salt_32 = key
        .sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha256>(32), &digest)
        .unwrap();
    let salt_478 = key
        .sign_with_rng(&mut OsRng, Pss::new_with_salt::<Sha256>(478), &digest)
        .unwrap();
    let public = key.to_public_key();
    let mut verify = c.benchmark_group("rsa/verify");
    verify.bench_function("aws_lc_salt_32", |b| {
        b.iter(|| verify_rsa_pss_sha256(&owner, &message, black_box(&salt_32)).unwrap())
    });
    verify.bench_function("aws_lc_salt_478", |b| {
        b.iter(|| verify_rsa_pss_sha256(&owner, &message, black_box(&salt_478)).unwrap())
    });
    verify.bench_function("rsa_crate_salt_32", |b| {
        b.iter(|| {
            public
                .verify(Pss::new::<Sha256>(), &digest, black_box(&salt_32))
                .unwrap()
        })
    });
    verify.finish();

    let tags = [("Action", "Eval"), ("Data-Protocol", "ao")];
    c.bench_function("rsa/data_item/sign_and_verify", |b| {
        b.iter(|| {
            let raw = wallet.sign_data_item(&[7u8; 100], &tags, None, None).unwrap();
            let item = DataItem::parse(&raw).unwrap();
            item.verify().unwrap();
            black_box(item.id())
        })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
