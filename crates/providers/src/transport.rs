//! Sending built requests under a deadline, and the pieces every client
//! shares to build them.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use tokio::time::{Instant, timeout_at};

use super::ProviderError;
#[cfg(any(
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
))]
use secrets::Secret;

/// A fully built request: what the pure builders return and the thin
/// senders send.
pub(crate) type WireRequest = http::Request<Vec<u8>>;

/// A received non-streaming answer.
#[derive(Debug, Clone)]
pub(crate) struct WireResponse {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Builds a request from parts; header values that are secrets are marked
/// sensitive so they never show in debug output.
pub(crate) fn build(
    provider: &str,
    method: Method,
    url: &str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
) -> Result<WireRequest, ProviderError> {
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = url.parse().map_err(|_| ProviderError::NotConfigured {
        provider: provider.to_owned(),
        reason: "the base URL is not a valid URL".to_owned(),
    })?;
    for (name, value) in headers {
        request.headers_mut().append(name, value);
    }
    Ok(request)
}

/// `Content-Type: application/json`.
pub(crate) fn json_content_type() -> (HeaderName, HeaderValue) {
    (CONTENT_TYPE, HeaderValue::from_static("application/json"))
}

#[cfg(any(
    feature = "openai",
    feature = "google",
    feature = "anthropic",
    feature = "bedrock"
))]
/// A header whose value is a secret, marked sensitive.
pub(crate) fn secret_header(
    provider: &str,
    name: HeaderName,
    prefix: &str,
    secret: &Secret,
) -> Result<(HeaderName, HeaderValue), ProviderError> {
    let mut value =
        HeaderValue::from_str(&format!("{prefix}{}", secret.expose())).map_err(|_| {
            ProviderError::NotConfigured {
                provider: provider.to_owned(),
                reason: format!(
                    "the secret for header {name} holds characters not allowed in a header"
                ),
            }
        })?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// Serialises a wire body.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value).map_err(|e| ProviderError::Decode {
        message: format!("could not encode the request: {e}"),
    })
}

/// Parses a JSON body into `T`, naming the failure.
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| ProviderError::Decode {
        message: e.to_string(),
    })
}

/// Converts a client error without its URL (which may carry a key).
pub(crate) fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout
    } else {
        ProviderError::Transport {
            message: http_client::error_chain(&error.without_url()),
        }
    }
}

/// Sends `request`, giving up at `deadline`; returns the response with its
/// body unread.
pub(crate) async fn send(
    http: &reqwest::Client,
    request: WireRequest,
    deadline: Instant,
) -> Result<reqwest::Response, ProviderError> {
    let request = reqwest::Request::try_from(request).map_err(transport_error)?;
    match timeout_at(deadline, http.execute(request)).await {
        Ok(result) => result.map_err(transport_error),
        Err(_) => Err(ProviderError::Timeout),
    }
}

/// Sends `request` and reads the whole body before `deadline`.
pub(crate) async fn exchange(
    http: &reqwest::Client,
    request: WireRequest,
    deadline: Instant,
) -> Result<WireResponse, ProviderError> {
    let response = send(http, request, deadline).await?;
    read_all(response, deadline).await
}

/// Reads the rest of `response` before `deadline`.
pub(crate) async fn read_all(
    response: reqwest::Response,
    deadline: Instant,
) -> Result<WireResponse, ProviderError> {
    let status = response.status();
    let headers = response.headers().clone();
    let body = match timeout_at(deadline, response.bytes()).await {
        Ok(result) => result.map_err(transport_error)?,
        Err(_) => return Err(ProviderError::Timeout),
    };
    Ok(WireResponse {
        status,
        headers,
        body,
    })
}

/// Sends a streaming request; a non-success answer is read whole and
/// turned into an error with `map_error`.
pub(crate) async fn open_stream(
    http: &reqwest::Client,
    request: WireRequest,
    deadline: Instant,
    map_error: fn(StatusCode, &HeaderMap, &[u8]) -> ProviderError,
) -> Result<reqwest::Response, ProviderError> {
    let response = send(http, request, deadline).await?;
    if response.status().is_success() {
        Ok(response)
    } else {
        let whole = read_all(response, deadline).await?;
        Err(map_error(whole.status, &whole.headers, &whole.body))
    }
}

/// The body of a successful answer, or the classified error.
pub(crate) fn success_body(
    response: WireResponse,
    map_error: fn(StatusCode, &HeaderMap, &[u8]) -> ProviderError,
) -> Result<Bytes, ProviderError> {
    if response.status.is_success() {
        Ok(response.body)
    } else {
        Err(map_error(
            response.status,
            &response.headers,
            &response.body,
        ))
    }
}

/// Joins a base URL and a path with exactly one `/`.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(any(feature = "google", feature = "bedrock"))]
/// Percent-encodes a path segment (everything but RFC 3986 unreserved), as
/// SigV4 encodes it.
pub(crate) fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A short, single-line excerpt of a body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out.replace(['\n', '\r'], " ")
}

#[cfg(all(test, feature = "bedrock"))]
mod tests {
    #[test]
    fn path_segments_are_encoded_as_sigv4_encodes_them() {
        for segment in ["anthropic.claude-3:0", "a b/c~d_e.f", "é%ü", ""] {
            assert_eq!(
                super::encode_path_segment(segment),
                aws_sigv4::uri_encode(segment)
            );
        }
    }
}
