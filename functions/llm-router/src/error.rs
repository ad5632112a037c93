//! Why a routed request failed, and the status and JSON body it answers with.

use gateway_client::InvokeError;
use http::StatusCode;
use routing_core::api::{ErrorDetail, InvalidRequest};
use routing_core::calls::ClaimError;
use routing_core::policy::{NoRoute, Rejection};
use serde::Serialize;

/// What a failed routed request answers under `"error"`.
#[derive(Debug, Serialize)]
pub(crate) struct RouterErrorObject<'a> {
    /// Message, type, param and code.
    #[serde(flatten)]
    pub detail: ErrorDetail,
    /// Every model considered and why it was left out, when none could serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<&'a [Rejection]>,
}

/// A failed routed request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouterError {
    /// The caller's request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The latency budget ran out before an answer.
    #[error("latency budget of {budget_ms} ms exhausted {during}")]
    BudgetExhausted {
        /// The caller's budget.
        budget_ms: u64,
        /// What was being waited for.
        during: String,
    },
    /// A function down the chain failed.
    #[error(transparent)]
    Downstream(Box<InvokeError>),
    /// No model may serve the request (privacy, budget, constraints).
    #[error(transparent)]
    NoRoute(Box<NoRoute>),
    /// Feedback cannot be taken for the call.
    #[error(transparent)]
    Feedback(routing_core::calls::ClaimError),
    /// The path or method is not served.
    #[error("{method} {path} is not served; POST / with a routing request")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
}

impl RouterError {
    /// The failed call to another function, when that is what this is.
    pub(crate) fn downstream(&self) -> Option<&InvokeError> {
        match self {
            RouterError::Downstream(e) => Some(e),
            _ => None,
        }
    }
}

impl From<InvokeError> for RouterError {
    fn from(e: InvokeError) -> Self {
        RouterError::Downstream(Box::new(e))
    }
}

impl From<NoRoute> for RouterError {
    fn from(e: NoRoute) -> Self {
        RouterError::NoRoute(Box::new(e))
    }
}

impl RouterError {
    /// The HTTP status to answer with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            RouterError::Invalid(_) => StatusCode::BAD_REQUEST,
            RouterError::BudgetExhausted { .. } => StatusCode::GATEWAY_TIMEOUT,
            RouterError::Downstream(e) => match e.as_ref() {
                InvokeError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                InvokeError::Failed { status, .. } => {
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                InvokeError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                InvokeError::Decode { .. } => StatusCode::BAD_GATEWAY,
            },
            RouterError::NoRoute(e) => {
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY)
            }
            RouterError::Feedback(e) => match e {
                ClaimError::Unknown(_) => StatusCode::NOT_FOUND,
                ClaimError::OtherTenant(_) => StatusCode::FORBIDDEN,
                ClaimError::AlreadyRated(_) => StatusCode::CONFLICT,
                ClaimError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            RouterError::NotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// The JSON error body, with the failure class when a call failed.
    pub(crate) fn detail(&self) -> ErrorDetail {
        let mut detail = self.detail_unclassed();
        if detail.failure.is_none() {
            detail.failure = crate::resilience::failure_of(self);
        }
        detail
    }

    fn detail_unclassed(&self) -> ErrorDetail {
        let simple = |kind: &str| ErrorDetail::new(kind, self.to_string());
        match self {
            RouterError::Invalid(e) => ErrorDetail::from(e),
            RouterError::BudgetExhausted { .. } => simple("timeout"),
            RouterError::Downstream(e) => match e.as_ref() {
                InvokeError::Failed { detail, .. } => (**detail).clone(),
                InvokeError::Timeout { .. } => simple("timeout"),
                // The HTTP client's text names internal addresses; the log
                // keeps it, callers get the function's name.
                InvokeError::Unreachable { function, .. } => {
                    ErrorDetail::new("unavailable", format!("{function} is unreachable"))
                }
                InvokeError::Decode { function, .. } => ErrorDetail::new(
                    "upstream_error",
                    format!("{function} answered with an unreadable body"),
                ),
            },
            RouterError::NoRoute(e) => ErrorDetail {
                param: (e.status == 404).then(|| "model".to_owned()),
                ..ErrorDetail::new(
                    match e.status {
                        402 | 429 => "budget_exceeded",
                        404 => "model_not_found",
                        _ => "no_route",
                    },
                    e.message.clone(),
                )
            },
            RouterError::Feedback(e) => {
                let (kind, param) = match e {
                    ClaimError::Unknown(_) => ("not_found", "call_id"),
                    ClaimError::OtherTenant(_) => ("permission_error", "tenant"),
                    ClaimError::AlreadyRated(_) => ("conflict", "call_id"),
                    ClaimError::Store(_) => ("unavailable", "call_id"),
                };
                ErrorDetail {
                    param: Some(param.to_owned()),
                    ..simple(kind)
                }
            }
            RouterError::NotFound { .. } => simple("not_found"),
        }
    }

    /// The error object of the JSON error body: OpenAI's shape, plus the
    /// models left out and why when no model could serve.
    pub(crate) fn error_object(&self) -> RouterErrorObject<'_> {
        RouterErrorObject {
            detail: self.detail(),
            rejected: match self {
                RouterError::NoRoute(e) => Some(&e.rejected),
                _ => None,
            },
        }
    }

    /// A low-cardinality label for metrics.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            RouterError::Invalid(_) => "invalid",
            RouterError::BudgetExhausted { .. } => "budget_exhausted",
            RouterError::Downstream(e) => match e.as_ref() {
                InvokeError::Timeout { .. } => "timeout",
                InvokeError::Failed { .. } => "downstream_error",
                InvokeError::Unreachable { .. } => "unreachable",
                InvokeError::Decode { .. } => "decode",
            },
            RouterError::NoRoute(_) => "no_route",
            RouterError::Feedback(e) => match e {
                ClaimError::Unknown(_) => "unknown_call",
                ClaimError::OtherTenant(_) => "other_tenant",
                ClaimError::AlreadyRated(_) => "already_rated",
                ClaimError::Store(_) => "call_records_unavailable",
            },
            RouterError::NotFound { .. } => "not_found",
        }
    }
}
