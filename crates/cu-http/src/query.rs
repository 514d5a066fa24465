//! Query strings, read by typed extractors: a handler takes `Query<T>` and gets a `T` or, before it runs,
//! a 400 `{"error"}` that names the bad parameter (axum's own `Query` answers plain-text rejections that
//! name nothing). The parser ([`QueryParams`]) is by hand: `application/x-www-form-urlencoded`, the last
//! of repeated names wins, empty values count as absent.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cu_node::ResultsParams;

use crate::error::HttpError;

/// A typed query string: `T` read by [`FromQuery`].
pub(crate) struct Query<T>(pub T);

/// A type read from a query string.
pub(crate) trait FromQuery: Sized {
    /// Reads `Self`, or says which parameter is wrong.
    fn from_query(q: &QueryParams) -> Result<Self, HttpError>;
}

impl<S: Send + Sync, T: FromQuery> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, HttpError> {
        let q = QueryParams::parse(parts.uri.query())?;
        T::from_query(&q).map(Query)
    }
}

/// `?process-id=` (required).
#[derive(Debug)]
pub(crate) struct ProcessIdParam {
    /// The process id.
    pub process_id: String,
}

impl FromQuery for ProcessIdParam {
    fn from_query(q: &QueryParams) -> Result<Self, HttpError> {
        Ok(ProcessIdParam {
            process_id: q.process_id()?.to_owned(),
        })
    }
}

/// `?from&to&sort&limit` of `/results` and `/cron`.
impl FromQuery for ResultsParams {
    fn from_query(q: &QueryParams) -> Result<Self, HttpError> {
        let sort = match q.non_empty("sort") {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("asc") => Some("ASC".to_owned()),
            Some(s) if s.eq_ignore_ascii_case("desc") => Some("DESC".to_owned()),
            Some(s) => {
                return Err(HttpError::bad_request(format!(
                    "'sort': must be ASC or DESC, got {s:?}"
                )));
            }
        };
        let limit = q
            .number("limit")?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(ResultsParams {
            from: q.non_empty("from").map(str::to_owned),
            to: q.non_empty("to").map(str::to_owned),
            sort,
            limit,
        })
    }
}

/// `?to=` of `/state` (a timestamp in ms, optional).
#[derive(Debug)]
pub(crate) struct StateParams {
    /// The timestamp the state is asked at.
    pub to: Option<u64>,
}

impl FromQuery for StateParams {
    fn from_query(q: &QueryParams) -> Result<Self, HttpError> {
        Ok(StateParams { to: q.number("to")? })
    }
}

/// `?nonce=HEX` of the evidence route (1 to 64 bytes).
#[derive(Debug)]
pub(crate) struct NonceParam {
    /// The decoded nonce.
    pub nonce: Vec<u8>,
}

impl FromQuery for NonceParam {
    fn from_query(q: &QueryParams) -> Result<Self, HttpError> {
        let hex = q
            .non_empty("nonce")
            .ok_or_else(|| HttpError::bad_request("'nonce': a hex nonce of 1 to 64 bytes is required"))?;
        Ok(NonceParam {
            nonce: cu_attest::binding::parse_nonce_hex(hex)?,
        })
    }
}

/// The MU's `POST /` query: nothing (a data item in the body), or `process-id` and `assign` together (an
/// assignment of a stored message; `exclude` optional; `base-layer` is refused: no Arweave gateway).
#[derive(Debug)]
pub(crate) enum AssignParams {
    /// Plain `POST /`.
    None,
    /// `?process-id=&assign=[&exclude=]`.
    Assign {
        /// The process the message is assigned to.
        process_id: String,
        /// The message assigned.
        message_id: String,
        /// `exclude`, as given.
        exclude: Option<String>,
    },
}

impl FromQuery for AssignParams {
    fn from_query(q: &QueryParams) -> Result<Self, HttpError> {
        match (q.non_empty("process-id"), q.non_empty("assign")) {
            (None, None) => Ok(AssignParams::None),
            (Some(process_id), Some(message_id)) => {
                if q.get("base-layer").is_some() {
                    return Err(HttpError::bad_request(
                        "'base-layer': assignments of Arweave L1 transactions are not supported by this node: it assigns only messages it stores",
                    ));
                }
                Ok(AssignParams::Assign {
                    process_id: process_id.to_owned(),
                    message_id: message_id.to_owned(),
                    exclude: q.get("exclude").map(str::to_owned),
                })
            }
            _ => Err(HttpError::bad_request(
                "You must set both process-id and assign to send an assignment, not just one",
            )),
        }
    }
}

