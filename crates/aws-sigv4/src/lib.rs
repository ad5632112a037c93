//! AWS Signature Version 4 for request headers, hand-rolled on aws-lc-rs.
//!
//! Signing follows the rules of the default `aws-sigv4` settings for a
//! non-S3 service:
//! - the canonical URI is the request path as sent on the wire, with each
//!   segment URI-encoded once more (so `%3A` becomes `%253A`), after
//!   removing `.` and `..` segments;
//! - query parameters are decoded, re-encoded with the strict AWS set and
//!   sorted by name, then value;
//! - header names are lower-cased, values trimmed with inner runs of
//!   spaces collapsed, multiple values joined with `,`;
//! - `authorization`, `user-agent`, `x-amzn-trace-id`, `transfer-encoding`
//!   and `expect` are never signed;
//! - `x-amz-security-token` is signed when there is a session token;
//! - no `x-amz-content-sha256` header is added.
//!
//! The same building blocks verify a received request: parse its
//! `Authorization` header with [`parse_authorization`], then call [`verify`]
//! with the secret key that belongs to the access key id.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lc_rs::{digest, hmac};
use http::HeaderMap;

use secrets::Secret;

/// The only algorithm this module speaks.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The header carrying the request time, `YYYYMMDD'T'HHMMSS'Z'`.
pub const X_AMZ_DATE: &str = "x-amz-date";
/// The header carrying a session token of temporary credentials.
pub const X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// Headers that are never part of the signature.
const UNSIGNED_HEADERS: [&str; 5] = [
    "authorization",
    "user-agent",
    "x-amzn-trace-id",
    "transfer-encoding",
    "expect",
];

/// AWS credentials. `Debug` never shows the secret or the session token.
#[derive(Clone)]
pub struct Credentials {
    /// The access key id (not secret; it names the key).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token of temporary credentials.
    pub session_token: Option<Secret>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &self.secret_access_key)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "*****"),
            )
            .finish()
    }
}

/// The request parts that go into a signature.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The path exactly as sent on the wire (already percent-encoded once),
    /// e.g. `/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse`.
    pub path: &'a str,
    /// The raw query string without `?`, possibly empty.
    pub query: &'a str,
    /// The headers to consider; `host` must be among them.
    pub headers: &'a HeaderMap,
    /// The request body.
    pub body: &'a [u8],
}

/// Region, service and time of one signature.
#[derive(Debug, Clone, Copy)]
pub struct SigningParams<'a> {
    /// e.g. `us-east-1`.
    pub region: &'a str,
    /// The signing name, e.g. `bedrock`.
    pub service: &'a str,
    /// The request time.
    pub time: SystemTime,
}

/// The headers to add to a request, plus the intermediate values for
/// diagnostics and tests.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// The `Authorization` header value.
    pub authorization: String,
    /// The `x-amz-date` header value.
    pub x_amz_date: String,
    /// The `x-amz-security-token` header value, with session credentials.
    pub x_amz_security_token: Option<Secret>,
    /// The hex signature alone.
    pub signature: String,
    /// The canonical request that was signed.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("authorization", &self.authorization)
            .field("x_amz_date", &self.x_amz_date)
            .field("x_amz_security_token", &self.x_amz_security_token)
            .field("canonical_request", &self.canonical_request)
            .finish()
    }
}

/// Why a request could not be signed or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    /// The request has no `host` header.
    #[error("the request has no host header")]
    MissingHost,
    /// A header to sign is not visible ASCII.
    #[error("header {0} has a value that cannot be signed")]
    UnsignableHeader(String),
    /// The `Authorization` header is not a SigV4 header.
    #[error("malformed authorization header: {0}")]
    MalformedAuthorization(&'static str),
    /// `x-amz-date` is missing or malformed.
    #[error("missing or malformed x-amz-date")]
    BadDate,
    /// The credential scope date differs from `x-amz-date`.
    #[error("credential scope date does not match x-amz-date")]
    ScopeDateMismatch,
    /// The request time is too far from the verifier's clock.
    #[error("signature expired or not yet valid")]
    Expired,
    /// A header listed in `SignedHeaders` is absent.
    #[error("signed header {0} is missing from the request")]
    MissingSignedHeader(String),
    /// The recomputed signature differs.
    #[error("the request signature does not match")]
    SignatureMismatch,
}

