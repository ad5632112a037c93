//! The one place HTTP clients are built: rustls with aws-lc-rs, TCP_NODELAY,
//! bounded connect time and a warm connection pool.

use std::time::Duration;

/// The `User-Agent` every outgoing call carries.
pub const USER_AGENT: &str = concat!("faas-llm-router/", env!("CARGO_PKG_VERSION"));

/// A builder with the fleet's defaults; callers may add per-use settings.
#[expect(
    clippy::disallowed_methods,
    reason = "the one place a reqwest client is built"
)]
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
}

/// `error` and each of its sources on one line, joined by `": "`. reqwest
/// hides the useful part of a failure (the refused connection, the DNS or
/// TLS error) in the source chain, which `Display` alone leaves out.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// A client with the fleet's defaults.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    client_builder().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn error_chain_joins_the_error_and_its_sources_in_order() {
        let error = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer("connection refused", None))),
            ))),
        );
        assert_eq!(
            error_chain(&error),
            "error sending request: client error (Connect): connection refused"
        );
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
