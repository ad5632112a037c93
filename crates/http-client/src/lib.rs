//! The one place HTTP clients are built: rustls with aws-lc-rs, TCP_NODELAY,
//! bounded connect time and a warm connection pool.

use std::time::Duration;

/// The `User-Agent` every outgoing call carries.
pub const USER_AGENT: &str = concat!("faas-llm-router/", env!("CARGO_PKG_VERSION"));

/// A builder with the fleet's defaults; callers may add per-use settings.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
}

/// A client with the fleet's defaults.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    client_builder().build()
}
