//! The fallback chain's rules: how much time each attempt gets, what class
//! a failed attempt falls in, and whether that class counts against the
//! model's breaker or is worth the next model. One runner,
//! [`Router::run_attempts`], walks the chain for plain and streamed calls.
//!
//! A failure's class comes from provider-proxy (the `failure` field of its
//! error); it is never re-guessed from an HTTP status. What provider-proxy
//! did not classify did not come from it: the gateway answered for a
//! crashed or restarting proxy, and that is the proxy's health, not the
//! model's.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gateway_client::InvokeError;
use routing_core::api::{ErrorDetail, RouteExplanation};
use routing_core::env::Env;
use routing_core::failure::{Failure, FailureClass};
use routing_core::policy::{Admission, Candidate, ModelEntry, NoRoute, RejectReason, Rejection};
use tokio::time::Instant;

use crate::error::RouterError;
use crate::router::{Call, Plan, Router, attempt};

/// `ATTEMPT_TIMEOUT_FACTOR`: an attempt that has a fallback after it gets
/// the model's expected latency times this much of the remaining budget.
pub(crate) const ENV_ATTEMPT_TIMEOUT_FACTOR: &str = "ATTEMPT_TIMEOUT_FACTOR";
/// `ATTEMPT_MIN_TIMEOUT_MS`: the least time such an attempt gets.
pub(crate) const ENV_ATTEMPT_MIN_TIMEOUT_MS: &str = "ATTEMPT_MIN_TIMEOUT_MS";
const DEFAULT_ATTEMPT_TIMEOUT_FACTOR: f64 = 3.0;
const DEFAULT_ATTEMPT_MIN_TIMEOUT_MS: u64 = 250;

/// How the remaining budget is shared between the attempts of a chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttemptPolicy {
    /// Multiple of the model's expected latency an attempt may take.
    pub factor: f64,
    /// The least time an attempt is given.
    pub min_timeout: Duration,
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        Self {
            factor: DEFAULT_ATTEMPT_TIMEOUT_FACTOR,
            min_timeout: Duration::from_millis(DEFAULT_ATTEMPT_MIN_TIMEOUT_MS),
        }
    }
}

impl AttemptPolicy {
    /// Reads `ATTEMPT_TIMEOUT_FACTOR` and `ATTEMPT_MIN_TIMEOUT_MS`.
    pub(crate) fn from_env(env: &Env) -> Result<Self, String> {
        let factor = match env.get(ENV_ATTEMPT_TIMEOUT_FACTOR) {
            None => DEFAULT_ATTEMPT_TIMEOUT_FACTOR,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 1.0 => f,
                _ => {
                    return Err(format!(
                        "{ENV_ATTEMPT_TIMEOUT_FACTOR} must be a number of at least 1, not {v:?}"
                    ));
                }
            },
        };
        let min_ms = env
            .parse_or(ENV_ATTEMPT_MIN_TIMEOUT_MS, DEFAULT_ATTEMPT_MIN_TIMEOUT_MS)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            factor,
            min_timeout: Duration::from_millis(min_ms),
        })
    }

    /// The time one attempt gets: the model's fair share (its expected
    /// latency times the factor, at least the minimum) when another model
    /// follows it in the chain, so that a hung model leaves time for the
    /// next; everything that is left for the last one.
    pub(crate) fn slice(&self, remaining: Duration, expected_ms: f64, last: bool) -> Slice {
        let expected_ms = if expected_ms.is_finite() {
            expected_ms.max(0.0)
        } else {
            0.0
        };
        let fair = Duration::from_secs_f64((expected_ms * self.factor / 1000.0).min(86_400.0))
            .max(self.min_timeout);
        Slice {
            timeout: if last { remaining } else { remaining.min(fair) },
            remaining,
            fair: remaining >= fair,
        }
    }
}

/// The time given to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slice {
    /// How long the attempt may take.
    pub timeout: Duration,
    /// The caller's budget left when it started.
    pub remaining: Duration,
    /// Whether the attempt had at least the model's fair share; a provider
    /// timeout counts against the model only then (with one millisecond of
    /// budget every model times out, and that is the caller's doing).
    pub fair: bool,
}

