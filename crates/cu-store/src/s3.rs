//! A small client of S3-compatible object storage (AWS S3, Garage, MinIO, Ceph RGW, s3s): `PUT`, `GET`,
//! `DELETE` and `ListObjectsV2` of one bucket, path-style addressing, AWS Signature Version 4.
//!
//! Only what checkpoint blobs need. Payloads are sent as `UNSIGNED-PAYLOAD` (the header, URL and date are
//! signed); the store checks every blob it reads against the BLAKE3 and length in its index, so a changed
//! object is caught on read either way.

use std::fmt::Write as _;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Where checkpoint blobs go: an S3-compatible bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The service's base URL, e.g. `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// The bucket (it must exist).
    pub bucket: String,
    /// The signing region (`us-east-1` for most self-hosted services; Garage's default is `garage`).
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// A prefix put before every object key (`""`, or e.g. `node-a/`), so one bucket can hold several stores.
    pub prefix: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why an object request failed.
#[derive(Debug)]
pub enum S3Error {
    /// The service answered with this status (and the start of its error document).
    Status {
        /// HTTP status.
        status: u16,
        /// The service's message.
        message: String,
    },
    /// The request did not get an answer (connection refused, timeout, TLS).
    Transport(String),
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Error::Status { status, message } => write!(f, "HTTP {status}: {message}"),
            S3Error::Transport(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for S3Error {}

/// An object's bytes as they arrive.
pub type ObjectReader = Box<dyn Read + Send>;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key, without the configured prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A client of one bucket.
#[derive(Clone)]
pub struct S3Bucket {
    config: S3Config,
    agent: ureq::Agent,
    /// `host[:port]` of the endpoint (signed).
    host: String,
    /// The endpoint's path before the bucket ("" for the usual root endpoint).
    base_path: String,
}

impl std::fmt::Debug for S3Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Bucket")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Requests give up after this long without an answer.
const TIMEOUT: Duration = Duration::from_secs(300);

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

impl S3Bucket {
    /// A client for `config`; the endpoint must be an `http://` or `https://` URL.
    pub fn new(config: S3Config) -> Result<S3Bucket, String> {
        let rest = config
            .endpoint
            .strip_prefix("http://")
            .or_else(|| config.endpoint.strip_prefix("https://"))
            .ok_or_else(|| {
                format!(
                    "S3 endpoint {:?} is not an http:// or https:// URL",
                    config.endpoint
                )
            })?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(format!("S3 endpoint {:?} has no host", config.endpoint));
        }
        if config.bucket.is_empty() || config.bucket.contains('/') {
            return Err(format!("invalid S3 bucket name {:?}", config.bucket));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(TIMEOUT))
            .build()
            .into();
        Ok(S3Bucket {
            host: host.to_owned(),
            base_path: path.to_owned(),
            agent,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// `s3://bucket/prefix+key`, for messages.
    pub fn describe(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.config.bucket, self.config.prefix)
    }

    /// Stores `body` under `key` (replacing what was there).
    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        let (url, headers) = self.sign("PUT", key, &[], "UNSIGNED-PAYLOAD");
        let resp = signed(self.agent.put(&url), &headers)
            .send(body)
            .map_err(transport)?;
        expect_ok(resp).map(drop)
    }

    /// The object under `key` as a reader, with its length; `None` when there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<(u64, ObjectReader)>, S3Error> {
        let (url, headers) = self.sign("GET", key, &[], EMPTY_SHA256);
        let resp = signed(self.agent.get(&url), &headers).call().map_err(transport)?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        let resp = expect_ok(resp)?;
        let len = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok(Some((len, Box::new(resp.into_body().into_reader()))))
    }

    /// Deletes the object under `key` (a missing object is fine).
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let (url, headers) = self.sign("DELETE", key, &[], EMPTY_SHA256);
        let resp = signed(self.agent.delete(&url), &headers)
            .call()
            .map_err(transport)?;
        if resp.status().as_u16() == 404 {
            return Ok(());
        }
        expect_ok(resp).map(drop)
    }

    /// Checks that the bucket answers to these credentials (a one-key listing).
    pub fn check(&self) -> Result<(), S3Error> {
        let query = vec![
            ("list-type".to_string(), "2".to_string()),
            ("max-keys".to_string(), "1".to_string()),
            ("prefix".to_string(), self.config.prefix.clone()),
        ];
        self.listing(&query).map(drop)
    }