/// Signs `request`, returning the headers to add.
///
/// Signs every header of `request.headers` except the excluded ones, plus
/// `x-amz-date` and (with a session token) `x-amz-security-token`.
pub fn sign(
    request: &SignableRequest<'_>,
    credentials: &Credentials,
    params: &SigningParams<'_>,
) -> Result<SignedHeaders, SigV4Error> {
    if !request.headers.contains_key(http::header::HOST) {
        return Err(SigV4Error::MissingHost);
    }
    let amz_date = format_amz_date(params.time);
    let date = &amz_date[..8];
    let token = credentials.session_token.as_ref().map(Secret::expose);

    let mut headers = canonical_header_values(request.headers)?;
    headers.retain(|(name, _)| name != X_AMZ_DATE && name != X_AMZ_SECURITY_TOKEN);
    headers.push((X_AMZ_DATE.to_owned(), amz_date.clone()));
    if let Some(token) = token {
        headers.push((X_AMZ_SECURITY_TOKEN.to_owned(), normalize_value(token)));
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let signed_names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let signed_headers = signed_names.join(";");

    let canonical = build_canonical_request(
        request.method,
        request.path,
        request.query,
        &headers,
        &signed_headers,
        &hex_sha256(request.body),
    );
    let scope = credential_scope(date, params.region, params.service);
    let to_sign = string_to_sign(&amz_date, &scope, &canonical);
    let key = signing_key(
        credentials.secret_access_key.expose(),
        date,
        params.region,
        params.service,
    );
    let signature = sign_string(&key, &to_sign);
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id
    );
    Ok(SignedHeaders {
        authorization,
        x_amz_date: amz_date,
        x_amz_security_token: credentials.session_token.clone(),
        signature,
        canonical_request: canonical,
        string_to_sign: to_sign,
    })
}

