//! Prometheus metrics for provider calls: tokens, cost, outcomes, latency and
//! time to first token.
//!
//! Label values come only from closed sets: configured provider names, the
//! price catalogue's model names (any other model is `other`), tasks and
//! outcome labels. So a family holds at most |catalogue| × |tasks| ×
//! |outcomes| series, and every series a configured provider can produce
//! exists from start-up at zero, so that `rate()` and alerts see the first
//! event.

use std::time::Duration;

use faas_runtime::register_metric;
use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use routing_core::Task;
use routing_core::chat::Usage;
use routing_core::pricing::Catalogue;

/// The `model` label of a model the catalogue does not price by name.
pub(crate) const OTHER_MODEL: &str = "other";

/// Every outcome label a call can end with: `ok` and each error class.
pub(crate) const OUTCOMES: [&str; 12] = [
    "ok",
    "rate_limited",
    "quota_exhausted",
    "overloaded",
    "context_too_long",
    "auth",
    "bad_request",
    "upstream",
    "timeout",
    "transport",
    "decode",
    "not_configured",
];

/// Token kinds counted per call.
const TOKEN_KINDS: [&str; 4] = ["input", "output", "cached_input", "reasoning"];

/// Latency buckets shared by call duration and time to first token.
const LATENCY_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// Counters and histograms for calls to LLM providers.
#[derive(Debug, Clone)]
pub(crate) struct LlmMetrics {
    cost: CounterVec,
    tokens: IntCounterVec,
    calls: IntCounterVec,
    duration: HistogramVec,
    first_token: HistogramVec,
    unpriced: IntCounterVec,
    /// Models priced by name, per provider: the `model` label's closed set.
    labelled: std::collections::HashSet<(String, String)>,
}

/// Which call a measurement belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallLabels<'a> {
    /// Configured provider name.
    pub provider: &'a str,
    /// Model as the caller named it.
    pub model: &'a str,
    /// The task the call serves.
    pub task: Task,
}

