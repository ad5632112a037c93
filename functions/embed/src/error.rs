//! Why an embeddings request failed, and the JSON error it answers with.

use providers::ProviderError;
use routing_core::api::{ErrorDetail, InvalidRequest};
use routing_core::failure::{Failure, FailureClass};

/// A failed embeddings request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EmbedError {
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The request asks for more work than one request may: 413.
    #[error("{message}")]
    TooLarge {
        /// The field at fault.
        param: &'static str,
        /// What is over which limit.
        message: String,
    },
    /// The Ollama backend failed.
    #[error("embedding backend: {0}")]
    Backend(ProviderError),
    /// The local model failed (a bug, not bad input).
    #[error("local model: {0}")]
    Model(String),
    /// The path or method is not served.
    #[error("{method} {path} is not served")]
    NotFound {
        /// Request method.
        method: String,
        /// Request path.
        path: String,
    },
}

impl EmbedError {
    /// An invalid-request error about `param`.
    pub(crate) fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::Invalid(InvalidRequest {
            param: Some(param.to_owned()),
            message: message.into(),
        })
    }

    /// HTTP status to answer with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            EmbedError::Invalid(_) => 400,
            EmbedError::TooLarge { .. } => 413,
            EmbedError::Backend(e) => e.status(),
            EmbedError::Model(_) => 500,
            EmbedError::NotFound { .. } => 404,
        }
    }

    /// Label for the `outcome` of the texts counter.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            EmbedError::Invalid(_) | EmbedError::TooLarge { .. } => "invalid",
            EmbedError::Backend(e) => e.metric_label(),
            EmbedError::Model(_) => "model_error",
            EmbedError::NotFound { .. } => "not_found",
        }
    }

    /// The failure class llm-router acts on.
    fn failure(&self) -> Failure {
        match self {
            EmbedError::Invalid(_) | EmbedError::TooLarge { .. } | EmbedError::NotFound { .. } => {
                Failure::new(FailureClass::BadRequest)
            }
            EmbedError::Backend(e) => e.failure(),
            EmbedError::Model(_) => Failure::new(FailureClass::ProviderError),
        }
    }

    /// JSON error body, with its failure class.
    pub(crate) fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            failure: Some(self.failure()),
            ..self.unclassed_detail()
        }
    }

    fn unclassed_detail(&self) -> ErrorDetail {
        let (kind, param) = match self {
            EmbedError::Invalid(e) => return ErrorDetail::from(e),
            EmbedError::TooLarge { param, .. } => ("invalid_request_error", Some(*param)),
            EmbedError::Backend(e) => (e.metric_label(), None),
            EmbedError::Model(_) => ("server_error", None),
            EmbedError::NotFound { .. } => ("not_found", None),
        };
        ErrorDetail {
            param: param.map(str::to_owned),
            ..ErrorDetail::new(kind, self.to_string())
        }
    }
}