/// The fields of a SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    /// The access key id from `Credential=`.
    pub access_key_id: String,
    /// `YYYYMMDD` from the credential scope.
    pub date: String,
    /// Region from the credential scope.
    pub region: String,
    /// Service from the credential scope.
    pub service: String,
    /// Lower-case names from `SignedHeaders=`, in the order given.
    pub signed_headers: Vec<String>,
    /// The hex signature.
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/date/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<ParsedAuthorization, SigV4Error> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or(SigV4Error::MalformedAuthorization("not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or(SigV4Error::MalformedAuthorization("no Credential"))?;
    let signed = signed.ok_or(SigV4Error::MalformedAuthorization("no SignedHeaders"))?;
    let signature = signature.ok_or(SigV4Error::MalformedAuthorization("no Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = scope.as_slice() else {
        return Err(SigV4Error::MalformedAuthorization(
            "credential scope has the wrong number of parts",
        ));
    };
    if *terminator != "aws4_request" || date.len() != 8 {
        return Err(SigV4Error::MalformedAuthorization("bad credential scope"));
    }
    Ok(ParsedAuthorization {
        access_key_id: (*akid).to_owned(),
        date: (*date).to_owned(),
        region: (*region).to_owned(),
        service: (*service).to_owned(),
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_owned(),
    })
}

/// Recomputes the signature of a received request and compares it with the
/// one in `authorization`.
///
/// `request.headers` are the received headers (`x-amz-date` among them);
/// only those named in `SignedHeaders` are used. `now` and `max_skew` bound
/// the accepted request time (AWS allows five minutes).
pub fn verify(
    request: &SignableRequest<'_>,
    authorization: &ParsedAuthorization,
    secret_access_key: &str,
    now: SystemTime,
    max_skew: Duration,
) -> Result<(), SigV4Error> {
    let amz_date = request
        .headers
        .get(X_AMZ_DATE)
        .and_then(|v| v.to_str().ok())
        .ok_or(SigV4Error::BadDate)?;
    let time = parse_amz_date(amz_date).ok_or(SigV4Error::BadDate)?;
    if amz_date[..8] != authorization.date {
        return Err(SigV4Error::ScopeDateMismatch);
    }
    let skew = match now.duration_since(time) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > max_skew {
        return Err(SigV4Error::Expired);
    }
    let all = canonical_header_values(request.headers)?;
    let mut headers = Vec::with_capacity(authorization.signed_headers.len());
    for name in &authorization.signed_headers {
        let found = all
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| SigV4Error::MissingSignedHeader(name.clone()))?;
        headers.push(found.clone());
    }
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let signed_headers = authorization.signed_headers.join(";");
    let canonical = build_canonical_request(
        request.method,
        request.path,
        request.query,
        &headers,
        &signed_headers,
        &hex_sha256(request.body),
    );
    let scope = credential_scope(
        &authorization.date,
        &authorization.region,
        &authorization.service,
    );
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(
        secret_access_key,
        &authorization.date,
        &authorization.region,
        &authorization.service,
    );
    let expected = sign_string(&key, &to_sign);
    let equal = expected.len() == authorization.signature.len()
        && aws_lc_rs::constant_time::verify_slices_are_equal(
            expected.as_bytes(),
            authorization.signature.as_bytes(),
        )
        .is_ok();
    if equal {
        Ok(())
    } else {
        Err(SigV4Error::SignatureMismatch)
    }
}

/// The canonical request text: method, canonical URI, canonical query,
/// canonical headers (`headers` must already be canonical and sorted),
/// signed header list and payload hash, separated by `\n`.
pub fn build_canonical_request(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(method);
    out.push('\n');
    out.push_str(&canonical_uri(path));
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for (name, value) in headers {
        out.push_str(name);
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// `YYYYMMDD/region/service/aws4_request`.
pub fn credential_scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/aws4_request")
}

/// `AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256 of canonical>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

/// The derived key `HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region),
/// service), "aws4_request")`.
pub fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(format!("AWS4{secret_access_key}").as_bytes(), date);
    let k_region = hmac_sha256(&k_date, region);
    let k_service = hmac_sha256(&k_region, service);
    hmac_sha256(&k_service, "aws4_request")
}

/// The hex HMAC-SHA256 of `string_to_sign` under `signing_key`.
pub fn sign_string(signing_key: &[u8], string_to_sign: &str) -> String {
    hex(&hmac_sha256(signing_key, string_to_sign))
}

/// The lower-case hex SHA-256 of `data`.
pub fn hex_sha256(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// The canonical URI of a wire path: dot segments removed, then each
/// segment URI-encoded again (non-S3 services double-encode).
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    let raw: Vec<&str> = path.split('/').collect();
    let last = raw.len().saturating_sub(1);
    for (i, segment) in raw.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    segments.push("");
                }
            }
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
                if i == last {
                    segments.push("");
                }
            }
            s => segments.push(s),
        }
    }
    let encoded: Vec<String> = segments.iter().map(|s| uri_encode(s)).collect();
    let joined = encoded.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

