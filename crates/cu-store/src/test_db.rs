//! The engines the unit tests run on. By default SQLite and checkpoint files; with `CU_STORE_TEST_POSTGRES`
//! set to a PostgreSQL URL (`tests/run.sh` starts a server and sets it), every test that goes through
//! [`open`] runs on PostgreSQL instead, each test directory in a schema of its own (named from the
//! directory, so reopening the same directory finds the same tables, as with SQLite's file). With
//! `CU_STORE_TEST_S3=<endpoint>,<root>` (an `s3s-fs` server and its root directory, started by
//! `tests/s3/start.sh`), checkpoint blobs go to its bucket `ao-cu-test`, under a prefix per test
//! directory; tests that damage blobs on purpose find the object files under `<root>` ([`blob_root`]).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use std::path::PathBuf;

use crate::{Database, S3Config, Store, StoreOptions};

/// The variable naming the S3-compatible server (and its root directory) the tests keep blobs in.
pub const S3_ENV: &str = "CU_STORE_TEST_S3";
/// The bucket, and the credentials `tests/s3/start.sh` gives the server.
pub const S3_BUCKET: &str = "ao-cu-test";
/// The test server's access key.
pub const S3_ACCESS_KEY: &str = "ao-cu-test";
/// The test server's secret key.
pub const S3_SECRET_KEY: &str = "ao-cu-test-secret";

/// The S3 endpoint and the server's root directory, when the tests keep blobs in S3.
pub fn s3() -> Option<(String, PathBuf)> {
    let v = std::env::var(S3_ENV).ok().filter(|v| !v.is_empty())?;
    let (endpoint, root) = v.split_once(',').expect("CU_STORE_TEST_S3 is <endpoint>,<root>");
    Some((endpoint.to_owned(), PathBuf::from(root)))
}

/// Where the blob keys of the tests in `dir` are files: `dir` itself, or the object directory of the
/// test's prefix in the S3 server's root.
pub fn blob_root(dir: &Path) -> PathBuf {
    match s3() {
        None => dir.to_path_buf(),
        Some((_, root)) => root.join(S3_BUCKET).join(schema_of(dir)),
    }
}

/// The variable naming the PostgreSQL server the tests run on.
pub const POSTGRES_ENV: &str = "CU_STORE_TEST_POSTGRES";

/// The server's URL when the tests run on PostgreSQL.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())
}

/// The schema of the tests in `dir`.
pub fn schema_of(dir: &Path) -> String {
    let hash = blake3::hash(dir.as_os_str().as_encoded_bytes()).to_hex();
    format!("t_{}", &hash[..24])
}

/// A connection to the test server (for set-up and for reaching into the tables).
pub fn admin() -> postgres::Client {
    let url = postgres_url().expect("CU_STORE_TEST_POSTGRES is set");
    postgres::Client::connect(&url, postgres::NoTls).expect("connect to the test PostgreSQL server")
}

/// The database of the tests in `dir`: SQLite, or a PostgreSQL schema of its own.
pub fn database(dir: &Path) -> Database {
    match postgres_url() {
        None => Database::Sqlite,
        Some(url) => Database::from_url(&url)
            .expect("CU_STORE_TEST_POSTGRES is a postgres:// URL")
            .in_schema(&schema_of(dir))
            .expect("create the test schema"),
    }
}

/// Opens the store of `dir` on the test engine.
pub fn open(dir: &Path, options: StoreOptions) -> Store {
    Store::open(dir, options_for(dir, options)).expect("open store")
}

/// `options` on the test engine of `dir`.
pub fn options_for(dir: &Path, options: StoreOptions) -> StoreOptions {
    StoreOptions {
        database: database(dir),
        checkpoint_bucket: s3().map(|(endpoint, _)| S3Config {
            endpoint,
            bucket: S3_BUCKET.into(),
            region: "us-east-1".into(),
            access_key: S3_ACCESS_KEY.into(),
            secret_key: S3_SECRET_KEY.into(),
            prefix: format!("{}/", schema_of(dir)),
        }),
        ..options
    }
}