/// The SU's `GET /{id}?process-id&from&to&limit`.
#[derive(Debug)]
pub(crate) struct SuPageParams {
    /// `process-id`, when given.
    pub process_id: Option<String>,
    /// Exclusive lower bound.
    pub from: Option<String>,
    /// Inclusive upper bound.
    pub to: Option<String>,
    /// Most edges.
    pub limit: Option<usize>,
}

impl FromQuery for SuPageParams {
    fn from_query(q: &QueryParams) -> Result<Self, HttpError> {
        Ok(SuPageParams {
            process_id: q.non_empty("process-id").map(str::to_owned),
            from: q.non_empty("from").map(str::to_owned),
            to: q.non_empty("to").map(str::to_owned),
            limit: q
                .number("limit")?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        })
    }
}

/// Decoded `application/x-www-form-urlencoded` query pairs.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Splits and decodes a raw query string (`None`: no query); a malformed one is a 400.
    pub fn parse(raw: Option<&str>) -> Result<Self, HttpError> {
        let raw = raw.unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(raw)?;
        Ok(QueryParams(pairs))
    }

    /// The last value of `name` (as `URLSearchParams.get` gives the first; duplicates are rare and a
    /// client sending two means the last).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value of `name`, if given.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn process_id(&self) -> Result<&str, HttpError> {
        self.non_empty("process-id")
            .ok_or_else(|| HttpError::bad_request("'process-id': a process-id query parameter is required"))
    }

    fn number(&self, name: &str) -> Result<Option<u64>, HttpError> {
        match self.non_empty(name) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                HttpError::bad_request(format!("'{name}': must be a non-negative integer, got {v:?}"))
            }),
        }
    }
}

/// The query parser every route uses ([`QueryParams`]), as its decoded pairs: the entry point of the
/// `http_query` fuzz target (`fuzz/`). Not an API; re-exported hidden from the crate root.
#[doc(hidden)]
pub fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, HttpError> {
    QueryParams::parse(raw).map(|q| q.0)
}

/// Splits and percent-decodes a query string (`+` is a space).
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits, nothing else: `from_str_radix` alone also takes a sign (`%+f`).
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| HttpError::bad_request("malformed percent-encoding in the query"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| HttpError::bad_request("the query is not UTF-8"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read<T: FromQuery>(raw: &str) -> Result<T, String> {
        QueryParams::parse(Some(raw))
            .and_then(|q| T::from_query(&q))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn rejections_name_the_parameter() {
        assert!(read::<ProcessIdParam>("").unwrap_err().contains("'process-id'"));
        assert!(
            read::<ProcessIdParam>("process-id=")
                .unwrap_err()
                .contains("'process-id'")
        );
        assert_eq!(
            read::<ProcessIdParam>("process-id=a%20b+c").unwrap().process_id,
            "a b c"
        );
        assert!(read::<ResultsParams>("limit=-1").unwrap_err().contains("'limit'"));
        assert!(read::<ResultsParams>("sort=up").unwrap_err().contains("'sort'"));
        assert_eq!(
            read::<ResultsParams>("sort=asc&limit=5").unwrap().sort.as_deref(),
            Some("ASC")
        );
        assert!(read::<NonceParam>("").unwrap_err().contains("'nonce'"));
        assert!(read::<SuPageParams>("limit=x").unwrap_err().contains("'limit'"));
        assert!(read::<AssignParams>("assign=m").unwrap_err().contains("both"));
        assert!(
            read::<AssignParams>("assign=m&process-id=p&base-layer")
                .unwrap_err()
                .contains("'base-layer'")
        );
        assert!(matches!(read::<AssignParams>("").unwrap(), AssignParams::None));
        assert!(
            read::<ProcessIdParam>("process-id=%zz")
                .unwrap_err()
                .contains("percent-encoding")
        );
        assert!(
            read::<ProcessIdParam>("process-id=%ff")
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn the_last_repeated_value_wins() {
        assert_eq!(
            read::<ProcessIdParam>("process-id=a&process-id=b")
                .unwrap()
                .process_id,
            "b"
        );
    }
}
