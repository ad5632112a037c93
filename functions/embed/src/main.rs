//! embed: in-cluster embeddings.
#![forbid(unsafe_code)]

mod embedder;
mod handler;

use std::process::ExitCode;

use prometheus::Registry;
use routing_core::env::Env;

#[tokio::main]
async fn main() -> ExitCode {
    let registry = Registry::new();
    let metrics = registry.clone();
    faas_runtime::run("embed", registry, |_config| async move {
        let embedder = embedder::Embedder::new(&Env::from_process(), &metrics)?;
        Ok::<_, String>(handler::EmbedHandler::new(embedder))
    })
    .await
}
