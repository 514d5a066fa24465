//! A blocking HTTP client for upstream reads: one `ureq` agent (keep-alive, rustls for `https`), a
//! timeout per request, retries with exponential backoff, and a cap on what a body may hold.
//!
//! Transport errors, 5xx and 429 are retried (`retries` more times, waiting `backoff`, then twice as
//! long each time, as the reference CU's SU client does with 5 retries from 500 ms); 404 is
//! [`UpstreamError::NotFound`] at once; other 4xx are [`UpstreamError::Status`] at once.

use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::UpstreamError;

/// How requests are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Most time one request (connect, send, read the whole body) may take.
    pub timeout: Duration,
    /// Further tries after a retriable failure.
    pub retries: u32,
    /// Wait before the first retry (doubles each time).
    pub backoff: Duration,
    /// Most bytes of a body (module binaries included).
    pub max_body: u64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            retries: 5,
            backoff: Duration::from_millis(500),
            max_body: 1 << 30,
        }
    }
}

/// The blocking client. Cheap to clone (the agent's connection pool is shared).
#[derive(Clone)]
pub struct Fetcher {
    agent: ureq::Agent,
    options: HttpOptions,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher").field("options", &self.options).finish()
    }
}

/// One try's failure: retry it or give up with it.
enum Try {
    Retry(UpstreamError),
    Fail(UpstreamError),
}

/// Cuts an error body to a line that fits in a log and an error message.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push('…');
    }
    s
}

impl Fetcher {
    /// A client with these options.
    pub fn new(options: HttpOptions) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(options.timeout))
            .build();
        Fetcher {
            agent: config.into(),
            options,
        }
    }

    /// `GET url` → the body bytes.
    pub fn get_bytes(&self, what: &str, url: &str) -> Result<Vec<u8>, UpstreamError> {
        self.with_retries(what, url, || self.agent.get(url).call())
    }

    /// `GET url` → the body parsed as JSON into `T`.
    pub fn get_json<T: DeserializeOwned>(&self, what: &str, url: &str) -> Result<T, UpstreamError> {
        let body = self.get_bytes(what, url)?;
        serde_json::from_slice(&body).map_err(|e| UpstreamError::malformed(what, url, e))
    }

    /// `POST url` with a JSON body → the answer parsed as JSON into `T`.
    pub fn post_json<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<T, UpstreamError> {
        let payload = body.to_string();
        let answer = self.with_retries(what, url, || {
            self.agent
                .post(url)
                .header("content-type", "application/json")
                .send(payload.as_bytes())
        })?;
        serde_json::from_slice(&answer).map_err(|e| UpstreamError::malformed(what, url, e))
    }

    /// `POST url` with a binary body of `content_type` → the answer parsed as JSON into `T`.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<T, UpstreamError> {
        let answer = self.with_retries(what, url, || {
            self.agent
                .post(url)
                .header("content-type", content_type)
                .header("accept", "application/json")
                .send(body)
        })?;
        serde_json::from_slice(&answer).map_err(|e| UpstreamError::malformed(what, url, e))
    }

    fn with_retries(
        &self,
        what: &str,
        url: &str,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, UpstreamError> {
        let mut wait = self.options.backoff;
        let mut tries_left = self.options.retries;
        loop {
            match self.try_once(what, url, &send) {
                Ok(body) => return Ok(body),
                Err(Try::Fail(e)) => return Err(e),
                Err(Try::Retry(e)) if tries_left == 0 => return Err(e),
                Err(Try::Retry(e)) => {
                    tracing::debug!(%url, error = %e, retry_in_ms = wait.as_millis() as u64, "upstream retry");
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2);
                    tries_left -= 1;
                }
            }
        }
    }

    fn try_once(
        &self,
        what: &str,
        url: &str,
        send: &impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, Try> {
        let unreachable = |e: &dyn std::fmt::Display| UpstreamError::Unreachable {
            what: what.to_owned(),
            url: url.to_owned(),
            reason: e.to_string(),
        };
        let mut response = send().map_err(|e| match e {
            ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
                Try::Fail(UpstreamError::Config(format!("{url}: {e}")))
            }
            e => Try::Retry(unreachable(&e)),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.options.max_body)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(limit) => Try::Fail(UpstreamError::malformed(
                    what,
                    url,
                    format!("the body exceeds {limit} bytes"),
                )),
                e => Try::Retry(unreachable(&e)),
            })?;
        match status {
            200..=299 => Ok(body),
            404 => Err(Try::Fail(UpstreamError::NotFound(format!(
                "{what}: {url} answered 404: {}",
                excerpt(&body)
            )))),
            429 | 500..=599 => Err(Try::Retry(UpstreamError::Status {
                what: what.to_owned(),
                url: url.to_owned(),
                status,
                body: excerpt(&body),
            })),
            _ => Err(Try::Fail(UpstreamError::Status {
                what: what.to_owned(),
                url: url.to_owned(),
                status,
                body: excerpt(&body),
            })),
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(encode_query("abc-_.~"), "abc-_.~");
        assert_eq!(encode_query("a b&c=d/"), "a%20b%26c%3Dd%2F");
    }

    #[test]
    fn an_unreachable_host_fails_after_its_retries() {
        // Port 9 on loopback (discard) is closed on these machines: the connection is refused at once.
        let f = Fetcher::new(HttpOptions {
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(1),
            max_body: 1024,
        });
        let e = f.get_bytes("SU page", "http://127.0.0.1:9/x").unwrap_err();
        assert!(matches!(e, UpstreamError::Unreachable { .. }), "{e:?}");
        assert_eq!(e.status(), 503);
    }

    #[test]
    fn a_bad_url_is_a_configuration_error() {
        let f = Fetcher::new(HttpOptions::default());
        let e = f.get_bytes("SU page", "not a url").unwrap_err();
        assert_eq!(e.status(), 500, "{e:?}");
    }
}
