//! Forwards one `/function/<name>` request to the function's process and streams
//! the response back frame by frame (so SSE reaches the client as it is produced).

use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::Error;
use crate::forwarding::CallHeaders;
use crate::registry::Lease;

/// Body of every gateway response.
pub(crate) type GatewayBody = BoxBody<Bytes, hyper::Error>;

/// Client that carries request bodies to functions as they arrive.
pub(crate) type ProxyClient = Client<HttpConnector, Incoming>;

/// How long to wait, after a failed request, for the process to be seen exiting
/// so the error can say that it crashed.
const CRASH_REPORT_WAIT: Duration = Duration::from_secs(1);

/// Builds the client used for proxying.
pub(crate) fn proxy_client() -> ProxyClient {
    let mut connector = HttpConnector::new();
    // Small SSE frames must not wait for Nagle.
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Sends `request` (headers rewritten by `call`) to `upstream` (path and query)
/// on the leased process. The lease lives until the response body has ended.
pub(crate) async fn forward(
    client: &ProxyClient,
    lease: Lease,
    request: Request<Incoming>,
    upstream: &str,
    call: &CallHeaders,
    client_ip: IpAddr,
) -> Result<Response<GatewayBody>, Error> {
    let (mut parts, body) = request.into_parts();
    let request_content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();
    call.apply_to_request(&mut parts.headers, client_ip);
    parts.uri = format!("http://127.0.0.1:{}{upstream}", lease.port())
        .parse()
        .map_err(|e| Error::Unreachable {
            function: lease.function().to_owned(),
            detail: format!("bad upstream path {upstream:?}: {e}"),
        })?;
    parts.version = Version::HTTP_11;
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            call.apply_to_response(&mut parts.headers, request_content_type.as_ref());
            let body = LeasedBody {
                inner: body,
                _lease: lease,
            };
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(error) => {
            let mut detail = error_chain(&error);
            if let Some(exit) = lease.exit_within(CRASH_REPORT_WAIT).await {
                detail.push_str(&format!("; the process exited ({exit})"));
            }
            Err(Error::Unreachable {
                function: lease.function().to_owned(),
                detail,
            })
        }
    }
}

/// `error` and each of its sources on one line, joined by `": "` (hyper's
/// client puts the refused connection in the source chain).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The function's response body, holding the lease so the function counts as
/// busy until the last frame has been sent.
struct LeasedBody {
    inner: Incoming,
    _lease: Lease,
}

impl Body for LeasedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