/// The canonical query: each `name=value` decoded, re-encoded with the
/// strict set, sorted by name then value, joined with `&`.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode_bytes(&percent_decode(k)),
                uri_encode_bytes(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// URI-encodes everything except the RFC 3986 unreserved characters.
pub fn uri_encode(s: &str) -> String {
    uri_encode_bytes(s.as_bytes())
}

fn uri_encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` is left alone, as AWS does).
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hi = char::from(bytes[i + 1]).to_digit(16);
            let lo = char::from(bytes[i + 2]).to_digit(16);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Lower-cased names with normalised values, excluded headers dropped,
/// repeated headers joined with `,`; sorted by name.
fn canonical_header_values(headers: &HeaderMap) -> Result<Vec<(String, String)>, SigV4Error> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let name_str = name.as_str();
        if UNSIGNED_HEADERS.contains(&name_str) {
            continue;
        }
        let mut values = Vec::new();
        for value in headers.get_all(name) {
            let text = value
                .to_str()
                .map_err(|_| SigV4Error::UnsignableHeader(name_str.to_owned()))?;
            values.push(normalize_value(text));
        }
        out.push((name_str.to_owned(), values.join(",")));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Trims a header value and collapses inner runs of spaces to one.
fn normalize_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word.trim_matches('\t'));
    }
    out
}

fn hmac_sha256(key: &[u8], data: &str) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Formats `time` as `YYYYMMDD'T'HHMMSS'Z'` (UTC).
pub fn format_amz_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (y, m, d) = civil_date::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'`.
pub fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = value.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = civil_date::days_from_civil(y, u32::try_from(mo).ok()?, u32::try_from(d).ok()?);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// The example session token of the AWS SigV4 test suite
    /// (`post-sts-token`).
    const SUITE_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: AKID.to_owned(),
            secret_access_key: Secret::new(SECRET),
            session_token: token.map(Secret::new),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn suite_time() -> SystemTime {
        parse_amz_date("20150830T123600Z").unwrap()
    }

    fn sign_suite(method: &str, path: &str, query: &str, token: Option<&str>) -> SignedHeaders {
        let h = headers(&[("host", "example.amazonaws.com")]);
        let req = SignableRequest {
            method,
            path,
            query,
            headers: &h,
            body: b"",
        };
        let params = SigningParams {
            region: "us-east-1",
            service: "service",
            time: suite_time(),
        };
        sign(&req, &creds(token), &params).unwrap()
    }

    #[test]
    fn post_sts_header_before_matches_the_aws_vector() {
        let signed = sign_suite("POST", "/", "", Some(SUITE_TOKEN));
        assert_eq!(
            signed.signature,
            "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        );
        assert_eq!(
            signed.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
        );
        assert_eq!(
            signed.x_amz_security_token.as_ref().map(Secret::expose),
            Some(SUITE_TOKEN)
        );
    }

    #[test]
    fn plain_suite_vectors_match() {
        for (method, path, query, expected) in [
            (
                "POST",
                "/",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
            (
                "GET",
                "/",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "GET",
                "/",
                "Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            (
                "GET",
                "/example1/example2/../..",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
        ] {
            let signed = sign_suite(method, path, query, None);
            assert_eq!(signed.signature, expected, "{method} {path}?{query}");
            assert!(signed.x_amz_security_token.is_none());
        }
    }

    fn bedrock_request_headers() -> HeaderMap {
        headers(&[
            ("host", "bedrock-runtime.us-east-1.amazonaws.com"),
            ("content-type", "application/json"),
        ])
    }

    const BEDROCK_BODY: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}],"inferenceConfig":{"maxTokens":64}}"#;
    const BEDROCK_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";

    #[test]
    fn bedrock_shaped_vector_double_encodes_the_model_id() {
        let h = bedrock_request_headers();
        let req = SignableRequest {
            method: "POST",
            path: BEDROCK_PATH,
            query: "",
            headers: &h,
            body: BEDROCK_BODY,
        };
        let params = SigningParams {
            region: "us-east-1",
            service: "bedrock",
            time: parse_amz_date("20250101T000000Z").unwrap(),
        };
        let signed = sign(&req, &creds(None), &params).unwrap();
        assert!(hex_sha256(BEDROCK_BODY).starts_with("f5b802cc"));
        assert!(hex_sha256(BEDROCK_BODY).ends_with("f545"));
        assert!(
            signed.canonical_request.starts_with(
                "POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"
            )
        );
        assert!(
            signed
                .canonical_request
                .contains("\n\ncontent-type;host;x-amz-date\n")
        );
        let canonical_hash = hex_sha256(signed.canonical_request.as_bytes());
        assert!(canonical_hash.starts_with("26da020a"), "{canonical_hash}");
        assert!(canonical_hash.ends_with("4a60"), "{canonical_hash}");
        assert_eq!(
            signed.signature,
            "9a0cb9d426720efe62b88b12bcb80d78727c5e5d600e51a16c881ae81e6793ad"
        );
    }

    fn received(signed: &SignedHeaders, base: &HeaderMap) -> HeaderMap {
        let mut h = base.clone();
        h.insert(
            X_AMZ_DATE,
            HeaderValue::from_str(&signed.x_amz_date).unwrap(),
        );
        if let Some(t) = &signed.x_amz_security_token {
            h.insert(
                X_AMZ_SECURITY_TOKEN,
                HeaderValue::from_str(t.expose()).unwrap(),
            );
        }
        h.insert(
            "authorization",
            HeaderValue::from_str(&signed.authorization).unwrap(),
        );
        h.insert(
            "user-agent",
            HeaderValue::from_static("added-after-signing"),
        );
        h
    }

    #[test]
    fn a_signed_request_verifies_and_a_tampered_one_does_not() {
        let base = bedrock_request_headers();
        let time = parse_amz_date("20250101T000000Z").unwrap();
        let params = SigningParams {
            region: "us-east-1",
            service: "bedrock",
            time,
        };
        let req = SignableRequest {
            method: "POST",
            path: BEDROCK_PATH,
            query: "",
            headers: &base,
            body: BEDROCK_BODY,
        };
        let signed = sign(&req, &creds(Some("session")), &params).unwrap();
        let got = received(&signed, &base);
        let auth = parse_authorization(got["authorization"].to_str().unwrap()).unwrap();
        assert_eq!(auth.access_key_id, AKID);
        assert_eq!(auth.service, "bedrock");
        assert_eq!(
            auth.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-security-token"]
        );
        let skew = Duration::from_secs(300);
        let check = |body: &[u8], path: &str, now: SystemTime, secret: &str| {
            let r = SignableRequest {
                method: "POST",
                path,
                query: "",
                headers: &got,
                body,
            };
            verify(&r, &auth, secret, now, skew)
        };
        assert_eq!(check(BEDROCK_BODY, BEDROCK_PATH, time, SECRET), Ok(()));
        assert_eq!(
            check(
                BEDROCK_BODY,
                BEDROCK_PATH,
                time + Duration::from_secs(299),
                SECRET
            ),
            Ok(())
        );
        assert_eq!(
            check(b"{}", BEDROCK_PATH, time, SECRET),
            Err(SigV4Error::SignatureMismatch)
        );
        assert_eq!(
            check(BEDROCK_BODY, "/model/other/converse", time, SECRET),
            Err(SigV4Error::SignatureMismatch)
        );
        assert_eq!(
            check(BEDROCK_BODY, BEDROCK_PATH, time, "wrong"),
            Err(SigV4Error::SignatureMismatch)
        );
        assert_eq!(
            check(
                BEDROCK_BODY,
                BEDROCK_PATH,
                time + Duration::from_secs(301),
                SECRET
            ),
            Err(SigV4Error::Expired)
        );
    }

    #[test]
    fn verify_requires_every_signed_header() {
        let base = bedrock_request_headers();
        let params = SigningParams {
            region: "us-east-1",
            service: "bedrock",
            time: parse_amz_date("20250101T000000Z").unwrap(),
        };
        let req = SignableRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &base,
            body: b"",
        };
        let signed = sign(&req, &creds(Some("tok")), &params).unwrap();
        let mut got = received(&signed, &base);
        got.remove(X_AMZ_SECURITY_TOKEN);
        let auth = parse_authorization(&signed.authorization).unwrap();
        let r = SignableRequest {
            headers: &got,
            ..req
        };
        assert_eq!(
            verify(&r, &auth, SECRET, params.time, Duration::from_secs(300)),
            Err(SigV4Error::MissingSignedHeader(
                "x-amz-security-token".into()
            ))
        );
    }

    #[test]
    fn malformed_authorization_headers_are_rejected() {
        for bad in [
            "Bearer abc",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/service, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=A/20150830/us-east-1/service/aws4_request, Signature=00",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signing_without_host_fails() {
        let h = HeaderMap::new();
        let req = SignableRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &h,
            body: b"",
        };
        let params = SigningParams {
            region: "us-east-1",
            service: "bedrock",
            time: suite_time(),
        };
        assert_eq!(
            sign(&req, &creds(None), &params).err(),
            Some(SigV4Error::MissingHost)
        );
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(normalize_value("  a   b  c "), "a b c");
        assert_eq!(uri_encode("a b/:~"), "a%20b%2F%3A~");
        assert_eq!(canonical_query("b=2&a=%3A&a=1"), "a=%3A&a=1&b=2");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a/./b/"), "/a/b/");
    }

    #[test]
    fn amz_dates_round_trip() {
        for s in ["20150830T123600Z", "20000229T235959Z", "19700101T000000Z"] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
        assert!(parse_amz_date("20151330T123600Z").is_none());
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let text = format!("{:?}", creds(Some("tok-value")));
        assert!(text.contains(AKID));
        assert!(!text.contains(SECRET) && !text.contains("tok-value"));
    }
}
