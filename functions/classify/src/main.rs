//! classify: cheap task and difficulty classification.
#![forbid(unsafe_code)]

mod handler;
#[cfg(test)]
mod handler_tests;

use std::process::ExitCode;

use prometheus::Registry;

#[tokio::main]
async fn main() -> ExitCode {
    let registry = Registry::new();
    let metrics = registry.clone();
    faas_runtime::run_internal("classify", registry, |_config| async move {
        handler::ClassifyHandler::new(&metrics)
    })
    .await
}