impl LlmMetrics {
    /// Creates the families, registers them in `registry` and creates, at
    /// zero, every series that `providers` and the catalogue's models for
    /// them can produce.
    pub(crate) fn register<'a>(
        registry: &Registry,
        catalogue: &Catalogue,
        providers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, prometheus::Error> {
        let cost = register_metric(
            registry,
            CounterVec::new(
                Opts::new(
                    "llm_token_cost_usd_total",
                    "Cost of provider calls in USD, from provider-reported usage and the price catalogue.",
                ),
                &["provider", "model", "task"],
            ),
        )?;
        let tokens = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "llm_tokens_total",
                    "Tokens reported by providers, by kind (input, output, cached_input, reasoning).",
                ),
                &["provider", "model", "task", "kind"],
            ),
        )?;
        let calls = register_metric(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "llm_provider_calls_total",
                    "Provider calls by outcome (ok or an error class).",
                ),
                &["provider", "model", "task", "outcome"],
            ),
        )?;
        let duration = register_metric(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "llm_provider_call_duration_seconds",
                    "Wall time of provider calls (to the last token for streams).",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["provider", "model"],
            ),
        )?;
        let first_token = register_metric(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "llm_provider_time_to_first_token_seconds",
                    "Time from the start of a streamed provider call to its first text.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["provider", "model"],
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
        let mut metrics = Self {
            cost,
            tokens,
            calls,
            duration,
            first_token,
            unpriced,
            labelled: std::collections::HashSet::new(),
        };
        for provider in providers {
            let models: Vec<&str> = catalogue
                .iter()
                .filter(|price| price.provider == provider && price.model != "*")
                .map(|price| price.model.as_str())
                .collect();
            for model in &models {
                metrics
                    .labelled
                    .insert((provider.to_owned(), (*model).to_owned()));
            }
            metrics.unpriced.with_label_values(&[provider]);
            for model in models.into_iter().chain([OTHER_MODEL]) {
                metrics.zero(provider, model);
            }
        }
        Ok(metrics)
    }

    /// Creates every series of one provider and model at zero.
    fn zero(&self, provider: &str, model: &str) {
        self.duration.with_label_values(&[provider, model]);
        self.first_token.with_label_values(&[provider, model]);
        for task in Task::ALL {
            let task = task.as_str();
            self.cost.with_label_values(&[provider, model, task]);
            for kind in TOKEN_KINDS {
                self.tokens
                    .with_label_values(&[provider, model, task, kind]);
            }
            for outcome in OUTCOMES {
                self.calls
                    .with_label_values(&[provider, model, task, outcome]);
            }
        }
    }

    /// The `model` label for a call: the model when the catalogue prices it
    /// by name at this provider, else [`OTHER_MODEL`].
    fn model_label<'a>(&self, provider: &str, model: &'a str) -> &'a str {
        if self
            .labelled
            .contains(&(provider.to_owned(), model.to_owned()))
        {
            model
        } else {
            OTHER_MODEL
        }
    }

    /// Records a successful call.
    pub(crate) fn record_success(
        &self,
        call: CallLabels<'_>,
        elapsed: Duration,
        usage: &Usage,
        cost_usd: Option<f64>,
    ) {
        let (provider, task) = (call.provider, call.task.as_str());
        let model = self.model_label(provider, call.model);
        self.calls
            .with_label_values(&[provider, model, task, "ok"])
            .inc();
        self.duration
            .with_label_values(&[provider, model])
            .observe(elapsed.as_secs_f64());
        for (kind, count) in TOKEN_KINDS.into_iter().zip([
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_input_tokens,
            usage.reasoning_tokens,
        ]) {
            self.tokens
                .with_label_values(&[provider, model, task, kind])
                .inc_by(count);
        }
        match cost_usd {
            Some(cost) => self
                .cost
                .with_label_values(&[provider, model, task])
                .inc_by(cost),
            None => self.unpriced.with_label_values(&[provider]).inc(),
        }
    }

    /// Records a failed call under the error's low-cardinality label.
    pub(crate) fn record_failure(&self, call: CallLabels<'_>, elapsed: Duration, outcome: &str) {
        let model = self.model_label(call.provider, call.model);
        self.calls
            .with_label_values(&[call.provider, model, call.task.as_str(), outcome])
            .inc();
        self.duration
            .with_label_values(&[call.provider, model])
            .observe(elapsed.as_secs_f64());
    }

    /// Records when a streamed call's first text arrived.
    pub(crate) fn record_first_token(&self, call: CallLabels<'_>, elapsed: Duration) {
        let model = self.model_label(call.provider, call.model);
        self.first_token
            .with_label_values(&[call.provider, model])
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn exposition(registry: &Registry) -> String {
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        String::from_utf8(text).unwrap()
    }

    fn catalogue() -> Catalogue {
        Catalogue::parse(
            r#"
            [[model]]
            provider = "groq"
            model = "llama"
            input = 1.0
            output = 2.0
            as_of = "2026-11-23"
            source = "test"
            [[model]]
            provider = "ollama"
            model = "*"
            input = 0.0
            output = 0.0
            as_of = "2026-11-23"
            source = "test"
            "#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn a_call_shows_up_as_cost_tokens_and_outcome() {
        let registry = Registry::new();
        let metrics = LlmMetrics::register(&registry, &catalogue(), ["groq", "vertex"]).unwrap();
        let usage = Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        };
        let groq = CallLabels {
            provider: "groq",
            model: "llama",
            task: Task::Generate,
        };
        metrics.record_success(groq, Duration::from_millis(20), &usage, Some(0.25));
        metrics.record_first_token(groq, Duration::from_millis(3));
        let vertex = CallLabels {
            provider: "vertex",
            model: "gemini",
            task: Task::Reason,
        };
        metrics.record_failure(vertex, Duration::from_millis(5), "timeout");
        let text = exposition(&registry);
        assert!(text.contains(
            r#"llm_token_cost_usd_total{model="llama",provider="groq",task="generate"} 0.25"#
        ));
        assert!(text.contains(
            r#"llm_tokens_total{kind="output",model="llama",provider="groq",task="generate"} 5"#
        ));
        assert!(text.contains(
            r#"llm_provider_calls_total{model="other",outcome="timeout",provider="vertex",task="reason"} 1"#
        ));
        assert!(text.contains(
            r#"llm_provider_time_to_first_token_seconds_count{model="llama",provider="groq"} 1"#
        ));
        assert!(
            LlmMetrics::register(&registry, &catalogue(), ["groq"]).is_err(),
            "double registration must fail"
        );
    }

    #[test]
    fn every_series_of_a_configured_provider_exists_at_zero() {
        let registry = Registry::new();
        LlmMetrics::register(&registry, &catalogue(), ["groq", "ollama"]).unwrap();
        let text = exposition(&registry);
        for task in Task::ALL {
            let task = task.as_str();
            for outcome in OUTCOMES {
                let series = format!(
                    r#"llm_provider_calls_total{{model="llama",outcome="{outcome}",provider="groq",task="{task}"}} 0"#
                );
                assert!(text.contains(&series), "missing {series}");
            }
            assert!(text.contains(&format!(
                r#"llm_token_cost_usd_total{{model="other",provider="ollama",task="{task}"}} 0"#
            )));
        }
        assert!(text.contains(r#"llm_unpriced_calls_total{provider="groq"} 0"#));
        assert!(
            !text.contains(r#"model="*""#),
            "a wildcard price is not a model label"
        );
        assert!(
            !text.contains(r#"provider="vertex""#),
            "an unconfigured provider has no series"
        );
    }

    #[test]
    fn a_model_outside_the_catalogue_is_labelled_other() {
        let registry = Registry::new();
        let metrics = LlmMetrics::register(&registry, &catalogue(), ["groq"]).unwrap();
        let invented = CallLabels {
            provider: "groq",
            model: "invented-model-name",
            task: Task::Generate,
        };
        metrics.record_failure(invented, Duration::from_millis(1), "bad_request");
        let text = exposition(&registry);
        assert!(!text.contains("invented-model-name"));
        assert!(text.contains(
            r#"llm_provider_calls_total{model="other",outcome="bad_request",provider="groq",task="generate"} 1"#
        ));
    }
}
