//! Learning from feedback: a contextual bandit over the catalogue's models.
//!
//! - **Arms**: one per catalogue model (by catalogue id), so that two models
//!   of one tier that differ in practice are told apart, and a reload that
//!   reorders the catalogue keeps what was learned.
//! - **Context** ([`LearningContext`]): the task, the difficulty tier (cut
//!   from the classifier's needs-strong score at the calibrated operating
//!   point; `unknown` when the caller declared the task) and the prompt's
//!   length bucket (log₄ of its tokens). Each (arm, context) cell holds a
//!   Beta–Bernoulli posterior ([`ArmStats`]): a tabular contextual Thompson
//!   sampler, a hash lookup per model on the decision path.
//! - **Prior**: the policy's static quality for the model, task and tier,
//!   worth [`LearningConfig::prior_weight`] observations. The predicted
//!   quality is the posterior mean `(k·q + Σr) / (k + n)`, a blend by
//!   observation count; below [`LearningConfig::min_observations`] the static
//!   prior is used as is (blended by the classifier's confidence, as without
//!   learning), so a cold start routes exactly as without learning. The
//!   posterior's `q` is the cell's own prior, the tier's static quality not
//!   blended by confidence: the rewards were observed over the whole cell,
//!   not per confidence, so every request of a learned cell gets one
//!   prediction (blending each request's confidence back in only added
//!   noise to the learned ranking).
//! - **Learning** only from the outcome of the model that served (explicit
//!   feedback) or that failed (an implicit signal: a fallback or an
//!   escalation): never from a model that was not called.
//! - **Exploration** ([`explore`]): with probability
//!   [`LearningConfig::explore_share`], the primary is replaced by a
//!   Thompson draw among the decision's other candidates — each of which
//!   already passed every hard constraint (privacy, task, context, breaker,
//!   cost caps, budgets, quality floor, latency) — that costs at most
//!   [`LearningConfig::explore_max_cost_usd`]. A pinned, best-effort,
//!   budget-gated or frozen tenant's request never explores.
//! - State lives behind [`ArmStore`] (batched, asynchronous), so a store
//!   shared by every replica can stand in for [`MemoryArms`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::Policy;
use super::calibration::{StoreError, StoreFuture};
use super::select::{Decision, SelectionInput};
use crate::api::QualitySource;
use crate::chat::Locality;
use crate::task::{Difficulty, Task};

/// The policy file's `[learning]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// Learn from feedback and explore; `false`: static priors only, no
    /// exploration (feedback is still accepted and counted).
    pub enabled: bool,
    /// Share of eligible requests that explore, in `[0, 0.5]`.
    pub explore_share: f64,
    /// Most an explored candidate may be expected to cost, in USD.
    pub explore_max_cost_usd: f64,
    /// What the static quality prior is worth, in observations.
    pub prior_weight: f64,
    /// Observations of a model in a context before its learned quality
    /// replaces the static prior.
    pub min_observations: u64,
    /// Tenants whose feedback is not learned from and whose requests never
    /// explore (they still route with what others taught).
    pub frozen_tenants: Vec<String>,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            explore_share: 0.05,
            explore_max_cost_usd: 0.01,
            prior_weight: 20.0,
            min_observations: 10,
            frozen_tenants: Vec::new(),
        }
    }
}

impl LearningConfig {
    /// Whether `tenant`'s feedback is learned from and its requests may
    /// explore.
    pub fn learns_from(&self, tenant: Option<&str>) -> bool {
        self.enabled && tenant.is_none_or(|t| !self.frozen_tenants.iter().any(|f| f == t))
    }
}

/// What the bandit conditions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LearningContext {
    /// The task served.
    pub task: Task,
    /// The difficulty tier routed for (`None`: declared task, unknown).
    pub tier: Option<Difficulty>,
    /// log₄ bucket of the prompt's estimated tokens: 0 below 32, 1 below
    /// 128, 2 below 512, 3 below 2048, 4 from there.
    pub length: u8,
}

impl LearningContext {
    /// The context of a selection input.
    pub fn for_input(input: &SelectionInput) -> Self {
        Self {
            task: input.task,
            tier: input.difficulty,
            length: length_bucket(input.input_tokens),
        }
    }
}

fn length_bucket(tokens: u32) -> u8 {
    let mut bucket = 0;
    let mut t = tokens / 32;
    while t > 0 && bucket < 4 {
        t /= 4;
        bucket += 1;
    }
    bucket
}

impl fmt::Display for LearningContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}|L{}",
            self.task,
            self.tier.map_or("unknown", Difficulty::as_str),
            self.length
        )
    }
}

/// One arm in one context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArmKey {
    /// Catalogue id.
    pub model: String,
    /// The context.
    pub context: LearningContext,
}

impl fmt::Display for ArmKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}|{}", self.model, self.context)
    }
}

/// What one arm has observed in one context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmStats {
    /// Rewards observed.
    pub n: u64,
    /// Their sum (each in `[0, 1]`).
    pub reward_sum: f64,
}

