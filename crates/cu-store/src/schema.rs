//! The schema of both engines and connection set-up: SQLite's (versioned with `PRAGMA user_version`,
//! migrated step by step) and PostgreSQL's (the same tables with `BIGINT`/`BYTEA` columns and byte-order
//! `"C"` collation, versioned in table `cu_schema`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::db::{Conn, PgConn};
use crate::error::StoreError;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 5;

/// How long a connection waits for a lock held by another connection (another `Store` on the same
/// directory, a WAL checkpoint) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Version 1. Large rows (wasm, outputs, messages) make `WITHOUT ROWID` a poor fit, so the tables keep
/// their rowid and the primary keys are separate indexes.
const SCHEMA_V1: &str = "
CREATE TABLE modules (
    id TEXT PRIMARY KEY NOT NULL,
    format TEXT NOT NULL,
    owner TEXT NOT NULL,
    tags TEXT NOT NULL,
    wasm BLOB NOT NULL
);
CREATE TABLE processes (
    id TEXT PRIMARY KEY NOT NULL,
    module_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    tags TEXT NOT NULL,
    env_json TEXT NOT NULL,
    block_height INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    spawn_json TEXT NOT NULL
);
CREATE TABLE log (
    process_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    message_id TEXT,
    nonce INTEGER,
    timestamp INTEGER NOT NULL,
    block_height INTEGER NOT NULL,
    cron TEXT,
    msg_json TEXT NOT NULL,
    PRIMARY KEY (process_id, pos)
);
CREATE INDEX log_by_message ON log (process_id, message_id) WHERE message_id IS NOT NULL;
CREATE TABLE results (
    process_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    message_id TEXT,
    nonce INTEGER,
    timestamp INTEGER NOT NULL,
    block_height INTEGER NOT NULL,
    cron TEXT,
    has_error INTEGER NOT NULL,
    output_json TEXT NOT NULL,
    PRIMARY KEY (process_id, pos)
);
CREATE INDEX results_by_message ON results (process_id, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX results_by_timestamp ON results (process_id, timestamp);
CREATE TABLE checkpoints (
    process_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('base', 'delta')),
    parent INTEGER,
    memory_len INTEGER NOT NULL,
    file TEXT NOT NULL,
    blake3 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    PRIMARY KEY (process_id, seq)
);
";

/// Version 2 (added to version 1): the embedded scheduler's assignments (`schedule`), the high-water mark of
/// generated cron ticks per process (`cron_marks`), and outbox delivery (`outbox`: items already delivered,
/// `outbox_cursor`: results fully delivered). See `crate::schedule`.
const SCHEMA_V2: &str = "
CREATE TABLE schedule (
    process_id TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    assignment_id TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    block_height INTEGER NOT NULL,
    hash_chain TEXT NOT NULL,
    pos INTEGER NOT NULL,
    assignment BLOB NOT NULL,
    message BLOB,
    PRIMARY KEY (process_id, nonce)
);
CREATE INDEX schedule_by_timestamp ON schedule (process_id, timestamp);
CREATE INDEX schedule_by_message ON schedule (message_id);
CREATE TABLE cron_marks (
    process_id TEXT PRIMARY KEY NOT NULL,
    upto INTEGER NOT NULL
);
CREATE TABLE outbox (
    process_id TEXT NOT NULL,
    pos INTEGER NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (process_id, pos, item)
);
CREATE TABLE outbox_cursor (
    process_id TEXT PRIMARY KEY NOT NULL,
    pos INTEGER NOT NULL
);
";

/// Version 3 (added to version 2): per process computed from a remote SU, where its schedule was read up
/// to (`upstream`: the SU, the page cursor, the last nonce and its hash-chain link; see
/// `crate::schedule`), and the module owner's public key (`modules.owner_key`, NULL when unknown).
const SCHEMA_V3: &str = "
ALTER TABLE modules ADD COLUMN owner_key TEXT;
CREATE TABLE upstream (
    process_id TEXT PRIMARY KEY NOT NULL,
    su_url TEXT NOT NULL,
    cursor TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    assignment_id TEXT NOT NULL,
    hash_chain TEXT
);
";

