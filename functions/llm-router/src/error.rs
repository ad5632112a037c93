//! Why a routed request failed, and the status and JSON body it answers with.

use http::StatusCode;
use routing_core::api::{ErrorDetail, InvalidRequest};
use routing_core::gateway::InvokeError;

/// A failed routed request.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
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
    Downstream(InvokeError),
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
    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
        match self {
            RouterError::Invalid(_) => StatusCode::BAD_REQUEST,
            RouterError::BudgetExhausted { .. } => StatusCode::GATEWAY_TIMEOUT,
            RouterError::Downstream(InvokeError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            RouterError::Downstream(InvokeError::Failed { status, .. }) => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            RouterError::Downstream(InvokeError::Unreachable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RouterError::Downstream(InvokeError::Decode { .. }) => StatusCode::BAD_GATEWAY,
            RouterError::NotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    /// The JSON error body.
    pub fn detail(&self) -> ErrorDetail {
        let simple = |kind: &str| ErrorDetail {
            message: self.to_string(),
            kind: kind.to_owned(),
            param: None,
            code: None,
        };
        match self {
            RouterError::Invalid(e) => ErrorDetail {
                message: e.message.clone(),
                kind: "invalid_request_error".to_owned(),
                param: e.param.clone(),
                code: None,
            },
            RouterError::BudgetExhausted { .. } => simple("timeout"),
            RouterError::Downstream(InvokeError::Failed { detail, .. }) => detail.clone(),
            RouterError::Downstream(InvokeError::Timeout { .. }) => simple("timeout"),
            RouterError::Downstream(InvokeError::Unreachable { .. }) => simple("unavailable"),
            RouterError::Downstream(InvokeError::Decode { .. }) => simple("upstream_error"),
            RouterError::NotFound { .. } => simple("not_found"),
        }
    }

    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            RouterError::Invalid(_) => "invalid",
            RouterError::BudgetExhausted { .. } => "budget_exhausted",
            RouterError::Downstream(InvokeError::Timeout { .. }) => "timeout",
            RouterError::Downstream(InvokeError::Failed { .. }) => "downstream_error",
            RouterError::Downstream(InvokeError::Unreachable { .. }) => "unreachable",
            RouterError::Downstream(InvokeError::Decode { .. }) => "decode",
            RouterError::NotFound { .. } => "not_found",
        }
    }
}