/// The class of a failed attempt that was given `slice`.
pub(crate) fn classify(error: &RouterError, slice: &Slice) -> FailureClass {
    match error {
        RouterError::Downstream(e)
            if matches!(e.as_ref(), InvokeError::Timeout { .. })
                && slice.timeout < slice.remaining =>
        {
            // provider-proxy is told to give up before the attempt's slice
            // ends; when it has not answered by then it is slow or stuck,
            // which is its own health (a flood of callers can cause it), and
            // the budget left goes to the next model.
            FailureClass::UnreachableProxy
        }
        other => classify_error(other),
    }
}

/// The class of an error, without knowing the attempt it ended.
fn classify_error(error: &RouterError) -> FailureClass {
    match error {
        RouterError::BudgetExhausted { .. } => FailureClass::DeadlineCaller,
        RouterError::Downstream(e) => match e.as_ref() {
            InvokeError::Failed { detail, .. } => detail
                .failure
                .map_or(FailureClass::UnreachableProxy, |f| f.class),
            // The router's own clock ran out with the caller's budget.
            InvokeError::Timeout { .. } => FailureClass::DeadlineCaller,
            InvokeError::Unreachable { .. } | InvokeError::Decode { .. } => {
                FailureClass::UnreachableProxy
            }
        },
        RouterError::Invalid(_) => FailureClass::BadRequest,
        RouterError::NoRoute(_) => FailureClass::Overloaded,
        RouterError::Feedback(_) | RouterError::NotFound { .. } => FailureClass::BadRequest,
    }
}

/// The failure a router error stands for, as callers see it in `failure`.
pub(crate) fn failure_of(error: &RouterError) -> Option<Failure> {
    match error {
        RouterError::Downstream(e) => match e.as_ref() {
            InvokeError::Failed { detail, .. } => detail
                .failure
                .or(Some(Failure::new(FailureClass::UnreachableProxy))),
            _ => Some(Failure::new(classify_error(error))),
        },
        RouterError::BudgetExhausted { .. } => Some(Failure::new(FailureClass::DeadlineCaller)),
        _ => None,
    }
}

/// Whether a failure of `class` counts against the model's breaker.
pub(crate) fn counts_against_model(class: FailureClass, slice: &Slice) -> bool {
    match class {
        FailureClass::TimeoutProvider => slice.fair,
        other => other.is_provider_fault(),
    }
}

/// The cause to count against a stream's model when it failed part way
/// with `failure`, if it counts: only the provider's own errors (a stream
/// is bounded by the caller's whole budget, so its timeouts are the
/// caller's).
pub(crate) fn stream_fault(failure: Option<&ErrorDetail>) -> Option<String> {
    let detail = failure?;
    let class = detail.failure?.class;
    matches!(
        class,
        FailureClass::Overloaded | FailureClass::ProviderError
    )
    .then(|| cause(class, &detail.message))
}

/// Whether a failed attempt's outcome says something about the model, and
/// so is learned as a failure: not when it was skipped for its breaker, nor
/// for the caller's budget, our credentials, a bad request or
/// provider-proxy's health.
pub(crate) fn tells_of_the_model(outcome: &str) -> bool {
    match FailureClass::from_name(outcome) {
        Some(
            FailureClass::DeadlineCaller
            | FailureClass::UnreachableProxy
            | FailureClass::Auth
            | FailureClass::BadRequest,
        ) => false,
        Some(_) => true,
        None => outcome != "breaker_open",
    }
}

/// What an open breaker names as its last cause.
fn cause(class: FailureClass, message: &str) -> String {
    let message: String = message.chars().take(160).collect();
    format!("{class} ({message})")
}

/// The model chosen by [`Router::run_attempts`] and what its attempt gave.
pub(crate) struct Attempted<'p, T> {
    /// Its place in the chain (0: the primary).
    pub position: usize,
    /// The model.
    pub model: &'p Arc<ModelEntry>,
    /// When its attempt started.
    pub started: Instant,
    /// What the attempt gave.
    pub value: T,
    /// The breaker's admission, held until the outcome is recorded.
    pub admission: Admission,
}