/// Version 4 (added to version 3): data items uploaded to the node's bundler surface (`items`, newest
/// last by `seq`, with their tags in `item_tags` for GraphQL's tag filters; see `crate::items`), and the
/// processes whose log begins after a checkpoint adopted from elsewhere (`adopted`: such a process must
/// never be booted fresh and replayed, since its log lacks the messages before that checkpoint).
const SCHEMA_V4: &str = "
CREATE TABLE items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    owner_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    target TEXT,
    anchor TEXT,
    tags TEXT NOT NULL,
    data_size INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    block_height INTEGER NOT NULL,
    raw BLOB NOT NULL
);
CREATE TABLE item_tags (
    item_seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX item_tags_by_value ON item_tags (name, value, item_seq);
CREATE TABLE adopted (
    process_id TEXT PRIMARY KEY NOT NULL,
    checkpoint_id TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    timestamp INTEGER NOT NULL
);
";

/// Version 5 (added to version 4): uploaded items by block height, for the transactions of a block of
/// the node's chain (`GET /block/height/{h}`, WeaveDrive's `/block/<h>`).
const SCHEMA_V5: &str = "
CREATE INDEX items_by_height ON items (block_height, seq);
";

fn ctx(what: &str, db: &Path) -> String {
    format!("{what} (database {})", db.display())
}

/// Prepared statements a connection keeps (more than the store has: 38).
const STATEMENT_CACHE: usize = 64;

/// Opens the write connection: WAL, `synchronous` NORMAL (FULL with `fsync`), and applies the schema.
pub fn open_writer(db: &Path, fsync: bool) -> Result<Connection, StoreError> {
    let conn = Connection::open(db).map_err(|e| open_error(db, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| StoreError::db(ctx("setting busy_timeout", db), e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(|e| open_error(db, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWritable {
            path: db.to_path_buf(),
            reason: format!("SQLite refused WAL mode (journal_mode is {mode})"),
        });
    }
    let sync = if fsync { "FULL" } else { "NORMAL" };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA foreign_keys = OFF;"
    ))
    .map_err(|e| StoreError::db(ctx("setting pragmas", db), e))?;
    apply_schema(&conn, db)?;
    Ok(conn)
}

/// Opens a read connection (`query_only`).
pub fn open_reader(db: &Path) -> Result<Connection, StoreError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(db, flags)
        .map_err(|e| StoreError::db(ctx("opening a read connection", db), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| StoreError::db(ctx("setting busy_timeout", db), e))?;
    conn.execute_batch("PRAGMA query_only = ON;")
        .map_err(|e| StoreError::db(ctx("setting query_only on a read connection", db), e))?;
    // Every read statement of the store stays prepared (rusqlite keeps 16 by default, fewer than the
    // store's queries: a mixed load re-parsed SQL on every call).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Opening failures that mean "cannot write here" become `NotWritable`.
fn open_error(db: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{CannotOpen, PermissionDenied, ReadOnly};
    match e.sqlite_error_code() {
        Some(CannotOpen | PermissionDenied | ReadOnly) => StoreError::NotWritable {
            path: db.to_path_buf(),
            reason: e.to_string(),
        },
        _ => StoreError::db(ctx("opening", db), e),
    }
}

fn user_version(conn: &Connection, db: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| StoreError::db(ctx("reading user_version", db), e))
}

/// Creates the schema in a fresh database; refuses a database with a newer version.
fn apply_schema(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    let check = |found: i64| {
        if found > SCHEMA_VERSION {
            Err(StoreError::SchemaTooNew {
                path: db.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            })
        } else {
            Ok(found)
        }
    };
    if check(user_version(conn, db)?)? == SCHEMA_VERSION {
        return Ok(());
    }
    // Another store may be creating the schema at the same moment: decide inside a write transaction.
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| open_error(db, e))?;
    let applied = (|| {
        let found = check(user_version(conn, db)?)?;
        if found == 0 {
            conn.execute_batch(SCHEMA_V1)
                .map_err(|e| StoreError::db(ctx("creating the schema", db), e))?;
        }
        if found < 2 {
            // Migration 1 -> 2 (and part of a fresh schema): only new tables.
            conn.execute_batch(SCHEMA_V2)
                .map_err(|e| StoreError::db(ctx("migrating the schema to version 2", db), e))?;
        }
        if found < 3 {
            conn.execute_batch(SCHEMA_V3)
                .map_err(|e| StoreError::db(ctx("migrating the schema to version 3", db), e))?;
        }
        if found < 4 {
            conn.execute_batch(SCHEMA_V4)
                .map_err(|e| StoreError::db(ctx("migrating the schema to version 4", db), e))?;
        }
        if found < 5 {
            conn.execute_batch(SCHEMA_V5)
                .map_err(|e| StoreError::db(ctx("migrating the schema to version 5", db), e))?;
        }
        if found < SCHEMA_VERSION {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
                .map_err(|e| StoreError::db(ctx("setting user_version", db), e))?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => conn
            .execute_batch("COMMIT")
            .map_err(|e| StoreError::db(ctx("committing the schema", db), e)),
        Err(e) => {
            // The original error is the one to report; a failed rollback leaves nothing behind either
            // (SQLite rolls back an open transaction when the connection closes).
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// PostgreSQL's schema at [`SCHEMA_VERSION`]: the SQLite tables with 64-bit integers, `BYTEA` blobs and
/// `"C"` collation (so `ORDER BY id` is byte order, as in SQLite). Created whole; later versions add
/// migrations from here.
const PG_SCHEMA: &str = r#"
CREATE TABLE modules (
    id TEXT COLLATE "C" PRIMARY KEY,
    format TEXT NOT NULL,
    owner TEXT NOT NULL,
    tags TEXT NOT NULL,
    wasm BYTEA NOT NULL,
    owner_key TEXT
);
CREATE TABLE processes (
    id TEXT COLLATE "C" PRIMARY KEY,
    module_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    tags TEXT NOT NULL,
    env_json TEXT NOT NULL,
    block_height BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    spawn_json TEXT NOT NULL
);
CREATE TABLE log (
    process_id TEXT COLLATE "C" NOT NULL,
    pos BIGINT NOT NULL,
    message_id TEXT COLLATE "C",
    nonce BIGINT,
    timestamp BIGINT NOT NULL,
    block_height BIGINT NOT NULL,
    cron TEXT,
    msg_json TEXT NOT NULL,
    PRIMARY KEY (process_id, pos)
);
CREATE INDEX log_by_message ON log (process_id, message_id) WHERE message_id IS NOT NULL;
CREATE TABLE results (
    process_id TEXT COLLATE "C" NOT NULL,
    pos BIGINT NOT NULL,
    message_id TEXT COLLATE "C",
    nonce BIGINT,
    timestamp BIGINT NOT NULL,
    block_height BIGINT NOT NULL,
    cron TEXT,
    has_error BIGINT NOT NULL,
    output_json TEXT NOT NULL,
    PRIMARY KEY (process_id, pos)
);
CREATE INDEX results_by_message ON results (process_id, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX results_by_timestamp ON results (process_id, timestamp);
CREATE TABLE checkpoints (
    process_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('base', 'delta')),
    parent BIGINT,
    memory_len BIGINT NOT NULL,
    file TEXT NOT NULL,
    blake3 TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (process_id, seq)
);
CREATE TABLE schedule (
    process_id TEXT COLLATE "C" NOT NULL,
    nonce BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    message_id TEXT COLLATE "C" NOT NULL,
    assignment_id TEXT NOT NULL,
    timestamp BIGINT NOT NULL,
    block_height BIGINT NOT NULL,
    hash_chain TEXT NOT NULL,
    pos BIGINT NOT NULL,
    assignment BYTEA NOT NULL,
    message BYTEA,
    PRIMARY KEY (process_id, nonce)
);
CREATE INDEX schedule_by_timestamp ON schedule (process_id, timestamp);
CREATE INDEX schedule_by_message ON schedule (message_id);
CREATE TABLE cron_marks (
    process_id TEXT COLLATE "C" PRIMARY KEY,
    upto BIGINT NOT NULL
);
CREATE TABLE outbox (
    process_id TEXT COLLATE "C" NOT NULL,
    pos BIGINT NOT NULL,
    item TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (process_id, pos, item)
);
CREATE TABLE outbox_cursor (
    process_id TEXT COLLATE "C" PRIMARY KEY,
    pos BIGINT NOT NULL
);
CREATE TABLE upstream (
    process_id TEXT COLLATE "C" PRIMARY KEY,
    su_url TEXT NOT NULL,
    cursor TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    assignment_id TEXT NOT NULL,
    hash_chain TEXT
);
CREATE TABLE items (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    owner_key TEXT NOT NULL,
    signature TEXT NOT NULL,
    target TEXT,
    anchor TEXT,
    tags TEXT NOT NULL,
    data_size BIGINT NOT NULL,
    timestamp BIGINT NOT NULL,
    block_height BIGINT NOT NULL,
    raw BYTEA NOT NULL
);
CREATE TABLE item_tags (
    item_seq BIGINT NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    value TEXT COLLATE "C" NOT NULL
);
CREATE INDEX item_tags_by_value ON item_tags (name, value, item_seq);
CREATE TABLE adopted (
    process_id TEXT COLLATE "C" PRIMARY KEY,
    checkpoint_id TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    timestamp BIGINT NOT NULL
);
CREATE INDEX items_by_height ON items (block_height, seq);
CREATE TABLE cu_lease (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    owner TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#;

/// The cluster's tables, created when missing: the process leases (`cu_store::ownership`), and the outbox
/// items signed for a process another node owns (kept so that a retried hand-over sends the same item).
const PG_OWNERSHIP: &str = r#"
CREATE TABLE IF NOT EXISTS cu_owner (
    process_id TEXT COLLATE "C" PRIMARY KEY,
    node TEXT NOT NULL,
    url TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cu_owner_by_node ON cu_owner (node);
CREATE TABLE IF NOT EXISTS cu_outbox_signed (
    process_id TEXT COLLATE "C" NOT NULL,
    pos BIGINT NOT NULL,
    item TEXT COLLATE "C" NOT NULL,
    raw BYTEA NOT NULL,
    PRIMARY KEY (process_id, pos, item)
);
"#;

/// The advisory lock key under which a store creates or migrates the PostgreSQL schema, so that nodes
/// starting together do it once ("ao-cu" in ASCII).
const PG_SCHEMA_LOCK: i64 = 0x0061_6f2d_6375;

/// A PostgreSQL URL without its password, for messages and error paths.
pub fn redact_url(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(config) => {
            let host = config
                .get_hosts()
                .first()
                .map(|h| match h {
                    postgres::config::Host::Tcp(h) => h.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .unwrap_or_default();
            let port = config
                .get_ports()
                .first()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
            let db = config.get_dbname().unwrap_or("");
            format!("postgres://{user}{host}{port}/{db}")
        }
        Err(_) => "postgres://(unparsable url)".into(),
    }
}

/// Connects to PostgreSQL.
pub fn pg_connect(url: &str, label: &Path) -> Result<Conn, StoreError> {
    let client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| StoreError::NotWritable {
        path: label.to_path_buf(),
        reason: format!("cannot connect: {}", crate::db::DbError::from(e)),
    })?;
    Ok(Conn::Postgres(Box::new(PgConn::new(client))))
}

/// Opens the PostgreSQL write connection and creates the schema if the database has none; refuses a
/// database whose schema is newer than this build's.
///
/// `idle_in_transaction`: with a store lease, the server ends this session when it sits in a transaction
/// that long without a statement (this node paused or frozen mid-commit), so the share lock on the lease row
/// cannot keep a standby from taking over.
pub fn pg_open_writer(
    url: &str,
    label: &Path,
    fsync: bool,
    idle_in_transaction: Option<Duration>,
) -> Result<Conn, StoreError> {
    let conn = pg_connect(url, label)?;
    let db = |what: &str| ctx(what, label);
    // Every commit waits for the server's own WAL flush (`local`); with `fsync` also for synchronous
    // replicas, if the server has any (`on`).
    let sync = if fsync { "on" } else { "local" };
    conn.batch(&format!("SET synchronous_commit = {sync}"))
        .map_err(|e| StoreError::db(db("setting synchronous_commit"), e))?;
    if let Some(idle) = idle_in_transaction {
        conn.batch(&format!(
            "SET idle_in_transaction_session_timeout = {}",
            idle.as_millis().max(1)
        ))
        .map_err(|e| StoreError::db(db("setting idle_in_transaction_session_timeout"), e))?;
    }
    conn.batch("BEGIN")
        .map_err(|e| StoreError::db(db("beginning the schema transaction"), e))?;
    let applied = (|| {
        conn.execute(
            "SELECT pg_advisory_xact_lock(?1)",
            crate::db::args![PG_SCHEMA_LOCK],
        )
        .map_err(|e| StoreError::db(db("locking the schema"), e))?;
        conn.batch("CREATE TABLE IF NOT EXISTS cu_schema (version BIGINT NOT NULL)")
            .map_err(|e| StoreError::db(db("creating cu_schema"), e))?;
        let found = conn
            .query_opt("SELECT MAX(version) FROM cu_schema", &[], |r| r.opt_int(0))
            .map_err(|e| StoreError::db(db("reading the schema version"), e))?
            .flatten()
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: label.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == 0 {
            conn.batch(PG_SCHEMA)
                .map_err(|e| StoreError::db(db("creating the schema"), e))?;
            conn.execute(
                "INSERT INTO cu_schema (version) VALUES (?1)",
                crate::db::args![SCHEMA_VERSION],
            )
            .map_err(|e| StoreError::db(db("recording the schema version"), e))?;
        }
        // The cluster's process leases (`cu_store::ownership`): tables of their own, not versioned data.
        conn.batch(PG_OWNERSHIP)
            .map_err(|e| StoreError::db(db("creating the process lease table"), e))?;
        Ok(())
    })();
    match applied {
        Ok(()) => conn
            .batch("COMMIT")
            .map_err(|e| StoreError::db(db("committing the schema"), e))?,
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(conn)
}
