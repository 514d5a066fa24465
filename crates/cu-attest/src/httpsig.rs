//! Signed results: HTTP Message Signatures (RFC 9421) with ed25519 over a `Content-Digest` (RFC 9530) of the
//! body and the headers that say which process and which message position the result is for.
//!
//! Pure functions over (status, headers, body) so the HTTP server can call them on any response. A signed
//! response carries:
//!
//! ```text
//! content-digest: sha-256=:<base64 SHA-256 of the body>:
//! ao-process-id: <process id>
//! ao-position: 42                      (a scheduled message: its slot)
//! ao-position: dry-run                 (a dry-run on the latest state)
//! ao-position: dry-run@41              (a dry-run on the state after slot 41)
//! signature-input: ao-cu=("@status" "content-type" "content-digest" "ao-process-id" "ao-position");created=1700000000;keyid="<keyid>";alg="ed25519";tag="ao-cu/result/v1"
//! signature: ao-cu=:<base64 ed25519 signature of the signature base>:
//! ```
//!
//! `content-type` is covered when the response has one; `created` only when the caller passes a time (this
//! module never reads the clock).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256, Sha512};

use crate::AttestError;
use crate::key::{NodeKey, keyid_for};

/// The signature label in `signature-input` and `signature`.
pub const SIGNATURE_LABEL: &str = "ao-cu";
/// The `tag` parameter of result signatures.
pub const TAG: &str = "ao-cu/result/v1";
/// The header naming the process.
pub const PROCESS_HEADER: &str = "ao-process-id";
/// The header naming the message position.
pub const POSITION_HEADER: &str = "ao-position";
/// Components a result signature must cover.
pub const REQUIRED_COMPONENTS: [&str; 4] = ["@status", "content-digest", PROCESS_HEADER, POSITION_HEADER];

/// Which message a result is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// The message at this slot of the process's schedule.
    Slot(u64),
    /// A dry-run, not part of the schedule; `after` is the last slot of the state it ran on, when known.
    DryRun {
        /// Last applied slot of the state the dry-run ran on.
        after: Option<u64>,
    },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Slot(n) => write!(f, "{n}"),
            Position::DryRun { after: None } => f.write_str("dry-run"),
            Position::DryRun { after: Some(n) } => write!(f, "dry-run@{n}"),
        }
    }
}

impl std::str::FromStr for Position {
    type Err = AttestError;
    fn from_str(s: &str) -> Result<Position, AttestError> {
        let bad = || AttestError::Signature(format!("bad {POSITION_HEADER} value {s:?}"));
        let digits = |t: &str| -> Result<u64, AttestError> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse().map_err(|_| bad())
        };
        if s == "dry-run" {
            Ok(Position::DryRun { after: None })
        } else if let Some(n) = s.strip_prefix("dry-run@") {
            Ok(Position::DryRun {
                after: Some(digits(n)?),
            })
        } else {
            Ok(Position::Slot(digits(s)?))
        }
    }
}

/// The `content-digest` value for a body (RFC 9530, SHA-256).
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", B64.encode(Sha256::digest(body)))
}

/// What the signature says, once verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedResult {
    /// The signing key's keyid.
    pub keyid: String,
    /// The process the result is for.
    pub process_id: String,
    /// The message position.
    pub position: Position,
    /// `created`, when the signer set it.
    pub created: Option<i64>,
}

fn sig_err(msg: impl Into<String>) -> AttestError {
    AttestError::Signature(msg.into())
}

/// The combined value of a header (RFC 9421 §2.1): every instance trimmed, joined with `", "`.
pub fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    let vals: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect();
    if vals.is_empty() {
        None
    } else {
        Some(vals.join(", "))
    }
}

fn remove_header(headers: &mut Vec<(String, String)>, name: &str) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
}

fn check_value(name: &str, v: &str) -> Result<(), AttestError> {
    if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(sig_err(format!("{name} contains a line break or NUL")));
    }
    Ok(())
}

