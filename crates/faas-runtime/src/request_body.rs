//! Reading a request body under the size limit, while it streams.

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::body::BoxError;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyReadError {
    /// The body is (or is declared to be) larger than the limit.
    TooLarge,
    /// The client's body broke off or was malformed (for example bad chunked framing).
    Read(BoxError),
}

/// `true` when a `Content-Length` header already announces more than `limit` bytes, so the body
/// can be refused without reading it.
pub(crate) fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
        .is_some_and(|length| usize::try_from(length).map_or(true, |length| length > limit))
}

/// Reads `body` completely, failing as soon as more than `limit` bytes have arrived (whatever the
/// framing: `Content-Length` or chunked).
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyReadError::TooLarge)
        }
        Err(err) => Err(BodyReadError::Read(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http_body::Frame;
    use http_body_util::{Full, StreamBody};

    fn chunked(
        chunks: Vec<Result<&'static [u8], std::io::Error>>,
    ) -> StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
        StreamBody::new(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|chunk| chunk.map(|bytes| Frame::data(Bytes::from_static(bytes)))),
        ))
    }

    #[tokio::test]
    async fn reads_a_body_at_the_limit() {
        let body = read_limited(Full::new(Bytes::from_static(b"12345")), 5).await;
        assert_eq!(body.ok(), Some(Bytes::from_static(b"12345")));
    }

    #[tokio::test]
    async fn reads_a_chunked_body_under_the_limit() {
        let body = read_limited(chunked(vec![Ok(b"ab"), Ok(b"cd")]), 4).await;
        assert_eq!(body.ok(), Some(Bytes::from_static(b"abcd")));
    }

    #[tokio::test]
    async fn stops_a_chunked_body_over_the_limit() {
        let body = read_limited(chunked(vec![Ok(b"ab"), Ok(b"cd"), Ok(b"e")]), 4).await;
        assert!(matches!(body, Err(BodyReadError::TooLarge)), "{body:?}");
    }

    #[tokio::test]
    async fn reports_a_broken_body_as_a_read_error() {
        let body = read_limited(
            chunked(vec![Ok(b"ab"), Err(std::io::Error::other("reset"))]),
            4,
        )
        .await;
        match body {
            Err(BodyReadError::Read(err)) => assert_eq!(err.to_string(), "reset"),
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn declared_lengths() {
        let with_length = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static(value));
            headers
        };
        assert!(!declared_too_large(&HeaderMap::new(), 10));
        assert!(!declared_too_large(&with_length("10"), 10));
        assert!(declared_too_large(&with_length("11"), 10));
        assert!(declared_too_large(&with_length("18446744073709551615"), 10));
    }
}
