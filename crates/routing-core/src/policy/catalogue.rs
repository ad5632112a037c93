//! The model catalogue: what each model can do, what it costs, how good and
//! how fast it is expected to be, and which function carries out a call.

use serde::{Deserialize, Serialize};

use crate::chat::Locality;
use crate::task::{Difficulty, Task};

/// Which function carries out a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServingFunction {
    /// The embed function (in-cluster embeddings).
    Embed,
    /// provider-proxy, which calls the named provider.
    #[default]
    ProviderProxy,
}

/// Where a model's price came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceOrigin {
    /// The price catalogue (`config/prices.toml` or `PRICES_PATH`), which
    /// provider-proxy also meters with.
    Catalogue,
    /// The policy file itself, for a model the price catalogue does not list.
    Policy,
}

/// USD per one million tokens, as routing estimates cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPrice {
    /// Uncached prompt tokens.
    pub input: f64,
    /// Generated tokens.
    pub output: f64,
    /// When the price was read.
    pub as_of: String,
    /// Where the price was read.
    pub source: String,
    /// Which file the price came from.
    pub origin: PriceOrigin,
}

/// A quality score in `[0, 1]` for each difficulty tier.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    /// Simple prompts.
    pub simple: f32,
    /// Medium prompts.
    pub medium: f32,
    /// Hard prompts.
    pub hard: f32,
}

impl Tiers {
    /// The score for one tier.
    pub fn get(&self, difficulty: Difficulty) -> f32 {
        match difficulty {
            Difficulty::Simple => self.simple,
            Difficulty::Medium => self.medium,
            Difficulty::Hard => self.hard,
        }
    }

    /// The mean score of the tiers next to `difficulty` (where a misjudged
    /// difficulty most likely really lies).
    fn adjacent(&self, difficulty: Difficulty) -> f32 {
        match difficulty {
            Difficulty::Simple => self.medium,
            Difficulty::Medium => (self.simple + self.hard) / 2.0,
            Difficulty::Hard => self.medium,
        }
    }
}

/// How well a model serves each task and difficulty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Scores for any task without its own entry.
    pub default: Tiers,
    /// Scores for particular tasks.
    pub by_task: Vec<(Task, Tiers)>,
}

impl Quality {
    /// The tiers that apply to `task`.
    pub fn tiers(&self, task: Task) -> &Tiers {
        self.by_task
            .iter()
            .find(|(t, _)| *t == task)
            .map(|(_, tiers)| tiers)
            .unwrap_or(&self.default)
    }

    /// The expected quality for a request.
    ///
    /// `difficulty` is the classified tier (`unknown` stands in when there is
    /// none). With `confidence` (the classifier's, in `[0, 1]`) the score is
    /// the expectation over a tier that may be misjudged:
    /// `c · q(tier) + (1 − c) · q(adjacent tiers)`, so an unsure "simple"
    /// counts a weak model's worse medium score against it.
    pub fn expected(
        &self,
        task: Task,
        difficulty: Option<Difficulty>,
        unknown: Difficulty,
        confidence: Option<f32>,
    ) -> f32 {
        let tiers = self.tiers(task);
        let tier = difficulty.unwrap_or(unknown);
        match (difficulty, confidence) {
            (Some(_), Some(c)) if c.is_finite() => {
                let c = c.clamp(0.0, 1.0);
                c * tiers.get(tier) + (1.0 - c) * tiers.adjacent(tier)
            }
            _ => tiers.get(tier),
        }
    }
}

/// The static latency prior: time to first token plus generation speed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyPrior {
    /// Time to first token, in milliseconds (for embeddings: the whole call).
    pub ttft_ms: f64,
    /// Generated tokens per second.
    pub tokens_per_s: f64,
}

impl LatencyPrior {
    /// Expected milliseconds for a call generating `output_tokens`.
    pub fn expected_ms(&self, output_tokens: u32) -> f64 {
        self.ttft_ms + f64::from(output_tokens) * 1000.0 / self.tokens_per_s
    }
}

/// One model the policy may route to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelEntry {
    /// Catalogue id, e.g. `groq/llama-3.1-8b-instant`; what callers pin.
    pub id: String,
    /// Configured provider name, e.g. `groq`.
    pub provider: String,
    /// The provider's model id.
    pub model: String,
    /// Where the data goes.
    pub locality: Locality,
    /// Tasks the model serves.
    pub tasks: Vec<Task>,
    /// Context window in tokens (prompt and output together).
    pub context_window: u32,
    /// Price per million tokens.
    pub price: ModelPrice,
    /// Quality per task and difficulty.
    pub quality: Quality,
    /// Static latency prior, used until live measurements are enough.
    pub latency: LatencyPrior,
    /// Which function carries out the call.
    pub target: ServingFunction,
    /// Whether rules without a `models` list consider this model; when
    /// false it is reached only by pinning or by a rule listing it.
    pub auto_route: bool,
}

impl ModelEntry {
    /// Whether the model serves `task`.
    pub fn supports(&self, task: Task) -> bool {
        self.tasks.contains(&task)
    }

    /// Expected cost in USD of a call with these token counts.
    pub fn expected_cost_usd(&self, input_tokens: u32, output_tokens: u32) -> f64 {
        (f64::from(input_tokens) * self.price.input + f64::from(output_tokens) * self.price.output)
            / 1e6
    }

    /// The static latency prior for a call generating `output_tokens`.
    pub fn expected_latency_ms(&self, output_tokens: u32) -> f64 {
        self.latency.expected_ms(output_tokens)
    }
}
