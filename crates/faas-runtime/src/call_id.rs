//! The `X-Call-Id` request identifier.

use http::HeaderMap;
use http::header::HeaderName;

/// The header OpenFaaS uses to identify a call across functions.
pub const CALL_ID_HEADER: HeaderName = HeaderName::from_static("x-call-id");

/// The longest incoming call id kept; longer ones are replaced (they end up in every log line).
const MAX_LEN: usize = 128;

/// The incoming `X-Call-Id` when it is usable (1 to 128 characters of `A-Z a-z 0-9 . _ : -`),
/// otherwise a new UUID v4. The id is echoed in headers, JSON bodies and every log line, so quotes,
/// backslashes, control characters and anything else that could break out of them are refused.
#[cfg(test)]
pub(crate) fn from_headers(headers: &HeaderMap) -> String {
    incoming(headers).unwrap_or_else(generate)
}

/// The incoming `X-Call-Id` when it is usable (1 to 128 characters of `A-Z a-z 0-9 . _ : -`).
pub(crate) fn incoming(headers: &HeaderMap) -> Option<String> {
    headers
        .get(&CALL_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_usable(id))
        .map(str::to_owned)
}

/// A new call id, a UUID v4.
pub(crate) fn generate() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn is_usable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers_with(value: &'static [u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            CALL_ID_HEADER,
            HeaderValue::from_bytes(value).expect("valid header value"),
        );
        headers
    }

    fn is_uuid_v4(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 4)
    }

    #[test]
    fn keeps_a_usable_incoming_id() {
        assert_eq!(from_headers(&headers_with(b"chain-123")), "chain-123");
        assert_eq!(
            from_headers(&headers_with(b"trace:a1.b_2-C")),
            "trace:a1.b_2-C"
        );
    }

    #[test]
    fn generates_a_uuid_v4_when_missing() {
        let first = from_headers(&HeaderMap::new());
        let second = from_headers(&HeaderMap::new());
        assert!(is_uuid_v4(&first), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn replaces_unusable_incoming_ids() {
        for value in [
            &b""[..],
            b"has space",
            b"\xffbinary",
            &[b'a'; 129],
            b"quote\"d",
            b"back\\slash",
            b"tab\there",
            b"{\"json\":1}",
            b"a=b;c",
            b"<script>",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                CALL_ID_HEADER,
                HeaderValue::from_bytes(value).expect("valid header value"),
            );
            let id = from_headers(&headers);
            assert!(is_uuid_v4(&id), "{value:?} gave {id}");
        }
    }
}
