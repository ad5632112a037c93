//! Reading a request body under the size limit, while it streams.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, EXPECT};
use http_body_util::BodyExt;

use crate::body::BoxError;

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyReadError {
    /// The body is (or is declared to be) larger than the limit.
    TooLarge,
    /// The client's body broke off or was malformed (for example bad chunked framing).
    Read(BoxError),
}

/// A body over the limit is still read, and thrown away, up to this many bytes: a client or
/// proxy that sends the whole body before it reads the answer then gets the 413 instead of a
/// connection reset mid-upload. Past this the connection is simply closed.
pub(crate) const DISCARD_LIMIT: usize = 64 * 1024 * 1024;

/// The `Content-Length` header's value, if present and numeric.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
}

/// `true` when a `Content-Length` header already announces more than `limit` bytes, so the body
/// can be refused without reading it.
pub(crate) fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    declared_length(headers)
        .is_some_and(|length| usize::try_from(length).map_or(true, |length| length > limit))
}

/// Whether a refused body announced with `Content-Length` should be drained before answering:
/// not when the client waits for `100 Continue` (it has sent nothing), nor when it is huge.
pub(crate) fn worth_draining(headers: &HeaderMap) -> bool {
    let expects_continue = headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    !expects_continue
        && declared_length(headers)
            .is_some_and(|length| usize::try_from(length).is_ok_and(|l| l <= DISCARD_LIMIT))
}

/// Reads and drops `body` up to [`DISCARD_LIMIT`] bytes.
pub(crate) async fn discard<B>(body: B)
where
    B: http_body::Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > DISCARD_LIMIT {
                return;
            }
        }
    }
}

/// Reads `body` completely, refusing it once more than `limit` bytes have arrived (whatever the
/// framing: `Content-Length` or chunked). The rest of a refused body is read and dropped, up to
/// [`DISCARD_LIMIT`].
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, BodyReadError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| BodyReadError::Read(err.into()))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                discard(body).await;
                return Err(BodyReadError::TooLarge);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
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