/// Signs a result response in place: sets `content-digest`, `ao-process-id`, `ao-position`,
/// `signature-input` and `signature` (replacing any earlier ones).
pub fn sign_response(
    key: &NodeKey,
    status: u16,
    headers: &mut Vec<(String, String)>,
    body: &[u8],
    process_id: &str,
    position: Position,
    created: Option<i64>,
) -> Result<(), AttestError> {
    check_value(PROCESS_HEADER, process_id)?;
    if !(100..=999).contains(&status) {
        return Err(sig_err(format!("status {status} is not three digits")));
    }
    for h in [
        "content-digest",
        PROCESS_HEADER,
        POSITION_HEADER,
        "signature-input",
        "signature",
    ] {
        remove_header(headers, h);
    }
    headers.push(("content-digest".into(), content_digest(body)));
    headers.push((PROCESS_HEADER.into(), process_id.trim().to_string()));
    headers.push((POSITION_HEADER.into(), position.to_string()));

    let mut components: Vec<String> = vec!["@status".into()];
    if header_value(headers, "content-type").is_some() {
        components.push("content-type".into());
    }
    components.extend(["content-digest", PROCESS_HEADER, POSITION_HEADER].map(String::from));
    let mut params = Vec::new();
    if let Some(c) = created {
        params.push(("created".to_string(), Bare::Int(c)));
    }
    params.push(("keyid".into(), Bare::Str(key.keyid())));
    params.push(("alg".into(), Bare::Str("ed25519".into())));
    params.push(("tag".into(), Bare::Str(TAG.into())));
    let sig_params = serialize_params(&components, &params)?;
    let base = signature_base(status, headers, &components, &sig_params)?;
    let sig = key.sign(base.as_bytes());
    headers.push((
        "signature-input".into(),
        format!("{SIGNATURE_LABEL}={sig_params}"),
    ));
    headers.push((
        "signature".into(),
        format!("{SIGNATURE_LABEL}=:{}:", B64.encode(sig)),
    ));
    Ok(())
}

/// The RFC 9421 signature base for `components` and the serialized signature parameters.
pub fn signature_base(
    status: u16,
    headers: &[(String, String)],
    components: &[String],
    sig_params: &str,
) -> Result<String, AttestError> {
    let mut base = String::new();
    for c in components {
        let value = if c == "@status" {
            format!("{status:03}")
        } else if c.starts_with('@') {
            return Err(sig_err(format!("unsupported derived component {c}")));
        } else {
            header_value(headers, c).ok_or_else(|| sig_err(format!("covered header {c} is missing")))?
        };
        check_value(c, &value)?;
        base.push_str(&format!("\"{c}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {sig_params}"));
    Ok(base)
}

/// Verifies a signed result response with the node's public key: the signature, that it covers the required
/// components, that `keyid`/`alg`/`tag` are right, and that `content-digest` matches the body.
pub fn verify_response(
    key: &VerifyingKey,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<SignedResult, AttestError> {
    let input =
        header_value(headers, "signature-input").ok_or_else(|| sig_err("no signature-input header"))?;
    let sigs = header_value(headers, "signature").ok_or_else(|| sig_err("no signature header"))?;
    let input = parse_dictionary(&input)?;
    let sigs = parse_dictionary(&sigs)?;
    let (components, params) = match input.into_iter().find(|(k, _)| k == SIGNATURE_LABEL) {
        Some((_, Member::InnerList(items, params))) => (items, params),
        Some(_) => return Err(sig_err("signature-input member is not an inner list")),
        None => return Err(sig_err(format!("no {SIGNATURE_LABEL} signature-input"))),
    };
    let signature = match sigs.into_iter().find(|(k, _)| k == SIGNATURE_LABEL) {
        Some((_, Member::Item(Bare::Bytes(b), _))) => b,
        Some(_) => return Err(sig_err("signature member is not a byte sequence")),
        None => return Err(sig_err(format!("no {SIGNATURE_LABEL} signature"))),
    };

    let mut names: Vec<String> = Vec::new();
    for (item, item_params) in &components {
        let Bare::Str(name) = item else {
            return Err(sig_err("component identifiers must be strings"));
        };
        if !item_params.is_empty() {
            return Err(sig_err(format!(
                "component parameters on {name} are not supported"
            )));
        }
        if name != &name.to_ascii_lowercase() || names.contains(name) {
            return Err(sig_err(format!(
                "component {name} is not lowercase or is repeated"
            )));
        }
        names.push(name.clone());
    }
    for req in REQUIRED_COMPONENTS {
        if !names.iter().any(|n| n == req) {
            return Err(sig_err(format!("the signature does not cover {req}")));
        }
    }
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    match param("alg") {
        Some(Bare::Str(a)) if a == "ed25519" => {}
        _ => return Err(sig_err("alg must be \"ed25519\"")),
    }
    let keyid = match param("keyid") {
        Some(Bare::Str(k)) => k.clone(),
        _ => return Err(sig_err("no keyid")),
    };
    if keyid != keyid_for(&key.to_bytes()) {
        return Err(sig_err("keyid does not name the expected node key"));
    }
    match param("tag") {
        Some(Bare::Str(t)) if t == TAG => {}
        _ => return Err(sig_err(format!("tag must be {TAG:?}"))),
    }
    let created = match param("created") {
        None => None,
        Some(Bare::Int(c)) => Some(*c),
        Some(_) => return Err(sig_err("created must be an integer")),
    };

    let sig_params = serialize_params(&names, &params)?;
    let base = signature_base(status, headers, &names, &sig_params)?;
    let signature =
        Signature::from_slice(&signature).map_err(|_| sig_err("the signature is not 64 bytes"))?;
    key.verify_strict(base.as_bytes(), &signature)
        .map_err(|_| sig_err("the signature does not verify"))?;

    verify_content_digest(headers, body)?;
    let process_id =
        header_value(headers, PROCESS_HEADER).ok_or_else(|| sig_err(format!("no {PROCESS_HEADER}")))?;
    let position: Position = header_value(headers, POSITION_HEADER)
        .ok_or_else(|| sig_err(format!("no {POSITION_HEADER}")))?
        .parse()?;
    Ok(SignedResult {
        keyid,
        process_id,
        position,
        created,
    })
}

/// Checks every `content-digest` entry this module knows (sha-256, sha-512) against the body; at least one
/// must be present.
pub fn verify_content_digest(headers: &[(String, String)], body: &[u8]) -> Result<(), AttestError> {
    let value = header_value(headers, "content-digest").ok_or_else(|| sig_err("no content-digest"))?;
    let mut known = 0;
    for (alg, member) in parse_dictionary(&value)? {
        let Member::Item(Bare::Bytes(digest), _) = member else {
            return Err(sig_err("content-digest entries must be byte sequences"));
        };
        let want: Vec<u8> = match alg.as_str() {
            "sha-256" => Sha256::digest(body).to_vec(),
            "sha-512" => Sha512::digest(body).to_vec(),
            _ => continue,
        };
        known += 1;
        if digest != want {
            return Err(sig_err(format!("content-digest {alg} does not match the body")));
        }
    }
    if known == 0 {
        return Err(sig_err("content-digest has no sha-256 or sha-512 entry"));
    }
    Ok(())
}

// --- A small RFC 8941 structured-field parser and serializer: what signatures need, nothing more. ---

/// A structured-field bare item.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bare {
    Int(i64),
    Str(String),
    Token(String),
    Bytes(Vec<u8>),
    Bool(bool),
}

type Params = Vec<(String, Bare)>;

/// A dictionary member value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Member {
    Item(Bare, Params),
    InnerList(Vec<(Bare, Params)>, Params),
}

