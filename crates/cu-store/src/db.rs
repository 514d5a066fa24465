//! One SQL surface over the two database engines the store runs on: SQLite (the embedded default, a file
//! in the store directory) and PostgreSQL (`postgres://…`, for nodes that share one database).
//!
//! Every statement of the store is written once, in the SQL both engines accept, with numbered
//! placeholders `?1, ?2, …` (rewritten to `$1, $2, …` for PostgreSQL). Values are bound as [`Arg`]s and read
//! back through [`Row`]'s typed getters, so the two drivers' type systems meet in one place: integers are
//! 64-bit (`BIGINT` in PostgreSQL), text is UTF-8, blobs are bytes (`BYTEA`), and booleans are stored as
//! 0/1 integers. Prepared statements are cached per connection on both engines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use postgres::types::ToSql;

/// A value bound to a placeholder. `None` is SQL NULL of that type (PostgreSQL needs the type even for
/// NULL).
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// A 64-bit integer (also booleans, as 0/1).
    Int(Option<i64>),
    /// UTF-8 text.
    Text(Option<&'a str>),
    /// Bytes.
    Bytes(Option<&'a [u8]>),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(Some(i64::from(v)))
    }
}
impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(Some(v))
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::Text(v.as_deref())
    }
}
impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(Some(v))
    }
}
impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Bytes(Some(v))
    }
}
impl<'a> From<&'a Option<Vec<u8>>> for Arg<'a> {
    fn from(v: &'a Option<Vec<u8>>) -> Self {
        Arg::Bytes(v.as_deref())
    }
}

/// `args![a, b, c]`: a slice of [`Arg`]s.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        &[$($crate::db::Arg::from($v)),*][..]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value, ValueRef};
        Ok(match *self {
            Arg::Int(Some(v)) => ToSqlOutput::Owned(Value::Integer(v)),
            Arg::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Arg::Bytes(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Arg::Int(None) | Arg::Text(None) | Arg::Bytes(None) => ToSqlOutput::Owned(Value::Null),
        })
    }
}

/// A driver's error, or a value that does not fit the record type it is read into.
#[derive(Debug)]
pub enum DbError {
    /// SQLite's error.
    Sqlite(rusqlite::Error),
    /// PostgreSQL's error.
    Postgres(postgres::Error),
    /// A column's value cannot be read as the record's type (a negative position, bad JSON, ...).
    Value {
        /// The column index.
        column: usize,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "{e}"),
            // `postgres::Error`'s Display is only the kind ("db error"); the server's message is below it.
            DbError::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {} ({})", db.severity(), db.message(), db.code().code()),
                None => match std::error::Error::source(e) {
                    Some(source) => write!(f, "{e}: {source}"),
                    None => write!(f, "{e}"),
                },
            },
            DbError::Value { column, reason } => write!(f, "column {column}: {reason}"),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Sqlite(e) => Some(e),
            DbError::Postgres(e) => Some(e),
            DbError::Value { .. } => None,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

/// One result row, read by column index.
pub enum Row<'r> {
    /// A SQLite row.
    Sqlite(&'r rusqlite::Row<'r>),
    /// A PostgreSQL row.
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// An integer column that may be NULL. PostgreSQL's `integer` results (`SELECT 1`, `length()`) are
    /// widened.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, DbError> {
        match self {
            Row::Sqlite(r) => Ok(r.get(i)?),
            Row::Postgres(r) => match r.try_get::<_, Option<i64>>(i) {
                Ok(v) => Ok(v),
                Err(_) => Ok(r.try_get::<_, Option<i32>>(i)?.map(i64::from)),
            },
        }
    }

    /// A non-NULL integer column.
    pub fn int(&self, i: usize) -> Result<i64, DbError> {
        self.opt_int(i)?.ok_or_else(|| DbError::Value {
            column: i,
            reason: "NULL where an integer was expected".into(),
        })
    }

    /// A non-negative integer column (positions, nonces, sizes).
    pub fn u64(&self, i: usize) -> Result<u64, DbError> {
        let v = self.int(i)?;
        u64::try_from(v).map_err(|_| DbError::Value {
            column: i,
            reason: format!("{v} is negative"),
        })
    }

    /// A non-negative integer column that may be NULL.
    pub fn opt_u64(&self, i: usize) -> Result<Option<u64>, DbError> {
        self.opt_int(i)?
            .map(|v| {
                u64::try_from(v).map_err(|_| DbError::Value {
                    column: i,
                    reason: format!("{v} is negative"),
                })
            })
            .transpose()
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, DbError> {
        Ok(match self {
            Row::Sqlite(r) => r.get(i)?,
            Row::Postgres(r) => r.try_get(i)?,
        })
    }

    /// A non-NULL text column.
    pub fn text(&self, i: usize) -> Result<String, DbError> {
        self.opt_text(i)?.ok_or_else(|| DbError::Value {
            column: i,
            reason: "NULL where text was expected".into(),
        })
    }

    /// A bytes column that may be NULL.
    pub fn opt_bytes(&self, i: usize) -> Result<Option<Vec<u8>>, DbError> {
        Ok(match self {
            Row::Sqlite(r) => r.get(i)?,
            Row::Postgres(r) => r.try_get(i)?,
        })
    }

    /// A non-NULL bytes column.
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>, DbError> {
        self.opt_bytes(i)?.ok_or_else(|| DbError::Value {
            column: i,
            reason: "NULL where bytes were expected".into(),
        })
    }

    /// A JSON text column decoded into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self, i: usize) -> Result<T, DbError> {
        let text = self.text(i)?;
        serde_json::from_str(&text).map_err(|e| DbError::Value {
            column: i,
            reason: format!("invalid JSON: {e}"),
        })
    }
}

