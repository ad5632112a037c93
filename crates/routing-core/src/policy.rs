//! Route selection. The seed rule:
//! - `private`, or `task = embed` → in-cluster (Ollama; embeddings through the
//!   embed function);
//! - `task` in {classify, generate} with `max_latency_ms < 300` → Groq
//!   `llama-3.1-8b-instant`;
//! - otherwise → Vertex `gemini-2.5-flash`.

use serde::Serialize;

use crate::api::RouteExplanation;
use crate::env::Env;
use crate::providers::Locality;
use crate::task::Task;

/// `LOCAL_CHAT_MODEL`: the Ollama model served to private requests.
pub const ENV_LOCAL_CHAT_MODEL: &str = "LOCAL_CHAT_MODEL";
/// The default in-cluster chat model.
pub const DEFAULT_LOCAL_CHAT_MODEL: &str = "llama3.2";
/// Budgets below this many milliseconds go to the fast provider.
pub const FAST_BUDGET_MS: u64 = 300;

/// Which function carries out a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The embed function (in-cluster embeddings).
    Embed,
    /// provider-proxy, which calls the named provider.
    ProviderProxy,
}

/// The chosen route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Function that carries it out.
    pub target: Target,
    /// Provider name (for `Embed`, the embed function reports its backend).
    pub provider: String,
    /// Model id at that provider.
    pub model: String,
    /// Where the data goes.
    pub locality: Locality,
    /// Which rule chose it and why.
    pub explanation: RouteExplanation,
}

/// The models the seed rule picks from.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedPolicy {
    /// The in-cluster chat model (Ollama).
    pub local_chat_model: String,
}

impl SeedPolicy {
    /// Reads `LOCAL_CHAT_MODEL`.
    pub fn from_env(env: &Env) -> Self {
        Self {
            local_chat_model: env
                .get_or(ENV_LOCAL_CHAT_MODEL, DEFAULT_LOCAL_CHAT_MODEL)
                .to_owned(),
        }
    }

    /// Picks the route for a task, budget and privacy flag.
    pub fn route(&self, task: Task, max_latency_ms: u64, private: bool) -> Route {
        let explain = |rule: &str, reason: String| RouteExplanation {
            rule: rule.to_owned(),
            reason,
        };
        if task == Task::Embed {
            return Route {
                target: Target::Embed,
                provider: "embed".to_owned(),
                model: String::new(),
                locality: Locality::InCluster,
                explanation: explain(
                    "embed_local",
                    "embeddings are computed in-cluster by the embed function".to_owned(),
                ),
            };
        }
        if private {
            return Route {
                target: Target::ProviderProxy,
                provider: "ollama".to_owned(),
                model: self.local_chat_model.clone(),
                locality: Locality::InCluster,
                explanation: explain(
                    "private_local",
                    "private requests are served only by in-cluster models".to_owned(),
                ),
            };
        }
        if matches!(task, Task::Classify | Task::Generate) && max_latency_ms < FAST_BUDGET_MS {
            return Route {
                target: Target::ProviderProxy,
                provider: "groq".to_owned(),
                model: "llama-3.1-8b-instant".to_owned(),
                locality: Locality::External,
                explanation: explain(
                    "fast_budget",
                    format!(
                        "{task} with a {max_latency_ms} ms budget (< {FAST_BUDGET_MS} ms) goes to the fastest provider"
                    ),
                ),
            };
        }
        Route {
            target: Target::ProviderProxy,
            provider: "vertex".to_owned(),
            model: "gemini-2.5-flash".to_owned(),
            locality: Locality::External,
            explanation: explain(
                "default_strong",
                format!(
                    "{task} with a {max_latency_ms} ms budget goes to the strong default model"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> SeedPolicy {
        SeedPolicy::from_env(&Env::default())
    }

    #[test]
    fn the_seed_table() {
        let cases = [
            (Task::Generate, 200, false, "groq", "llama-3.1-8b-instant"),
            (Task::Classify, 299, false, "groq", "llama-3.1-8b-instant"),
            (Task::Generate, 300, false, "vertex", "gemini-2.5-flash"),
            (Task::Reason, 100, false, "vertex", "gemini-2.5-flash"),
            (
                Task::Generate,
                200,
                true,
                "ollama",
                DEFAULT_LOCAL_CHAT_MODEL,
            ),
            (Task::Reason, 5000, true, "ollama", DEFAULT_LOCAL_CHAT_MODEL),
            (Task::Embed, 100, false, "embed", ""),
            (Task::Embed, 100, true, "embed", ""),
        ];
        for (task, budget, private, provider, model) in cases {
            let route = policy().route(task, budget, private);
            assert_eq!(
                (route.provider.as_str(), route.model.as_str()),
                (provider, model),
                "{task} {budget} {private}"
            );
        }
    }

    #[test]
    fn local_model_is_configurable() {
        let p = SeedPolicy::from_env(&Env::from_pairs([(ENV_LOCAL_CHAT_MODEL, "qwen2.5:7b")]));
        assert_eq!(p.route(Task::Generate, 10, true).model, "qwen2.5:7b");
    }

    fn any_task() -> impl Strategy<Value = Task> {
        prop::sample::select(Task::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn private_requests_never_select_an_external_model(task in any_task(), budget in 1u64..600_000) {
            let route = policy().route(task, budget, true);
            prop_assert_eq!(route.locality, Locality::InCluster);
        }

        #[test]
        fn embeddings_always_stay_in_cluster(budget in 1u64..600_000, private in any::<bool>()) {
            let route = policy().route(Task::Embed, budget, private);
            prop_assert_eq!(route.target, Target::Embed);
            prop_assert_eq!(route.locality, Locality::InCluster);
        }
    }
}
