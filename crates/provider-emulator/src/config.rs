//! How one emulator is set up.

use crate::credentials::Credentials;
use crate::faults::FaultPlan;
use crate::flavor::ProviderFlavor;
use crate::latency::LatencyModel;
use crate::stats::DEFAULT_RECORD_LIMIT;

/// Default embedding size (all-minilm's).
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 384;

/// Everything an emulator needs to start.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// The provider to emulate.
    pub flavor: ProviderFlavor,
    /// What requests must authenticate with; [`Credentials::None`] accepts anything.
    pub credentials: Credentials,
    /// Simulated time to first token and output speed.
    pub latency: LatencyModel,
    /// Faults injected from the start.
    pub faults: FaultPlan,
    /// Seed for latency draws, fault rates, ids and padding.
    pub seed: u64,
    /// Models listed (`/api/tags`, `/v1/models`) and served.
    pub models: Vec<String>,
    /// Whether models not in `models` are served too.
    pub accept_unlisted_models: bool,
    /// Embedding size when the request does not ask for one.
    pub embedding_dimensions: usize,
    /// How many request bodies the stats keep.
    pub record_limit: usize,
}

impl EmulatorConfig {
    /// The provider's defaults: its published latency, its model list, no
    /// faults, no credentials (set them with [`Self::with_credentials`]).
    pub fn new(flavor: ProviderFlavor) -> Self {
        Self {
            flavor,
            credentials: Credentials::None,
            latency: flavor.default_latency(),
            faults: FaultPlan::none(),
            seed: 0,
            models: flavor.default_models(),
            accept_unlisted_models: flavor.accepts_unlisted_models(),
            embedding_dimensions: DEFAULT_EMBEDDING_DIMENSIONS,
            record_limit: DEFAULT_RECORD_LIMIT,
        }
    }

    /// Like [`Self::new`] but answering without delay, for tests.
    pub fn instant(flavor: ProviderFlavor) -> Self {
        Self::new(flavor).with_latency(LatencyModel::zero())
    }

    /// Sets the credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }

    /// Sets the latency model.
    pub fn with_latency(mut self, latency: LatencyModel) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the initial fault plan.
    pub fn with_faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the model list.
    pub fn with_models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }
}