impl Router {
    /// Walks the decision's chain: each model its breaker admits gets a
    /// slice of the remaining budget; a failure is classed, counted against
    /// the model only when it is the provider's fault, and followed by the
    /// next model while its class is worth it and time remains. The last
    /// model, rate-limited or overloaded with a wait that fits the budget,
    /// is tried once more after that wait. The caller records the success
    /// (live latency, spend).
    pub(crate) async fn run_attempts<'p, T, F, Fut>(
        &self,
        plan: &'p Plan,
        call: &Call<'_>,
        explanation: &mut RouteExplanation,
        mut attempt_with: F,
    ) -> Result<Attempted<'p, T>, RouterError>
    where
        F: FnMut(&'p Arc<ModelEntry>, Slice) -> Fut,
        Fut: Future<Output = Result<T, RouterError>>,
    {
        let chain: Vec<&'p Candidate> = plan.decision.chain().collect();
        let mut last_error = None;
        let mut retried = false;
        let mut position = 0;
        while let Some(candidate) = chain.get(position) {
            let model = &candidate.model;
            let last = position + 1 == chain.len();
            let Some(admission) = self.live().admit(&model.id) else {
                explanation
                    .attempts
                    .push(attempt(model, "breaker_open", Instant::now()));
                last_error.get_or_insert_with(|| self.breaker_busy(plan, model));
                position += 1;
                continue;
            };
            let remaining = plan.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                self.count_failure(FailureClass::DeadlineCaller);
                return Err(last_error.unwrap_or_else(|| RouterError::BudgetExhausted {
                    budget_ms: plan.request.max_latency_ms,
                    during: format!("before calling {}", model.id),
                }));
            }
            let expected_ms = self
                .live()
                .trusted_latency(&model.id)
                .map_or(candidate.expected_latency_ms, |l| {
                    l.percentile_ms.max(candidate.expected_latency_ms)
                });
            let slice = self.attempt_policy().slice(remaining, expected_ms, last);
            let started = Instant::now();
            match attempt_with(model, slice).await {
                Ok(value) => {
                    return Ok(Attempted {
                        position,
                        model,
                        started,
                        value,
                        admission,
                    });
                }
                Err(error) => {
                    let class = classify(&error, &slice);
                    tracing::warn!(call_id = call.id, model = %model.id, failure = %class, detail = %error, "attempt failed");
                    if counts_against_model(class, &slice) {
                        let message = error.detail().message;
                        self.live().observe_fault(
                            &model.id,
                            started.elapsed(),
                            &cause(class, &message),
                        );
                    }
                    drop(admission);
                    self.count_failure(class);
                    explanation
                        .attempts
                        .push(attempt(model, class.as_str(), started));
                    let error = match (class, error) {
                        (FailureClass::DeadlineCaller, RouterError::Downstream(e)) => {
                            RouterError::BudgetExhausted {
                                budget_ms: plan.request.max_latency_ms,
                                during: format!("waiting for {}", function_of(&e)),
                            }
                        }
                        (_, error) => error,
                    };
                    let wait = if last && !retried {
                        self.retry_wait(&error, class, plan.deadline)
                    } else {
                        None
                    };
                    if let Some(wait) = wait {
                        retried = true;
                        tracing::info!(call_id = call.id, model = %model.id, failure = %class, wait_ms = wait.as_millis(), "retrying after the provider's wait");
                        last_error = Some(error);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if !(class.worth_falling_back() && Instant::now() < plan.deadline) {
                        return Err(error);
                    }
                    self.count_fallback(&model.provider);
                    tracing::debug!(call_id = call.id, model = %model.id, failure = %class, "falling back");
                    last_error = Some(error);
                    position += 1;
                }
            }
        }
        Err(last_error.unwrap_or(RouterError::BudgetExhausted {
            budget_ms: plan.request.max_latency_ms,
            during: "before a model could be called".to_owned(),
        }))
    }

    /// How long to wait before trying a rate-limited or overloaded model
    /// again: the wait it asked for, when that leaves an attempt's minimum
    /// time before the caller's deadline.
    fn retry_wait(
        &self,
        error: &RouterError,
        class: FailureClass,
        deadline: Instant,
    ) -> Option<Duration> {
        if !matches!(class, FailureClass::RateLimited | FailureClass::Overloaded) {
            return None;
        }
        let RouterError::Downstream(e) = error else {
            return None;
        };
        let InvokeError::Failed { detail, .. } = e.as_ref() else {
            return None;
        };
        let wait = Duration::from_millis(detail.failure?.retry_after_ms?);
        (Instant::now() + wait + self.attempt_policy().min_timeout < deadline).then_some(wait)
    }

    /// The error for a model whose half-open breaker has no trial call left.
    fn breaker_busy(&self, plan: &Plan, model: &ModelEntry) -> RouterError {
        let last_cause = self.live().last_cause(&model.id);
        let reason = RejectReason::BreakerOpen {
            retry_in_ms: 0,
            last_cause,
        };
        RouterError::from(NoRoute {
            message: format!("{}: {reason}; its trial calls are taken", model.id),
            rejected: vec![Rejection {
                model: model.id.clone(),
                rule: plan.decision.rule.clone(),
                reason,
            }],
            status: 503,
            budget: None,
        })
    }
}

