//! Prometheus metrics for provider calls: tokens, cost, outcomes, latency.
//! Label values come only from closed sets (configured provider names, tasks,
//! outcome labels).

use std::time::Duration;

use faas_runtime::register_metric;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use routing_core::Task;
use routing_core::chat::Usage;

/// Counters and histograms for calls to LLM providers.
#[derive(Debug, Clone)]
pub(crate) struct LlmMetrics {
    cost: CounterVec,
    tokens: IntCounterVec,
    calls: IntCounterVec,
    duration: HistogramVec,
    unpriced: IntCounterVec,
}

impl LlmMetrics {
    /// Creates the families and registers them in `registry`.
    pub(crate) fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let cost = register_metric(
            registry,
            CounterVec::new(
                Opts::new(
                    "llm_token_cost_usd_total",
                    "Cost of provider calls in USD, from provider-reported usage and the price catalogue.",
                ),
                &["provider", "task"],
            ),
        )?;
        let tokens = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "llm_tokens_total",
                    "Tokens reported by providers, by kind (input, output, cached_input, reasoning).",
                ),
                &["provider", "task", "kind"],
            ),
        )?;
        let calls = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "llm_provider_calls_total",
                    "Provider calls by outcome (ok or an error class).",
                ),
                &["provider", "task", "outcome"],
            ),
        )?;
        let duration = register_metric(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "llm_provider_call_duration_seconds",
                    "Wall time of provider calls.",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["provider"],
            ),
        )?;
        let unpriced = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "llm_unpriced_calls_total",
                    "Successful calls whose model has no entry in the price catalogue.",
                ),
                &["provider"],
            ),
        )?;
        Ok(Self {
            cost,
            tokens,
            calls,
            duration,
            unpriced,
        })
    }

    /// Records a successful call.
    pub(crate) fn record_success(
        &self,
        provider: &str,
        task: Task,
        elapsed: Duration,
        usage: &Usage,
        cost_usd: Option<f64>,
    ) {
        let task = task.as_str();
        self.calls.with_label_values(&[provider, task, "ok"]).inc();
        self.duration
            .with_label_values(&[provider])
            .observe(elapsed.as_secs_f64());
        for (kind, count) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cached_input", usage.cached_input_tokens),
            ("reasoning", usage.reasoning_tokens),
        ] {
            self.tokens
                .with_label_values(&[provider, task, kind])
                .inc_by(count);
        }
        match cost_usd {
            Some(cost) => self.cost.with_label_values(&[provider, task]).inc_by(cost),
            None => self.unpriced.with_label_values(&[provider]).inc(),
        }
    }

    /// Records a failed call under the error's low-cardinality label.
    pub(crate) fn record_failure(
        &self,
        provider: &str,
        task: Task,
        elapsed: Duration,
        outcome: &str,
    ) {
        self.calls
            .with_label_values(&[provider, task.as_str(), outcome])
            .inc();
        self.duration
            .with_label_values(&[provider])
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn a_call_shows_up_as_cost_tokens_and_outcome() {
        let registry = Registry::new();
        let metrics = LlmMetrics::register(&registry).unwrap();
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        };
        metrics.record_success(
            "groq",
            Task::Generate,
            Duration::from_millis(20),
            &usage,
            Some(0.25),
        );
        metrics.record_failure("vertex", Task::Reason, Duration::from_millis(5), "timeout");
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains(r#"llm_token_cost_usd_total{provider="groq",task="generate"} 0.25"#));
        assert!(
            text.contains(r#"llm_tokens_total{kind="output",provider="groq",task="generate"} 5"#)
        );
        assert!(text.contains(
            r#"llm_provider_calls_total{outcome="timeout",provider="vertex",task="reason"} 1"#
        ));
        assert!(
            LlmMetrics::register(&registry).is_err(),
            "double registration must fail"
        );
    }
}
