//! Faithful local emulators of the LLM providers' wire protocols, for the
//! fleet's tests, the local dev runner and benchmarks.
//!
//! One [`Emulator`] is one HTTP server on its own listener, pretending to be
//! one provider ([`ProviderFlavor`]), with its own counters, like the real
//! services. Answers are deterministic functions of the prompt; latency,
//! faults and credentials are configurable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), provider_emulator::Error> {
//! use provider_emulator::{Emulator, EmulatorConfig, ProviderFlavor};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let emu = Emulator::start(listener, EmulatorConfig::instant(ProviderFlavor::Ollama)).await?;
//! println!("{}", emu.base_url());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`flavor`]: which provider, and its fixed facts.
//! - [`credentials`]: what requests authenticate with; throw-away keys.
//! - [`faults`], [`latency`], [`stats`], [`text`]: shared behaviour;
//!   [`sampling`]: log-probabilities and sample agreement, set from the prompt.
//! - `server`: the HTTP server and admin endpoints (`/_emulator/...`).
//! - `ollama`, `openai`, `anthropic`, `google`, `bedrock`: the protocols.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod anthropic;
mod bedrock;
pub mod clock;
pub mod config;
pub mod credentials;
mod error;
mod exchange;
pub mod faults;
pub mod flavor;
mod google;
pub mod latency;
mod ollama;
mod openai;
pub mod sampling;
mod server;
pub mod stats;
pub mod text;

use std::net::SocketAddr;

pub use config::EmulatorConfig;
pub use credentials::{
    AwsCredentials, ClientSecrets, Credentials, ServiceAccountPublic, TestServiceAccount,
};
pub use error::Error;
pub use exchange::EmuBody;
pub use faults::{Fault, FaultPlan, FaultRate};
pub use flavor::ProviderFlavor;
pub use latency::{Distribution, LatencyModel};
pub use server::ADMIN_PREFIX;
pub use stats::{RecordedRequest, StatsSnapshot};

/// A running emulator of one provider.
pub struct Emulator {
    server: server::Server,
}

impl Emulator {
    /// Starts serving on `listener` (bind it to `127.0.0.1:0` for a free port).
    pub async fn start(
        listener: tokio::net::TcpListener,
        config: EmulatorConfig,
    ) -> Result<Emulator, Error> {
        let server = server::Server::start(listener, config)?;
        tracing::debug!(
            flavor = %server.shared.flavor(),
            addr = %server.addr,
            "emulator listening"
        );
        Ok(Emulator { server })
    }

    /// The provider emulated.
    pub fn flavor(&self) -> ProviderFlavor {
        self.server.shared.flavor()
    }

    /// The socket address served.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// `http://127.0.0.1:PORT`, without any provider path.
    pub fn root_url(&self) -> String {
        self.server.shared.root_url.clone()
    }

    /// The base URL a client should be configured with: what the official
    /// SDK's base URL holds after the host, e.g.
    /// `http://127.0.0.1:PORT/openai/v1` for Groq, `http://127.0.0.1:PORT/v1`
    /// for OpenAI, and the bare root for Ollama, Anthropic, Google, Bedrock
    /// and DeepSeek.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.root_url(), self.flavor().base_path())
    }

    /// The Vertex OAuth token endpoint (`{root}/token`).
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.root_url())
    }

    /// A copy of the counters and the last request bodies.
    pub fn stats(&self) -> StatsSnapshot {
        self.server.shared.snapshot()
    }

    /// Resolves once at least `n` provider requests (admin calls excluded)
    /// have arrived since start or the last reset: lets a test wait for a
    /// request to be in flight without sleeping.
    pub async fn wait_for_requests(&self, n: u64) {
        self.server.shared.wait_for_requests(n).await;
    }

    /// Replaces the fault plan (rates and "next N" queue).
    pub fn set_faults(&self, plan: FaultPlan) {
        self.server.shared.set_faults(&plan);
    }

    /// The fault plan in force (queue entries already used are gone).
    pub fn faults(&self) -> FaultPlan {
        self.server.shared.faults()
    }

    /// Replaces the latency model.
    pub fn set_latency(&self, latency: LatencyModel) {
        self.server.shared.set_latency(latency);
    }

    /// Back to the state right after start: counters and recorded bodies
    /// cleared, the configured fault plan and latency restored, random
    /// sequences reseeded. Access tokens already issued stay valid.
    pub fn reset(&self) {
        self.server.shared.reset();
    }

    /// Stops accepting, ends in-flight requests (hanging ones included) and
    /// waits until every connection is closed.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("flavor", &self.flavor())
            .field("addr", &self.local_addr())
            .finish()
    }
}