    /// One `ListObjectsV2` request of the bucket with `query`.
    fn listing(&self, query: &[(String, String)]) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
        let (url, headers) = self.sign_raw("GET", &self.bucket_path(), query, EMPTY_SHA256);
        expect_ok(signed(self.agent.get(&url), &headers).call().map_err(transport)?)
    }

    /// Every object whose key starts with `prefix` (after the configured prefix), in key order.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        let full_prefix = format!("{}{prefix}", self.config.prefix);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), full_prefix.clone()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token".to_string(), t.clone()));
            }
            let resp = self.listing(&query)?;
            let mut text = String::new();
            resp.into_body()
                .into_reader()
                .read_to_string(&mut text)
                .map_err(|e| S3Error::Transport(format!("reading a listing: {e}")))?;
            for contents in elements(&text, "Contents") {
                let key = element(contents, "Key").map(unescape).unwrap_or_default();
                let size = element(contents, "Size")
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                if let Some(key) = key.strip_prefix(&self.config.prefix) {
                    out.push(Listed {
                        key: key.to_owned(),
                        size,
                    });
                }
            }
            let truncated = element(&text, "IsTruncated").is_some_and(|v| v.trim() == "true");
            token = element(&text, "NextContinuationToken").map(unescape);
            if !truncated || token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    fn bucket_path(&self) -> String {
        format!("{}/{}", self.base_path, uri_encode(&self.config.bucket, false))
    }

    fn sign(
        &self,
        method: &str,
        key: &str,
        query: &[(String, String)],
        payload: &str,
    ) -> (String, Vec<(String, String)>) {
        let path = format!(
            "{}/{}",
            self.bucket_path(),
            uri_encode(&format!("{}{key}", self.config.prefix), true)
        );
        self.sign_raw(method, &path, query, payload)
    }

    /// The URL and headers of a request signed with AWS Signature Version 4 at the current time.
    fn sign_raw(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        payload: &str,
    ) -> (String, Vec<(String, String)>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let (date, stamp) = amz_dates(now);
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical_request = format!(
            "{method}\n{path}\n{canonical_query}\nhost:{}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n\n{signed_headers}\n{payload}",
            self.host
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.config.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let k_date = hmac(
            format!("AWS4{}", self.config.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k_region = hmac(&k_date, self.config.region.as_bytes());
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex::encode(hmac(&k_signing, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.config.access_key
        );
        let scheme = if self.config.endpoint.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let mut url = format!("{scheme}://{}{path}", self.host);
        if !canonical_query.is_empty() {
            url.push('?');
            url.push_str(&canonical_query);
        }
        let headers = vec![
            ("x-amz-date".to_string(), stamp),
            ("x-amz-content-sha256".to_string(), payload.to_string()),
            ("authorization".to_string(), authorization),
        ];
        (url, headers)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `req` with the signature's headers.
fn signed<B>(mut req: ureq::RequestBuilder<B>, headers: &[(String, String)]) -> ureq::RequestBuilder<B> {
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req
}

fn transport(e: ureq::Error) -> S3Error {
    S3Error::Transport(e.to_string())
}

fn expect_ok(resp: ureq::http::Response<ureq::Body>) -> Result<ureq::http::Response<ureq::Body>, S3Error> {
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let mut text = String::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(4096)
        .read_to_string(&mut text);
    let message = element(&text, "Message")
        .or_else(|| element(&text, "Code"))
        .map(unescape)
        .unwrap_or_else(|| text.chars().take(200).collect());
    Err(S3Error::Status { status, message })
}

/// SigV4's `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` of a UNIX time.
fn amz_dates(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!("{date}T{:02}{:02}{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60);
    (date, stamp)
}

/// SigV4 URI encoding: unreserved characters stay, everything else is `%XX`; `/` stays in paths.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The text of every `<name>…</name>` element in `xml`.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// The text of the first `<name>…</name>` element in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).into_iter().next()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        // 2026-12-07T23:41:05Z
        assert_eq!(amz_dates(1_796_686_865).1, "20261207T234105Z");
        // A leap day.
        assert_eq!(amz_dates(951_782_400).0, "20000229");
    }

    /// The example of AWS's Signature Version 4 documentation ("Example: GET Object"), whose signature is
    /// published: the canonical request and string to sign built here must give it.
    #[test]
    fn signing_key_matches_the_aws_documentation() {
        let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), b"20130524");
        let k_region = hmac(&k_date, b"us-east-1");
        let k_service = hmac(&k_region, b"s3");
        let k_signing = hmac(&k_service, b"aws4_request");
        let canonical = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
                         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
                         x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
                         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(
            hex::encode(hmac(&k_signing, to_sign.as_bytes())),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn keys_and_listings() {
        assert_eq!(
            uri_encode("checkpoints/p-1/0001.ckpt", true),
            "checkpoints/p-1/0001.ckpt"
        );
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b</Key>\
                   <Size>12</Size></Contents><Contents><Key>c</Key><Size>3</Size></Contents>\
                   <NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
        let keys: Vec<_> = elements(xml, "Contents")
            .into_iter()
            .map(|c| (unescape(element(c, "Key").unwrap()), element(c, "Size").unwrap()))
            .collect();
        assert_eq!(keys, vec![("a&b".to_string(), "12"), ("c".to_string(), "3")]);
        assert_eq!(element(xml, "NextContinuationToken"), Some("t1"));
        assert!(
            S3Bucket::new(S3Config {
                endpoint: "ftp://x".into(),
                bucket: "b".into(),
                region: "r".into(),
                access_key: "a".into(),
                secret_key: "s".into(),
                prefix: String::new(),
            })
            .is_err()
        );
    }
}
