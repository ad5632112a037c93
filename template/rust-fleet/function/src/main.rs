//! A new fleet function: replace `handle` with the function's work.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use faas_runtime::{Body, RequestContext, Handler, json_response};
use http::{Request, Response, StatusCode};
use prometheus::Registry;

struct Function;

impl Handler for Function {
    async fn handle(&self, req: Request<bytes::Bytes>, cx: RequestContext) -> Response<Body> {
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "call_id": cx.call_id,
                "method": req.method().as_str(),
                "path": req.uri().path(),
                "bytes": req.body().len(),
            }),
        )
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    faas_runtime::run("handler", Registry::new(), |_config| async {
        Ok::<_, std::convert::Infallible>(Function)
    })
    .await
}