/// Learned state, per arm and context. Calls are batched and asynchronous
/// so that a store shared across replicas (one round trip per call) fits
/// the same interface as [`MemoryArms`].
pub trait ArmStore: Send + Sync {
    /// The stats of each key, in order (zero for an arm never observed).
    fn get<'a>(&'a self, keys: &'a [ArmKey]) -> StoreFuture<'a, Vec<ArmStats>>;

    /// Adds one reward in `[0, 1]` to an arm; its stats after.
    fn add<'a>(&'a self, key: &'a ArmKey, reward: f64) -> StoreFuture<'a, ArmStats>;
}

/// [`ArmStore`] in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryArms {
    arms: Mutex<HashMap<ArmKey, ArmStats>>,
}

impl ArmStore for MemoryArms {
    fn get<'a>(&'a self, keys: &'a [ArmKey]) -> StoreFuture<'a, Vec<ArmStats>> {
        let arms = self.arms.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = keys
            .iter()
            .map(|k| arms.get(k).copied().unwrap_or_default())
            .collect();
        Box::pin(std::future::ready(Ok(stats)))
    }

    fn add<'a>(&'a self, key: &'a ArmKey, reward: f64) -> StoreFuture<'a, ArmStats> {
        let mut arms = self.arms.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = arms.entry(key.clone()).or_default();
        stats.n = stats.n.saturating_add(1);
        stats.reward_sum += reward.clamp(0.0, 1.0);
        Box::pin(std::future::ready(Ok(*stats)))
    }
}

/// A model's predicted quality for a request, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Predicted quality in `[0, 1]`.
    pub quality: f32,
    /// The static prior, or learned from feedback.
    pub source: QualitySource,
    /// Observations of the model in this context.
    pub observations: u64,
}

/// The learned stats of every model in one request's context, taken before
/// selection (one store call), and how to blend them with the prior.
#[derive(Debug, Clone)]
pub struct Learned {
    stats: HashMap<String, ArmStats>,
    /// The prior of each model's posterior in this context: its static
    /// quality for the context's task and tier (no confidence blend).
    cell_priors: HashMap<String, f32>,
    prior_weight: f64,
    min_observations: u64,
}

impl Default for Learned {
    /// Nothing learned: every prediction is the static prior.
    fn default() -> Self {
        Self::new(&LearningConfig::default())
    }
}

impl Learned {
    /// Nothing learned yet, blended as `config` says.
    pub fn new(config: &LearningConfig) -> Self {
        Self {
            stats: HashMap::new(),
            cell_priors: HashMap::new(),
            prior_weight: config.prior_weight,
            min_observations: config.min_observations,
        }
    }

    /// Sets what `model` observed.
    pub fn insert(&mut self, model: impl Into<String>, stats: ArmStats) {
        self.stats.insert(model.into(), stats);
    }

    /// Sets the prior of `model`'s posterior in this context (its static
    /// quality for the context's task and tier); without one, the prior
    /// passed to [`Learned::predict`] is used.
    pub fn insert_cell_prior(&mut self, model: impl Into<String>, prior: f32) {
        self.cell_priors.insert(model.into(), prior);
    }

    /// What `model` observed in this context.
    pub fn stats(&self, model: &str) -> ArmStats {
        self.stats.get(model).copied().unwrap_or_default()
    }

    /// The posterior's mean and standard deviation for `model`: its cell
    /// prior when set, else the request's static `prior`.
    fn posterior(&self, model: &str, prior: f32) -> (f64, f64) {
        let s = self.stats(model);
        let prior = self.cell_priors.get(model).copied().unwrap_or(prior);
        let q = f64::from(prior).clamp(0.0, 1.0);
        let k = self.prior_weight;
        let alpha = k * q + s.reward_sum;
        let beta = k * (1.0 - q) + (s.n as f64 - s.reward_sum).max(0.0);
        let total = alpha + beta;
        if total <= 0.0 {
            return (q, 0.5);
        }
        let mean = alpha / total;
        let var = alpha * beta / (total * total * (total + 1.0));
        (mean, var.sqrt())
    }

    /// The predicted quality of `model` whose static quality for this
    /// request is `prior`: the prior until `min_observations`, then the
    /// posterior mean (from the cell prior when one was set).
    pub fn predict(&self, model: &str, prior: f32) -> Prediction {
        let n = self.stats(model).n;
        if n == 0 || n < self.min_observations {
            return Prediction {
                quality: prior,
                source: QualitySource::Prior,
                observations: n,
            };
        }
        let (mean, _) = self.posterior(model, prior);
        Prediction {
            quality: mean as f32,
            source: QualitySource::Learned,
            observations: n,
        }
    }
}

/// The bandit: reads and updates learned state, decides exploration.
pub struct Learner {
    store: Arc<dyn ArmStore>,
    seed: u64,
}

impl fmt::Debug for Learner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Learner").field("seed", &self.seed).finish()
    }
}

impl Learner {
    /// A learner over `store`; `seed` makes exploration reproducible.
    pub fn new(store: Arc<dyn ArmStore>, seed: u64) -> Self {
        Self { store, seed }
    }

