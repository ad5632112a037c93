//! Why a routed request failed, and the status and JSON body it answers with.

use gateway_client::InvokeError;
use http::StatusCode;
use routing_core::api::{ErrorDetail, InvalidRequest};
use routing_core::policy::NoRoute;

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
    Downstream(Box<InvokeError>),
    /// No model may serve the request (privacy, budget, constraints).
    #[error(transparent)]
    NoRoute(Box<NoRoute>),
    /// The path or method is not served.
    #[error("{method} {path} is not served; POST / with a routing request")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
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
    /// The failed downstream call, if that is what this is.
    pub fn downstream(&self) -> Option<&InvokeError> {
        match self {
            RouterError::Downstream(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> StatusCode {
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
            RouterError::Downstream(e) => match e.as_ref() {
                InvokeError::Failed { detail, .. } => detail.clone(),
                InvokeError::Timeout { .. } => simple("timeout"),
                InvokeError::Unreachable { .. } => simple("unavailable"),
                InvokeError::Decode { .. } => simple("upstream_error"),
            },
            RouterError::NoRoute(e) => ErrorDetail {
                message: e.message.clone(),
                kind: match e.status {
                    402 | 429 => "budget_exceeded",
                    404 => "model_not_found",
                    _ => "no_route",
                }
                .to_owned(),
                param: (e.status == 404).then(|| "model".to_owned()),
                code: None,
            },
            RouterError::NotFound { .. } => simple("not_found"),
        }
    }

    /// The JSON error body: OpenAI's shape, plus the models left out and why
    /// when no model could serve.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({ "error": self.detail() });
        if let RouterError::NoRoute(e) = self {
            body["error"]["rejected"] = serde_json::to_value(&e.rejected).unwrap_or_default();
        }
        body
    }

    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
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
            RouterError::NotFound { .. } => "not_found",
        }
    }
}
