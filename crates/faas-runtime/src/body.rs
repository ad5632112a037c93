//! The response body type handlers return.

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};

/// A boxed error, as carried by a streaming [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A response body: complete bytes ([`full`], [`empty`]) or a stream of chunks ([`streaming`]).
///
/// Boxed and `Send` but not `Sync`, so that streams built from non-`Sync` futures (as SSE token
/// streams usually are) fit without wrapping.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`, sent with a `Content-Length`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body sent chunk by chunk as `stream` yields (HTTP/1.1 chunked encoding), for example
/// server-sent events. An `Err` from the stream aborts the response mid-way: the client sees a
/// truncated body and the connection is closed.
pub fn streaming<S, E>(stream: S) -> Body
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError> + 'static,
{
    StreamBody::new(stream.map_ok(Frame::data).map_err(Into::into)).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[tokio::test]
    async fn full_body_has_an_exact_size_and_its_bytes() {
        let body = full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.expect("full never fails").to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"hello"));
    }

    #[tokio::test]
    async fn empty_body_is_empty() {
        let body = empty();
        assert!(body.is_end_stream());
        assert_eq!(body.collect().await.expect("empty").to_bytes().len(), 0);
    }

    #[tokio::test]
    async fn streaming_body_yields_chunks_in_order_without_a_size() {
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"data: 1\n\n")),
            Ok(Bytes::from_static(b"data: 2\n\n")),
        ]);
        let body = streaming(chunks);
        assert_eq!(body.size_hint().exact(), None);
        let bytes = body.collect().await.expect("no error").to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"data: 1\n\ndata: 2\n\n"));
    }

    #[tokio::test]
    async fn streaming_body_surfaces_the_stream_error() {
        let chunks = futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"partial")),
            Err(std::io::Error::other("upstream closed")),
        ]);
        let err = streaming(chunks)
            .collect()
            .await
            .expect_err("the stream failed");
        assert_eq!(err.to_string(), "upstream closed");
    }
}
