//! Failures of the OpenAI-compatible surface in OpenAI's own terms: the
//! status, `type` and `code` OpenAI answers the same failure with, and
//! `Retry-After` where a wait is known. The native API keeps the fleet's
//! statuses (413 for a context that does not fit, 422 for no route).
//!
//! | failure | status | `type` | `code` |
//! |---|---|---|---|
//! | unknown field | 400 | `invalid_request_error` | `unknown_parameter` |
//! | OpenAI field the router does not serve | 400 | `invalid_request_error` | `unsupported_parameter` / `unsupported_value` |
//! | bad value | 400 | `invalid_request_error` | `invalid_value` / `invalid_type` / `missing_required_parameter` |
//! | prompt too long for every model | 400 | `invalid_request_error` | `context_length_exceeded` |
//! | unknown pinned model | 404 | `invalid_request_error` | `model_not_found` |
//! | provider rate limit | 429 + `Retry-After` when the provider sent one | `requests` | `rate_limit_exceeded` |
//! | provider quota, tenant budget (429) | 429, `x-should-retry: false` | `insufficient_quota` | `insufficient_quota` |
//! | tenant budget (402) | 402 | `insufficient_quota` | `budget_exceeded` |
//! | private request to an external provider | 403 | `permission_error` | `private_request_refused` |
//! | no model meets the constraints | 422 | `invalid_request_error` | `no_route` |
//! | overloaded, not configured, unreachable | 503 (+ `Retry-After` when known) | `server_error` | `overloaded` / `provider_not_configured` / `service_unavailable` / `breaker_open` |
//! | provider failure | 502 | `server_error` | `upstream_error` |
//! | latency budget exhausted | 504 | `timeout` | `timeout` |

use std::time::Duration;

use faas_runtime::{Body, error_response};
use gateway_client::InvokeError;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use routing_core::api::{ErrorDetail, InvalidRequest};
use routing_core::policy::{NoRoute, RejectReason, Rejection};
use serde::Serialize;

use crate::error::RouterError;
use crate::openai_request::ParamError;

/// The OpenAI SDKs' hint that a retry cannot help.
const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// A failed OpenAI-compatible request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenAiError {
    /// A field refused before routing.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// Anything the router refused or failed at.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// `GET /v1/models/{id}` of an id not in the catalogue.
    #[error("The model '{0}' does not exist")]
    ModelNotFound(String),
}

impl From<InvalidRequest> for OpenAiError {
    fn from(e: InvalidRequest) -> Self {
        OpenAiError::Param(ParamError::from(e))
    }
}

/// `{"error": …}` as OpenAI writes it.
#[derive(Debug, Serialize)]
struct ErrorObject<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
    /// Every model considered and why it was left out, when none could serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    rejected: Option<&'a [Rejection]>,
}

/// A failure in OpenAI's terms.
struct Conformed<'a> {
    status: StatusCode,
    body: ErrorObject<'a>,
    retry_after: Option<Duration>,
    retry_is_futile: bool,
}

impl OpenAiError {
    /// A low-cardinality label for logs.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            OpenAiError::Param(_) => "invalid",
            OpenAiError::Router(e) => e.metric_label(),
            OpenAiError::ModelNotFound(_) => "not_found",
        }
    }

    /// The HTTP status to answer with.
    pub(crate) fn status(&self) -> StatusCode {
        self.conform().status
    }

    /// The error response: status, OpenAI's body and `Retry-After` (whole
    /// seconds, rounded up) when the wait is known.
    pub(crate) fn response(&self) -> Response<Body> {
        let conformed = self.conform();
        let mut response = error_response(conformed.status, &conformed.body);
        if let Some(wait) = conformed.retry_after {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        if conformed.retry_is_futile {
            response
                .headers_mut()
                .insert(SHOULD_RETRY, HeaderValue::from_static("false"));
        }
        response
    }

    fn conform(&self) -> Conformed<'_> {
        match self {
            OpenAiError::Param(e) => Conformed::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some(e.code),
                e.param.clone(),
                e.message.clone(),
            ),
            OpenAiError::Router(e) => conform_router(e),
            OpenAiError::ModelNotFound(_) => Conformed::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("model_not_found"),
                Some("model".to_owned()),
                self.to_string(),
            ),
        }
    }
}

impl<'a> Conformed<'a> {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        param: Option<String>,
        message: String,
    ) -> Self {
        Self {
            status,
            body: ErrorObject {
                message,
                kind,
                param,
                code,
                rejected: None,
            },
            retry_after: None,
            retry_is_futile: false,
        }
    }
}

fn conform_router(error: &RouterError) -> Conformed<'_> {
    let message = error.to_string();
    match error {
        RouterError::Invalid(e) => {
            let code = e.param.as_ref().map(|_| "invalid_value");
            Conformed::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                code,
                e.param.clone(),
                message,
            )
        }
        RouterError::BudgetExhausted { .. } => Conformed::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            Some("timeout"),
            None,
            message,
        ),
        RouterError::Downstream(e) => conform_downstream(e),
        RouterError::NoRoute(e) => conform_no_route(e),
        RouterError::NotFound { method, path } => Conformed::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("unknown_url"),
            None,
            format!("Invalid URL ({method} {path})"),
        ),
        RouterError::Feedback(_) => Conformed::new(
            error.status(),
            "invalid_request_error",
            None,
            error.detail().param,
            message,
        ),
    }
}