fn serialize_bare(b: &Bare, out: &mut String) -> Result<(), AttestError> {
    match b {
        Bare::Int(i) => out.push_str(&i.to_string()),
        Bare::Str(s) => {
            out.push('"');
            for c in s.chars() {
                if !(' '..='~').contains(&c) {
                    return Err(sig_err("sf-string with a non-printable character"));
                }
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        Bare::Token(t) => out.push_str(t),
        Bare::Bytes(b) => {
            out.push(':');
            out.push_str(&B64.encode(b));
            out.push(':');
        }
        Bare::Bool(v) => out.push_str(if *v { "?1" } else { "?0" }),
    }
    Ok(())
}

fn serialize_params(components: &[String], params: &Params) -> Result<String, AttestError> {
    let mut out = String::from("(");
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        serialize_bare(&Bare::Str(c.clone()), &mut out)?;
    }
    out.push(')');
    for (k, v) in params {
        out.push(';');
        out.push_str(k);
        if *v != Bare::Bool(true) {
            out.push('=');
            serialize_bare(v, &mut out)?;
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn key(&mut self) -> Result<String, AttestError> {
        let start = self.i;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.i += 1,
            _ => return Err(sig_err("structured field: expected a key")),
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c))
        {
            self.i += 1;
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn bare(&mut self) -> Result<Bare, AttestError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        None => return Err(sig_err("structured field: unterminated string")),
                        Some(b'"') => {
                            self.i += 1;
                            return Ok(Bare::Str(out));
                        }
                        Some(b'\\') => {
                            self.i += 1;
                            match self.peek() {
                                Some(c @ (b'"' | b'\\')) => {
                                    out.push(char::from(c));
                                    self.i += 1;
                                }
                                _ => return Err(sig_err("structured field: bad escape")),
                            }
                        }
                        Some(c) if (0x20..0x7f).contains(&c) => {
                            out.push(char::from(c));
                            self.i += 1;
                        }
                        Some(_) => return Err(sig_err("structured field: bad string character")),
                    }
                }
            }
            Some(b':') => {
                self.i += 1;
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"+/=".contains(&c)) {
                    self.i += 1;
                }
                let text = &self.s[start..self.i];
                if !self.eat(b':') {
                    return Err(sig_err("structured field: unterminated byte sequence"));
                }
                B64.decode(text)
                    .map(Bare::Bytes)
                    .map_err(|_| sig_err("structured field: bad base64"))
            }
            Some(b'?') => {
                self.i += 1;
                if self.eat(b'1') {
                    Ok(Bare::Bool(true))
                } else if self.eat(b'0') {
                    Ok(Bare::Bool(false))
                } else {
                    Err(sig_err("structured field: bad boolean"))
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                self.i += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_digit()) {
                    self.i += 1;
                }
                if self.peek() == Some(b'.') {
                    return Err(sig_err("structured field: decimals are not supported here"));
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                if text.trim_start_matches('-').len() > 15 || text == "-" {
                    return Err(sig_err("structured field: bad integer"));
                }
                text.parse()
                    .map(Bare::Int)
                    .map_err(|_| sig_err("structured field: bad integer"))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => {
                let start = self.i;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c))
                {
                    self.i += 1;
                }
                Ok(Bare::Token(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(sig_err("structured field: expected an item")),
        }
    }

    fn params(&mut self) -> Result<Params, AttestError> {
        let mut out: Params = Vec::new();
        while self.eat(b';') {
            self.skip_sp();
            let k = self.key()?;
            let v = if self.eat(b'=') {
                self.bare()?
            } else {
                Bare::Bool(true)
            };
            if let Some(slot) = out.iter_mut().find(|(name, _)| *name == k) {
                slot.1 = v;
            } else {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    fn member_value(&mut self) -> Result<Member, AttestError> {
        if self.eat(b'(') {
            let mut items = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    break;
                }
                let item = self.bare()?;
                let p = self.params()?;
                items.push((item, p));
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return Err(sig_err("structured field: bad inner list"));
                }
            }
            let p = self.params()?;
            Ok(Member::InnerList(items, p))
        } else {
            let item = self.bare()?;
            let p = self.params()?;
            Ok(Member::Item(item, p))
        }
    }
}

