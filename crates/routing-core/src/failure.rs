//! Why a call failed, as one typed class carried from provider-proxy to
//! llm-router (the `failure` field of a JSON error, the same field in a
//! stream's `error` event). Breakers, retries and fallbacks read the class;
//! nothing re-guesses it from an HTTP status.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The response header that repeats an error's failure class, for clients
/// that read headers before (or instead of) the body.
pub const FAILURE_CLASS_HEADER: &str = "X-Failure-Class";

/// The class of a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The provider's short-term rate limit (see [`Failure::retry_after_ms`]).
    RateLimited,
    /// The account's quota, credits or spend cap is exhausted.
    QuotaExhausted,
    /// The provider is overloaded (503, 529, no usable replica).
    Overloaded,
    /// A server-side failure at the provider: a 5xx, a refused or cut
    /// connection, an unreadable answer.
    ProviderError,
    /// The provider did not answer within the time the attempt was given.
    TimeoutProvider,
    /// Our credentials for the provider are missing or rejected.
    Auth,
    /// The request was rejected as invalid (the caller's mistake, or a
    /// request provider-proxy refuses).
    BadRequest,
    /// The prompt does not fit the model's context window.
    ContextTooLong,
    /// The provider's content filter refused the prompt.
    ContentFilter,
    /// provider-proxy could not be reached or did not answer itself (the
    /// gateway answered for it, it crashed or it was restarting).
    UnreachableProxy,
    /// The caller's own latency budget ran out.
    DeadlineCaller,
}

impl FailureClass {
    /// Every class, for tests and metric labels.
    pub const ALL: [FailureClass; 11] = [
        FailureClass::RateLimited,
        FailureClass::QuotaExhausted,
        FailureClass::Overloaded,
        FailureClass::ProviderError,
        FailureClass::TimeoutProvider,
        FailureClass::Auth,
        FailureClass::BadRequest,
        FailureClass::ContextTooLong,
        FailureClass::ContentFilter,
        FailureClass::UnreachableProxy,
        FailureClass::DeadlineCaller,
    ];

    /// The wire name (`rate_limited`, …), also the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::RateLimited => "rate_limited",
            FailureClass::QuotaExhausted => "quota_exhausted",
            FailureClass::Overloaded => "overloaded",
            FailureClass::ProviderError => "provider_error",
            FailureClass::TimeoutProvider => "timeout_provider",
            FailureClass::Auth => "auth",
            FailureClass::BadRequest => "bad_request",
            FailureClass::ContextTooLong => "context_too_long",
            FailureClass::ContentFilter => "content_filter",
            FailureClass::UnreachableProxy => "unreachable_proxy",
            FailureClass::DeadlineCaller => "deadline_caller",
        }
    }

    /// The class named `name` (its wire name), if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name.trim())
    }

    /// Whether the failure is the provider's own fault, and so counts
    /// against the model's circuit breaker: overload, a 5xx or a refused
    /// connection at the provider. A provider timeout counts only when the
    /// attempt had its fair share of time, which the caller decides (see
    /// [`FailureClass::TimeoutProvider`]); never the caller's budget, a
    /// request the caller got wrong, our credentials or provider-proxy's own
    /// health.
    pub fn is_provider_fault(self) -> bool {
        matches!(
            self,
            FailureClass::Overloaded | FailureClass::ProviderError | FailureClass::TimeoutProvider
        )
    }

    /// Whether another model of the chain may succeed where this one
    /// failed. The caller's mistakes, a content refusal and an exhausted
    /// budget are final.
    pub fn worth_falling_back(self) -> bool {
        !matches!(
            self,
            FailureClass::BadRequest | FailureClass::ContentFilter | FailureClass::DeadlineCaller
        )
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure's class and the wait the provider asked for, as carried in a
/// JSON error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The class.
    pub class: FailureClass,
    /// The provider's `Retry-After`, in milliseconds, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Failure {
    /// A failure of `class` with no requested wait.
    pub fn new(class: FailureClass) -> Self {
        Self {
            class,
            retry_after_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde() {
        for class in FailureClass::ALL {
            let json = serde_json::to_value(class).unwrap_or_default();
            assert_eq!(json, class.as_str(), "{class:?}");
            assert_eq!(FailureClass::from_name(class.as_str()), Some(class));
        }
    }

    #[test]
    fn only_provider_faults_count_against_a_model() {
        let faults: Vec<_> = FailureClass::ALL
            .into_iter()
            .filter(|c| c.is_provider_fault())
            .collect();
        assert_eq!(
            faults,
            [
                FailureClass::Overloaded,
                FailureClass::ProviderError,
                FailureClass::TimeoutProvider
            ]
        );
        assert!(!FailureClass::DeadlineCaller.worth_falling_back());
        assert!(FailureClass::Auth.worth_falling_back());
        assert!(FailureClass::UnreachableProxy.worth_falling_back());
    }
}
