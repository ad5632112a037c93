//! embed: in-cluster embeddings, computed in-process by all-MiniLM-L6-v2 (`EMBED_BACKEND=local`,
//! the default) or by the in-cluster Ollama (`EMBED_BACKEND=ollama`).
#![forbid(unsafe_code)]

mod config;
mod embedder;
mod error;
mod handler;
#[cfg(test)]
mod handler_tests;
mod local;
mod ollama;
mod openai;

use std::process::ExitCode;

use prometheus::Registry;
use routing_core::env::Env;

#[tokio::main]
async fn main() -> ExitCode {
    let registry = Registry::new();
    let metrics = registry.clone();
    // The runtime listens (and answers /_/health) while this loads the model.
    faas_runtime::run_internal("embed", registry, |_config| async move {
        let env = Env::from_process();
        let config = config::EmbedConfig::from_env(&env)?;
        let embedder = embedder::Embedder::new(config, &env, &metrics).await?;
        Ok::<_, String>(handler::EmbedHandler::new(embedder))
    })
    .await
}
