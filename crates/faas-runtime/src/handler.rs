//! The handler a function plugs into the runtime.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};

use crate::body::Body;

/// What the runtime knows about one request.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's `X-Call-Id`: the incoming one, or a generated UUID v4. Forward it on every
    /// downstream call; the runtime also puts it on the response.
    pub call_id: String,
    /// When the runtime started handling the request (before the body was read).
    pub received_at: Instant,
}

/// A function's request handler.
///
/// Every path and method reaches it (the gateway strips `/function/<name>`, so the bare function
/// URL arrives as `/`), except `GET /_/health`, `GET /_/ready` and `GET /metrics`, which the runtime
/// answers. The body arrives fully read and within the configured limit. A panic inside `handle`
/// becomes a 500 JSON error; the server keeps running.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        &self,
        req: Request<Bytes>,
        cx: RequestContext,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// A [`Handler`] made from an async function or closure; see [`handler_fn`].
#[derive(Debug, Clone)]
pub struct HandlerFn<F>(F);

/// Wraps `f`, an `async` function or closure taking the request and its [`RequestContext`], as a
/// [`Handler`].
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Request<Bytes>, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request<Bytes>, RequestContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send,
{
    fn handle(
        &self,
        req: Request<Bytes>,
        cx: RequestContext,
    ) -> impl Future<Output = Response<Body>> + Send {
        (self.0)(req, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::full;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn handler_fn_calls_the_closure_with_request_and_context() {
        let handler = handler_fn(|req: Request<Bytes>, cx: RequestContext| async move {
            Response::new(full(format!(
                "{} {} {}",
                req.uri(),
                cx.call_id,
                req.body().len()
            )))
        });
        let cx = RequestContext {
            call_id: "call-1".to_owned(),
            received_at: Instant::now(),
        };
        let req = Request::builder()
            .uri("/x?y=1")
            .body(Bytes::from_static(b"abc"))
            .expect("valid request");
        let response = handler.handle(req, cx).await;
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("full")
            .to_bytes();
        assert_eq!(bytes, Bytes::from_static(b"/x?y=1 call-1 3"));
    }
}
