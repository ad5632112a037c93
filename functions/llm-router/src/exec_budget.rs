//! The watchdog's limits cap the latency budget. of-watchdog ends a request
//! at `exec_timeout` with a bare 504 (no body) and its server stops writing
//! at `write_timeout`; a `max_latency_ms` beyond them would let the watchdog
//! answer instead of the router. The budget is capped a little below the
//! smaller of the two, so the caller always gets the router's JSON 504.

use std::time::Duration;

use routing_core::api::ValidRequest;
use routing_core::env::Env;

/// The watchdog's per-request limit (a Go duration or whole seconds; 0: none).
pub(crate) const ENV_EXEC_TIMEOUT: &str = "exec_timeout";
/// The watchdog server's write limit.
pub(crate) const ENV_WRITE_TIMEOUT: &str = "write_timeout";

/// Time kept back from the limit to write the 504: a tenth of it, at most a second.
fn margin(limit: Duration) -> Duration {
    (limit / 10).min(Duration::from_secs(1))
}

/// The largest latency budget the watchdog leaves the router, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BudgetCap {
    limit_ms: Option<u64>,
}

impl BudgetCap {
    /// From `exec_timeout` and `write_timeout` as the watchdog reads them;
    /// neither set (no watchdog in front) or both 0: no cap.
    pub(crate) fn from_env(env: &Env) -> Result<Self, String> {
        let mut limit: Option<Duration> = None;
        for name in [ENV_EXEC_TIMEOUT, ENV_WRITE_TIMEOUT] {
            let Some(value) = env.get(name) else { continue };
            let duration =
                faas_runtime::parse_go_duration(value).map_err(|e| format!("{name}: {e}"))?;
            if !duration.is_zero() {
                limit = Some(limit.map_or(duration, |l| l.min(duration)));
            }
        }
        let limit_ms = limit.map(|l| {
            let capped = l.saturating_sub(margin(l));
            u64::try_from(capped.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        Ok(Self { limit_ms })
    }

    /// The cap in milliseconds, if any.
    #[cfg(test)]
    pub(crate) fn limit_ms(self) -> Option<u64> {
        self.limit_ms
    }

    /// Lowers the request's budget to the cap.
    pub(crate) fn apply(self, mut request: ValidRequest) -> ValidRequest {
        if let Some(limit) = self.limit_ms
            && request.max_latency_ms > limit
        {
            tracing::debug!(
                asked_ms = request.max_latency_ms,
                capped_ms = limit,
                "latency budget capped by the watchdog's exec_timeout/write_timeout"
            );
            request.max_latency_ms = limit;
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(pairs: &[(&str, &str)]) -> Option<u64> {
        BudgetCap::from_env(&Env::from_pairs(pairs.iter().copied()))
            .ok()
            .and_then(BudgetCap::limit_ms)
    }

    #[test]
    fn the_smaller_watchdog_limit_less_a_margin_caps_the_budget() {
        // stack.yml's llm-router: exec 55s, write 60s.
        assert_eq!(
            cap(&[("exec_timeout", "55s"), ("write_timeout", "60s")]),
            Some(54_000)
        );
        assert_eq!(cap(&[("write_timeout", "2s")]), Some(1_800));
        assert_eq!(cap(&[("exec_timeout", "30")]), Some(29_000));
        // 0 is no limit in the watchdog.
        assert_eq!(
            cap(&[("exec_timeout", "0"), ("write_timeout", "10s")]),
            Some(9_000)
        );
        assert_eq!(cap(&[]), None);
    }

    #[tokio::test]
    async fn a_budget_beyond_exec_timeout_ends_in_the_routers_json_504() {
        // A gateway that accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let gateway = format!("http://{}", silent.local_addr().unwrap());
        let env = Env::from_pairs([
            ("OPENFAAS_GATEWAY_URL", gateway.as_str()),
            ("exec_timeout", "1s"),
            ("CLASSIFY_TIMEOUT_MS", "50"),
        ]);
        let router = crate::router::Router::new(&env, &prometheus::Registry::new()).unwrap();
        let handler = crate::handler::RouterHandler::new(router);
        let body = r#"{"task":"generate","prompt":"hi","max_latency_ms":600000}"#;
        // Without the cap this would wait ten minutes; the guard only turns a
        // hang into a failure.
        let (status, answer) = tokio::time::timeout(
            Duration::from_secs(60),
            faas_runtime::testing::call(&handler, http::Method::POST, "/", body),
        )
        .await
        .unwrap();
        assert_eq!(status, http::StatusCode::GATEWAY_TIMEOUT, "{answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
        drop(silent);
    }

    #[test]
    fn an_unreadable_limit_fails_start_up() {
        let err = BudgetCap::from_env(&Env::from_pairs([("exec_timeout", "soon")]));
        assert!(err.is_err_and(|e| e.contains("exec_timeout")));
    }
}
