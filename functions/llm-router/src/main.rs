//! llm-router: picks the cheapest provider and model that meets each
//! request's task, latency budget and privacy, and calls it through the fleet.
#![forbid(unsafe_code)]

mod error;
mod exec_budget;
mod handler;
#[cfg(test)]
mod handler_tests;
mod openai;
mod openai_error;
mod openai_request;
mod resilience;
mod router;
mod state;

use std::process::ExitCode;

use prometheus::Registry;
use routing_core::env::Env;

#[tokio::main]
async fn main() -> ExitCode {
    let registry = Registry::new();
    let metrics = registry.clone();
    faas_runtime::run("llm-router", registry, |_config| async move {
        let router = router::Router::new(&Env::from_process(), &metrics)?;
        router.load_shared_state().await;
        Ok::<_, String>(handler::RouterHandler::new(router))
    })
    .await
}