fn function_of(e: &InvokeError) -> &str {
    match e {
        InvokeError::Timeout { function, .. }
        | InvokeError::Unreachable { function, .. }
        | InvokeError::Failed { function, .. }
        | InvokeError::Decode { function, .. } => function,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_attempt_with_a_fallback_leaves_time_for_it() {
        let policy = AttemptPolicy::default();
        let slice = policy.slice(ms(3000), 200.0, false);
        assert_eq!(slice.timeout, ms(600));
        assert!(slice.fair);
        let last = policy.slice(ms(3000), 200.0, true);
        assert_eq!(last.timeout, ms(3000));
        // The minimum applies to fast models.
        assert_eq!(policy.slice(ms(3000), 10.0, false).timeout, ms(250));
    }

    #[test]
    fn a_budget_below_the_fair_share_is_the_callers_doing() {
        let policy = AttemptPolicy::default();
        let slice = policy.slice(ms(1), 200.0, false);
        assert_eq!(slice.timeout, ms(1));
        assert!(!slice.fair);
        assert!(!counts_against_model(FailureClass::TimeoutProvider, &slice));
        assert!(counts_against_model(FailureClass::ProviderError, &slice));
        let fair = policy.slice(ms(5000), 200.0, false);
        assert!(counts_against_model(FailureClass::TimeoutProvider, &fair));
        for class in [
            FailureClass::DeadlineCaller,
            FailureClass::UnreachableProxy,
            FailureClass::Auth,
            FailureClass::BadRequest,
            FailureClass::RateLimited,
        ] {
            assert!(!counts_against_model(class, &fair), "{class}");
        }
    }

    #[test]
    fn only_failures_of_the_model_are_learned() {
        for outcome in [
            "provider_error",
            "timeout_provider",
            "context_too_long",
            "rate_limited",
        ] {
            assert!(tells_of_the_model(outcome), "{outcome}");
        }
        for outcome in [
            "breaker_open",
            "deadline_caller",
            "unreachable_proxy",
            "auth",
        ] {
            assert!(!tells_of_the_model(outcome), "{outcome}");
        }
    }

    #[test]
    fn what_provider_proxy_did_not_class_is_its_own_health() {
        let failed = |failure| {
            RouterError::from(InvokeError::Failed {
                function: "provider-proxy".to_owned(),
                status: 502,
                detail: Box::new(ErrorDetail {
                    failure,
                    ..ErrorDetail::new("upstream_error", "bad gateway")
                }),
                retry_after_secs: None,
            })
        };
        let whole = AttemptPolicy::default().slice(Duration::from_secs(5), 200.0, true);
        assert_eq!(
            classify(&failed(None), &whole),
            FailureClass::UnreachableProxy
        );
        assert_eq!(
            classify(&failed(Some(Failure::new(FailureClass::Auth))), &whole),
            FailureClass::Auth
        );
        let timeout = RouterError::from(InvokeError::Timeout {
            function: "provider-proxy".to_owned(),
            timeout_ms: 600,
        });
        assert_eq!(classify(&timeout, &whole), FailureClass::DeadlineCaller);
        let cut = AttemptPolicy::default().slice(Duration::from_secs(5), 200.0, false);
        assert_eq!(classify(&timeout, &cut), FailureClass::UnreachableProxy);
        let refused = RouterError::from(InvokeError::Unreachable {
            function: "provider-proxy".to_owned(),
            message: "connection refused".to_owned(),
        });
        assert_eq!(classify(&refused, &whole), FailureClass::UnreachableProxy);
        let budget = RouterError::BudgetExhausted {
            budget_ms: 1,
            during: String::new(),
        };
        assert_eq!(classify(&budget, &whole), FailureClass::DeadlineCaller);
    }
}