    /// A learner with its state in memory.
    pub fn in_memory(seed: u64) -> Self {
        Self::new(Arc::new(MemoryArms::default()), seed)
    }

    /// What every catalogue model serving the context's task learned in it
    /// (one store call), with each observed model's cell prior.
    pub async fn view(
        &self,
        policy: &Policy,
        context: &LearningContext,
    ) -> Result<Learned, StoreError> {
        let config = policy.learning();
        let mut learned = Learned::new(config);
        if !config.enabled {
            return Ok(learned);
        }
        let keys: Vec<ArmKey> = policy
            .models()
            .filter(|m| m.supports(context.task))
            .map(|m| ArmKey {
                model: m.id.clone(),
                context: *context,
            })
            .collect();
        let stats = self.store.get(&keys).await?;
        let unknown = policy.selection_config().unknown_difficulty;
        for (key, s) in keys.into_iter().zip(stats) {
            if s.n > 0 {
                if let Some(model) = policy.model(&key.model) {
                    let prior = model
                        .quality
                        .expected(context.task, context.tier, unknown, None);
                    learned.insert_cell_prior(key.model.clone(), prior);
                }
                learned.insert(key.model, s);
            }
        }
        Ok(learned)
    }

    /// Learns one reward for an arm, unless learning is off or the tenant
    /// frozen (then `None`).
    pub async fn learn(
        &self,
        config: &LearningConfig,
        tenant: Option<&str>,
        key: &ArmKey,
        reward: f64,
    ) -> Result<Option<ArmStats>, StoreError> {
        if !config.learns_from(tenant) || !reward.is_finite() {
            return Ok(None);
        }
        self.store.add(key, reward.clamp(0.0, 1.0)).await.map(Some)
    }

    /// What an arm observed.
    pub async fn stats(&self, key: &ArmKey) -> Result<ArmStats, StoreError> {
        let stats = self.store.get(std::slice::from_ref(key)).await?;
        Ok(stats.into_iter().next().unwrap_or_default())
    }

    /// Explores for call `call_id` as [`explore`] says, drawing from this
    /// learner's seed and the call id.
    pub fn explore(
        &self,
        config: &LearningConfig,
        input: &SelectionInput,
        decision: &mut Decision,
        learned: &Learned,
        call_id: &str,
    ) -> bool {
        let mut rng = Rng::new(self.seed ^ fnv1a(call_id.as_bytes()));
        explore(config, input, decision, learned, &mut rng)
    }
}

/// A small seeded generator (SplitMix64): exploration must be reproducible
/// in tests and needs no cryptographic quality.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// With probability `config.explore_share`, replaces the decision's primary
/// by a Thompson draw among its fallbacks that cost at most
/// `config.explore_max_cost_usd` (the former primary becomes the first
/// fallback). Every fallback passed the same hard constraints as the
/// primary; privacy and the caller's quality floor are checked again here
/// all the same. Returns whether the call explores.
///
/// Never explores a pinned model, a best-effort route (nothing met the
/// latency budget), a tenant near or over its budget, a frozen tenant, or
/// with learning disabled.
pub fn explore(
    config: &LearningConfig,
    input: &SelectionInput,
    decision: &mut Decision,
    learned: &Learned,
    rng: &mut Rng,
) -> bool {
    if !config.learns_from(input.tenant.as_deref())
        || config.explore_share <= 0.0
        || input.pinned.is_some()
        || decision.latency_relaxed
        || decision.budget.is_some()
        || decision.fallbacks.is_empty()
    {
        return false;
    }
    if rng.uniform() >= config.explore_share {
        return false;
    }
    let floor = input.quality_floor.filter(|f| f.is_finite()).unwrap_or(0.0);
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in decision.fallbacks.iter().enumerate() {
        let allowed = (!input.private || c.model.locality == Locality::InCluster)
            && c.quality >= floor
            && c.expected_cost_usd <= config.explore_max_cost_usd
            && input
                .max_cost_usd
                .is_none_or(|cap| c.expected_cost_usd <= cap);
        if !allowed {
            continue;
        }
        let (mean, sd) = learned.posterior(&c.model.id, c.prior_quality);
        let draw = mean + sd * rng.normal();
        if best.is_none_or(|(_, b)| draw > b) {
            best = Some((i, draw));
        }
    }
    let Some((i, _)) = best else {
        return false;
    };
    let chosen = decision.fallbacks.remove(i);
    let former = std::mem::replace(&mut decision.primary, chosen);
    decision.fallbacks.insert(0, former);
    if decision
        .escalation
        .as_ref()
        .is_some_and(|e| e.to.model.id == decision.primary.model.id)
    {
        decision.escalation = None;
    }
    decision.reason.push_str(&format!(
        "; explored {} instead of {} (share {:.1}%)",
        decision.primary.model.id,
        decision.fallbacks[0].model.id,
        config.explore_share * 100.0
    ));
    decision.explored = true;
    true
}