fn parse_dictionary(text: &str) -> Result<Vec<(String, Member)>, AttestError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut out: Vec<(String, Member)> = Vec::new();
    p.skip_sp();
    while p.peek().is_some() {
        let k = p.key()?;
        let v = if p.eat(b'=') {
            p.member_value()?
        } else {
            Member::Item(Bare::Bool(true), p.params()?)
        };
        if let Some(slot) = out.iter_mut().find(|(name, _)| *name == k) {
            slot.1 = v;
        } else {
            out.push((k, v));
        }
        p.skip_ows();
        if p.peek().is_none() {
            break;
        }
        if !p.eat(b',') {
            return Err(sig_err("structured field: expected ','"));
        }
        p.skip_ows();
        if p.peek().is_none() {
            return Err(sig_err("structured field: trailing ','"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signature_input_and_reserializes_it() {
        let text =
            r#"ao-cu=("@status" "content-digest");created=17;keyid="a\"b";alg="ed25519", other=:AAE=:"#;
        let d = parse_dictionary(text).unwrap();
        assert_eq!(d.len(), 2);
        let Member::InnerList(items, params) = &d[0].1 else {
            panic!("inner list expected")
        };
        let names: Vec<String> = items
            .iter()
            .map(|(b, _)| match b {
                Bare::Str(s) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            serialize_params(&names, params).unwrap(),
            r#"("@status" "content-digest");created=17;keyid="a\"b";alg="ed25519""#
        );
        assert_eq!(d[1].1, Member::Item(Bare::Bytes(vec![0, 1]), vec![]));
    }

    #[test]
    fn rejects_malformed_fields() {
        for bad in [
            "ao-cu=(\"a\"",
            "ao-cu=:AAE",
            "Ao=1",
            "a=1,",
            "a=\"x",
            "a=1.5",
            "a=1 b=2",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn positions_round_trip() {
        for p in [
            Position::Slot(0),
            Position::Slot(42),
            Position::DryRun { after: None },
            Position::DryRun { after: Some(7) },
        ] {
            assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
        }
        for bad in ["", "x", "-1", "dry-run@", "dry-run@x", "4 2"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }
}
