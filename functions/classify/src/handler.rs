//! HTTP surface of the classify function.

use bytes::Bytes;
use faas_runtime::{
    Body, Handler, RequestContext, error_response, json_error, json_response, register_metric,
};
use http::{Method, Request, Response, StatusCode};
use prometheus::{IntCounterVec, Opts, Registry};
use routing_core::api::{ClassifyRequest, ErrorDetail, parse_json};
use routing_core::classifier;

/// Serves `POST /` with `{"text": "..."}`.
pub(crate) struct ClassifyHandler {
    verdicts: IntCounterVec,
}

impl ClassifyHandler {
    /// Registers the function's metrics.
    pub(crate) fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let verdicts = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "classify_verdicts_total",
                    "Classifications by task and difficulty.",
                ),
                &["task", "difficulty"],
            ),
        )?;
        Ok(Self { verdicts })
    }
}

impl Handler for ClassifyHandler {
    async fn handle(&self, req: Request<Bytes>, _cx: RequestContext) -> Response<Body> {
        if (req.method(), req.uri().path()) != (&Method::POST, "/") {
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "{} {} is not served; POST / with {{\"text\":\"...\"}}",
                    req.method(),
                    req.uri().path()
                ),
                None,
            );
        }
        match parse_json::<ClassifyRequest>(req.body()) {
            Ok(request) => {
                let verdict = classifier::classify(&request.text);
                self.verdicts
                    .with_label_values(&[verdict.task.as_str(), verdict.difficulty.as_str()])
                    .inc();
                json_response(StatusCode::OK, &verdict)
            }
            Err(e) => error_response(StatusCode::BAD_REQUEST, &ErrorDetail::from(&e)),
        }
    }
}
