//! The typed failure of a provider call.

use std::time::Duration;

use routing_core::failure::{Failure, FailureClass};

use crate::error_class::is_content_filter_message;

/// Why a provider call failed, classified so that the resilience layer can
/// decide whether to retry, wait, fall back or give up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// Short-term rate limit; retry after the given delay if any.
    #[error("rate limited: {message}")]
    RateLimited {
        /// From `Retry-After`, `retry-after-ms` or Google's `RetryInfo`.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// Account quota, credits or spend cap exhausted; retrying will not help.
    #[error("quota exhausted: {message}")]
    QuotaExhausted {
        /// The provider's message.
        message: String,
    },
    /// The provider is overloaded (529, 503 UNAVAILABLE, 498 capacity).
    #[error("provider overloaded: {message}")]
    Overloaded {
        /// Suggested wait, if the provider sent one.
        retry_after: Option<Duration>,
        /// The provider's message.
        message: String,
    },
    /// The prompt does not fit the model's context window (or Groq's TPM).
    #[error("context too long: {message}")]
    ContextTooLong {
        /// The provider's message.
        message: String,
    },
    /// Credentials rejected or missing permissions.
    #[error("authentication failed: {message}")]
    Auth {
        /// The provider's message.
        message: String,
    },
    /// The request itself was rejected (bad parameter, unknown model).
    #[error("bad request: {message}")]
    BadRequest {
        /// The provider's message.
        message: String,
    },
    /// A server-side failure at the provider (5xx, or an error inside a
    /// 200 stream).
    #[error("upstream error {status}: {message}")]
    Upstream {
        /// HTTP status, or 200 when the error came inside a stream.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// No answer within the deadline.
    #[error("provider timed out")]
    Timeout,
    /// Connection refused, reset, or the stream was cut.
    #[error("transport error: {message}")]
    Transport {
        /// What the HTTP client said.
        message: String,
    },
    /// The provider answered with something we could not parse.
    #[error("undecodable provider response: {message}")]
    Decode {
        /// What failed to parse.
        message: String,
    },
    /// The provider cannot be used here (missing secret, no base URL).
    #[error("provider {provider} is not configured: {reason}")]
    NotConfigured {
        /// Provider name.
        provider: String,
        /// What is missing; never a secret value.
        reason: String,
    },
}

impl ProviderError {
    /// The delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Overloaded { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::QuotaExhausted { .. } => "quota_exhausted",
            ProviderError::Overloaded { .. } => "overloaded",
            ProviderError::ContextTooLong { .. } => "context_too_long",
            ProviderError::Auth { .. } => "auth",
            ProviderError::BadRequest { .. } => "bad_request",
            ProviderError::Upstream { .. } => "upstream",
            ProviderError::Timeout => "timeout",
            ProviderError::Transport { .. } => "transport",
            ProviderError::Decode { .. } => "decode",
            ProviderError::NotConfigured { .. } => "not_configured",
        }
    }

    /// The failure class the fleet acts on (breakers, fallbacks), with
    /// the wait the provider asked for.
    pub fn failure(&self) -> Failure {
        let class = match self {
            ProviderError::RateLimited { .. } => FailureClass::RateLimited,
            ProviderError::QuotaExhausted { .. } => FailureClass::QuotaExhausted,
            ProviderError::Overloaded { .. } => FailureClass::Overloaded,
            ProviderError::ContextTooLong { .. } => FailureClass::ContextTooLong,
            // Our credentials, or a provider left unconfigured: neither is
            // the model's fault nor the caller's.
            ProviderError::Auth { .. } | ProviderError::NotConfigured { .. } => FailureClass::Auth,
            ProviderError::BadRequest { message } if is_content_filter_message(message) => {
                FailureClass::ContentFilter
            }
            ProviderError::BadRequest { .. } => FailureClass::BadRequest,
            ProviderError::Upstream { .. }
            | ProviderError::Transport { .. }
            | ProviderError::Decode { .. } => FailureClass::ProviderError,
            ProviderError::Timeout => FailureClass::TimeoutProvider,
        };
        Failure {
            class,
            retry_after_ms: self
                .retry_after()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }

    /// The status the fleet answers its own caller with.
    pub fn status(&self) -> u16 {
        match self {
            ProviderError::RateLimited { .. } | ProviderError::QuotaExhausted { .. } => 429,
            ProviderError::ContextTooLong { .. } => 413,
            ProviderError::BadRequest { .. } => 400,
            ProviderError::Timeout => 504,
            ProviderError::Auth { .. }
            | ProviderError::Upstream { .. }
            | ProviderError::Transport { .. }
            | ProviderError::Decode { .. } => 502,
            ProviderError::Overloaded { .. } | ProviderError::NotConfigured { .. } => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_waits_the_provider_asked_for_are_kept() {
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            message: String::new(),
        };
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
        let overloaded = ProviderError::Overloaded {
            retry_after: Some(Duration::from_secs(3)),
            message: String::new(),
        };
        assert_eq!(overloaded.retry_after(), Some(Duration::from_secs(3)));
        let final_ = ProviderError::QuotaExhausted {
            message: String::new(),
        };
        assert_eq!(final_.retry_after(), None);
    }

    #[test]
    fn failures_carry_their_class_and_wait() {
        let limited = ProviderError::RateLimited {
            retry_after: Some(Duration::from_millis(1500)),
            message: String::new(),
        };
        assert_eq!(
            limited.failure(),
            Failure {
                class: FailureClass::RateLimited,
                retry_after_ms: Some(1500)
            }
        );
        let auth = ProviderError::Auth {
            message: "invalid api key".to_owned(),
        };
        assert_eq!(auth.failure().class, FailureClass::Auth);
        assert!(!auth.failure().class.is_provider_fault());
        let filtered = ProviderError::BadRequest {
            message: "The response was filtered due to the prompt triggering content \
                      management policy"
                .to_owned(),
        };
        assert_eq!(filtered.failure().class, FailureClass::ContentFilter);
        assert_eq!(
            ProviderError::Timeout.failure().class,
            FailureClass::TimeoutProvider
        );
        let refused = ProviderError::Transport {
            message: "connection refused".to_owned(),
        };
        assert!(refused.failure().class.is_provider_fault());
    }
}
