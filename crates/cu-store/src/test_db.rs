//! The engine the unit tests run on. By default SQLite; with `CU_STORE_TEST_POSTGRES` set to a PostgreSQL
//! URL (`tests/run.sh` starts a server and sets it), every test that goes through [`open`] runs on
//! PostgreSQL instead, each test directory in a schema of its own (named from the directory, so reopening
//! the same directory finds the same tables, as with SQLite's file).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use crate::{Database, Store, StoreOptions};

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

/// The database of the tests in `dir`: SQLite, or a fresh PostgreSQL schema.
pub fn database(dir: &Path) -> Database {
    let Some(url) = postgres_url() else {
        return Database::Sqlite;
    };
    let schema = schema_of(dir);
    admin()
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
        .expect("create the test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    Database::Postgres {
        url: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
    }
}

/// Opens the store of `dir` on the test engine.
pub fn open(dir: &Path, options: StoreOptions) -> Store {
    Store::open_with(dir, &database(dir), options).expect("open store")
}
