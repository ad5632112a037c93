//! Local development runner for the fleet: an OpenFaaS-compatible gateway that
//! runs each function of `stack.yml` as a local process, started on its first
//! request (scale from zero) and stopped after its idle time, imitating the CE
//! gateway and provider closely enough that functions behave as in production.
//!
//! # Running it
//! ```text
//! dev-gateway --stack stack.yml [--listen 127.0.0.1:8080] [--secrets-dir .dev/secrets]
//!             [--env-file scripts/dev.env] [--bin-dir target/debug] [--build] [--release]
//!             [--idle 30s] [--startup-timeout 30s] [--stop-timeout 10s]
//! ```
//! The binary of function `<name>` is `<bin-dir>/<name>`. Each process gets the
//! stack `environment` (merged with its `environment_file`s), the `--env-file`
//! overrides, and `upstream_url=http://127.0.0.1:<free port>`,
//! `SECRETS_DIR=<secrets-dir>/.mounts/<name>` (only its own secrets) and
//! `OPENFAAS_GATEWAY_URL=http://<listen addr>`, on top of the gateway's own
//! environment (minus `LISTEN_ADDR`, `PORT` and `http_upstream_url`, which would
//! move the listener). `healthcheck_interval` defaults to `0` so stopping is
//! quick; a function's environment may set it. Logs go to stderr (`RUST_LOG`
//! filters them); children inherit stdout and stderr.
//!
//! # Embedding
//! ```no_run
//! # async fn demo() -> Result<(), dev_gateway::Error> {
//! use dev_gateway::{DevGateway, FunctionSpec};
//! let gateway = DevGateway::new(vec![FunctionSpec::new("embed", "target/debug/embed")])
//!     .start()
//!     .await?;
//! println!("{}/function/embed", gateway.url());
//! gateway.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`stack_file`]: `stack.yml` parsing (envsubst, `environment_file`, lenient scalars).
//! - [`env_file`]: `KEY=VALUE` override files (`--env-file`).
//! - [`function_spec`]: [`FunctionSpec`], built from the stack or given directly.
//! - [`go_duration`]: Go duration syntax of the scaling labels.
//! - [`knative`]: Knative Services for a stack (the `knative-manifest` binary).
//! - [`forwarding`]: path stripping and header rules of `/function/<name>`.
//! - `gateway`: [`DevGateway`] configuration, [`RunningGateway`], routing, shutdown.
//! - `registry`: per-function process state, scale from/to zero, `/system/functions` data.
//! - `function_process`: spawning, health probing and stopping one process.
//! - `proxy`: streaming a request to a process and its response back.
//! - `system_api`: `/system/*` and `/healthz`.
//! - `secrets_mount`: per-function secrets folders.
//! - [`cli`]: the `dev-gateway` command line.
#![forbid(unsafe_code)]

pub mod cli;
pub mod env_file;
mod envsubst;
mod error;
pub mod forwarding;
mod function_process;
pub mod function_spec;
mod gateway;
pub mod go_duration;
pub mod knative;
mod proxy;
mod registry;
mod secrets_mount;
pub mod stack_file;
mod system_api;
mod yaml_values;

pub use error::Error;
pub use function_spec::{FunctionSpec, SpecOptions};
pub use gateway::{DevGateway, RunningGateway};
pub use registry::{FUNCTION_NAMESPACE, FunctionStatus};
pub use secrets_mount::MOUNTS_DIR;
pub use stack_file::{Stack, StackFunction};

/// Whether `name` matches the gateway's function-name pattern `[-a-zA-Z_0-9.]+`.
pub fn is_valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
