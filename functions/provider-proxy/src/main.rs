//! provider-proxy: the only function that holds provider credentials and
//! calls LLM providers.
#![forbid(unsafe_code)]

mod handler;
#[cfg(test)]
mod handler_tests;
mod metrics;
mod pools;
mod proxy;
mod sanitise;

use std::process::ExitCode;

use prometheus::Registry;
use routing_core::env::Env;

#[tokio::main]
async fn main() -> ExitCode {
    let registry = Registry::new();
    let metrics = registry.clone();
    faas_runtime::run_internal("provider-proxy", registry, |_config| async move {
        let proxy = proxy::Proxy::new(&Env::from_process(), &metrics)?;
        Ok::<_, String>(handler::ProxyHandler::new(proxy))
    })
    .await
}