/// Prepared statements kept per PostgreSQL connection (the store has about 60 distinct texts).
const STATEMENT_CACHE: usize = 256;

/// A PostgreSQL connection with its prepared statements (keyed by the store's SQL text).
pub struct PgConn {
    client: RefCell<postgres::Client>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl PgConn {
    /// Wraps a connected client.
    pub fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
        }
    }

    fn statement(&self, sql: &str) -> Result<postgres::Statement, DbError> {
        if let Some(st) = self.statements.borrow().get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.borrow_mut().prepare(&to_postgres(sql))?;
        let mut cache = self.statements.borrow_mut();
        if cache.len() >= STATEMENT_CACHE {
            cache.clear();
        }
        cache.insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
        args.iter()
            .map(|a| match a {
                Arg::Int(v) => v as &(dyn ToSql + Sync),
                Arg::Text(v) => v as &(dyn ToSql + Sync),
                Arg::Bytes(v) => v as &(dyn ToSql + Sync),
            })
            .collect()
    }
}

/// `?N` placeholders become `$N`; a bare `?` gets the next number.
fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '?' {
            out.push(c);
            continue;
        }
        out.push('$');
        if chars.peek().is_some_and(char::is_ascii_digit) {
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                out.push(d);
            }
        } else {
            out.push_str(&next.to_string());
            next += 1;
        }
    }
    out
}

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A connection of either engine.
pub enum Conn {
    /// SQLite.
    Sqlite(rusqlite::Connection),
    /// PostgreSQL (boxed: its client is several times the size of a SQLite handle).
    Postgres(Box<PgConn>),
}

impl Conn {
    /// The engine.
    pub fn engine(&self) -> Engine {
        match self {
            Conn::Sqlite(_) => Engine::Sqlite,
            Conn::Postgres(_) => Engine::Postgres,
        }
    }

    /// Runs a statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let n = c
                    .prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args.iter()))?;
                Ok(n as u64)
            }
            Conn::Postgres(c) => {
                let st = c.statement(sql)?;
                Ok(c.client.borrow_mut().execute(&st, &PgConn::params(args))?)
            }
        }
    }

    /// Runs a query and maps every row with `f`.
    pub fn query<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    out.push(f(&Row::Sqlite(row))?);
                }
                Ok(out)
            }
            Conn::Postgres(c) => {
                let st = c.statement(sql)?;
                let rows = c.client.borrow_mut().query(&st, &PgConn::params(args))?;
                rows.iter().map(|r| f(&Row::Postgres(r))).collect()
            }
        }
    }

    /// The first row of a query, mapped with `f`; `None` when there is none.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
                match rows.next()? {
                    Some(row) => Ok(Some(f(&Row::Sqlite(row))?)),
                    None => Ok(None),
                }
            }
            Conn::Postgres(c) => {
                let st = c.statement(sql)?;
                let row = c.client.borrow_mut().query_opt(&st, &PgConn::params(args))?;
                row.map(|r| f(&Row::Postgres(&r))).transpose()
            }
        }
    }

    /// Whether a query returns any row.
    pub fn exists(&self, sql: &str, args: &[Arg<'_>]) -> Result<bool, DbError> {
        Ok(self.query_opt(sql, args, |_| Ok(()))?.is_some())
    }

    /// Runs statements without arguments (schema, transaction control).
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres(c) => Ok(c.client.borrow_mut().batch_execute(sql)?),
        }
    }

    /// Whether no transaction is open (SQLite rolls a transaction back on some errors by itself; the
    /// writer must know). A PostgreSQL connection reports it only when it is closed: the writer runs every
    /// PostgreSQL job in a savepoint, so a failing statement leaves the transaction open.
    pub fn is_autocommit(&self) -> bool {
        match self {
            Conn::Sqlite(c) => c.is_autocommit(),
            Conn::Postgres(_) => self.is_closed(),
        }
    }

    /// Whether the server closed the connection (never for SQLite).
    pub fn is_closed(&self) -> bool {
        match self {
            Conn::Sqlite(_) => false,
            Conn::Postgres(c) => c.client.borrow().is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::to_postgres;

    #[test]
    fn placeholders_become_numbered_dollars() {
        assert_eq!(to_postgres("a = ?1 AND b = ?12"), "a = $1 AND b = $12");
        assert_eq!(
            to_postgres("a = ? AND b > ? LIMIT ?"),
            "a = $1 AND b > $2 LIMIT $3"
        );
        assert_eq!(to_postgres("SELECT 1"), "SELECT 1");
    }
}