/// A function down the chain failed: provider-proxy's `type` is the
/// provider failure's class (`rate_limited`, `context_too_long`, …).
fn conform_downstream(error: &InvokeError) -> Conformed<'static> {
    let message = error.to_string();
    let (status, detail, retry_after) = match error {
        InvokeError::Failed {
            status,
            detail,
            retry_after_secs,
            ..
        } => (
            *status,
            detail,
            retry_after_secs.map(|s| Duration::from_secs(u64::from(s))),
        ),
        InvokeError::Timeout { .. } => {
            return Conformed::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                Some("timeout"),
                None,
                message,
            );
        }
        // The HTTP client's text names internal addresses: the log keeps
        // it, callers get the function's name.
        InvokeError::Unreachable { function, .. } => {
            return Conformed::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("service_unavailable"),
                None,
                format!("{function} is unreachable"),
            );
        }
        InvokeError::Decode { function, .. } => {
            return Conformed::new(
                StatusCode::BAD_GATEWAY,
                "server_error",
                Some("upstream_error"),
                None,
                format!("{function} answered with an unreadable body"),
            );
        }
    };
    let message = detail.message.clone();
    let param = detail.param.clone();
    let mut conformed = match (status, detail.kind.as_str()) {
        (_, "rate_limited") => Conformed::new(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            None,
            message,
        ),
        (_, "quota_exhausted") => {
            let mut c = Conformed::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                None,
                message,
            );
            c.retry_is_futile = true;
            c
        }
        (_, "context_too_long") => Conformed::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
            Some("messages".to_owned()),
            message,
        ),
        (_, "private_request_refused") => Conformed::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            Some("private_request_refused"),
            param,
            message,
        ),
        (_, "overloaded") => Conformed::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("overloaded"),
            None,
            message,
        ),
        (_, "not_configured") => Conformed::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("provider_not_configured"),
            None,
            message,
        ),
        (_, "timeout") => Conformed::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            Some("timeout"),
            None,
            message,
        ),
        // The embed function's limits (inputs, tokens) are 413: a bad
        // request in OpenAI's terms.
        (400 | 413, _) => Conformed::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            param.as_ref().map(|_| "invalid_value"),
            param,
            message,
        ),
        (status, _) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let (kind, code) = if status.is_server_error() {
                ("server_error", "upstream_error")
            } else {
                ("invalid_request_error", "invalid_value")
            };
            Conformed::new(status, kind, Some(code), param, message)
        }
    };
    if matches!(conformed.status.as_u16(), 429 | 503) && !conformed.retry_is_futile {
        conformed.retry_after = retry_after;
    }
    conformed
}

/// A failure after a stream started, as OpenAI sends one
/// (`data: {"error": …}`): the fleet's class (`rate_limited`, …) becomes
/// OpenAI's `type` and `code`.
pub(crate) fn stream_error(detail: &ErrorDetail) -> serde_json::Value {
    let failure = InvokeError::Failed {
        function: "provider-proxy".to_owned(),
        status: StatusCode::BAD_GATEWAY.as_u16(),
        detail: Box::new(detail.clone()),
        retry_after_secs: None,
    };
    serde_json::to_value(conform_downstream(&failure).body).unwrap_or_default()
}

/// No model could serve: a prompt too long for every model that could
/// otherwise serve is OpenAI's `context_length_exceeded`; open breakers
/// give the wait until the first trial call.
fn conform_no_route(error: &NoRoute) -> Conformed<'_> {
    let message = error.message.clone();
    let too_long = error
        .rejected
        .iter()
        .any(|r| matches!(r.reason, RejectReason::ContextWindow { .. }))
        && error.rejected.iter().all(|r| {
            matches!(
                r.reason,
                RejectReason::ContextWindow { .. }
                    | RejectReason::Private
                    | RejectReason::TaskUnsupported { .. }
            )
        });
    let mut conformed = match error.status {
        _ if too_long => Conformed::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
            Some("messages".to_owned()),
            message,
        ),
        404 => Conformed::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            Some("model".to_owned()),
            message,
        ),
        402 => Conformed::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            Some("budget_exceeded"),
            None,
            message,
        ),
        429 => {
            let mut c = Conformed::new(
                StatusCode::TOO_MANY_REQUESTS,
                "insufficient_quota",
                Some("insufficient_quota"),
                None,
                message,
            );
            c.retry_is_futile = true;
            c
        }
        503 => {
            let mut c = Conformed::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                Some("breaker_open"),
                None,
                message,
            );
            c.retry_after = error
                .rejected
                .iter()
                .filter_map(|r| match r.reason {
                    RejectReason::BreakerOpen { retry_in_ms, .. } => {
                        Some(Duration::from_millis(retry_in_ms))
                    }
                    _ => None,
                })
                .min();
            c
        }
        status => Conformed::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            "invalid_request_error",
            Some("no_route"),
            None,
            message,
        ),
    };
    conformed.body.rejected = Some(&error.rejected);
    conformed
}

#[cfg(test)]
#[path = "openai_error_tests.rs"]
mod tests;
