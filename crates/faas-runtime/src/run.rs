//! The one-call `main` of a function binary.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use prometheus::Registry;

use crate::config::RuntimeConfig;
use crate::handler::Handler;
use crate::server::{bind, serve};
use crate::signal::shutdown_signal;
use crate::telemetry::init_tracing;

/// Runs a function process: initialises tracing, reads [`RuntimeConfig`] from the environment,
/// binds the listener, then [`serve`]s until SIGTERM or SIGINT, building the handler with
/// `init(config)` meanwhile. Returns the exit status for `main`: success after a graceful
/// shutdown, failure (logged) when the configuration is invalid, the address cannot be bound or
/// `init` fails.
///
/// ```no_run
/// use faas_runtime::{RequestContext, Handler, Body, full};
/// use http::{Request, Response};
///
/// struct Echo;
/// impl Handler for Echo {
///     async fn handle(&self, req: Request<bytes::Bytes>, _cx: RequestContext) -> Response<Body> {
///         Response::new(full(req.into_body()))
///     }
/// }
///
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     faas_runtime::run("echo", prometheus::Registry::new(), |_config| async {
///         Ok::<_, std::convert::Infallible>(Echo)
///     })
///     .await
/// }
/// ```
pub async fn run<H, E, F, I>(function_name: &str, registry: Registry, init: I) -> ExitCode
where
    I: FnOnce(RuntimeConfig) -> F,
    F: Future<Output = Result<H, E>> + Send,
    H: Handler,
    E: Display,
{
    run_with(function_name, Access::Public, registry, init).await
}

/// As [`run`], for a function only the fleet may call: every function
/// request must carry the fleet's internal token (see
/// [`RuntimeConfig::internal`]); without the secret the process does not
/// start.
pub async fn run_internal<H, E, F, I>(function_name: &str, registry: Registry, init: I) -> ExitCode
where
    I: FnOnce(RuntimeConfig) -> F,
    F: Future<Output = Result<H, E>> + Send,
    H: Handler,
    E: Display,
{
    run_with(function_name, Access::Internal, registry, init).await
}

/// Who may call a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone that reaches it (the function authenticates its callers itself).
    Public,
    /// Only other functions of the fleet.
    Internal,
}

async fn run_with<H, E, F, I>(
    function_name: &str,
    access: Access,
    registry: Registry,
    init: I,
) -> ExitCode
where
    I: FnOnce(RuntimeConfig) -> F,
    F: Future<Output = Result<H, E>> + Send,
    H: Handler,
    E: Display,
{
    init_tracing();
    let config = RuntimeConfig::from_process_env(function_name).and_then(|config| match access {
        Access::Public => Ok(config),
        Access::Internal => config.internal(|name| std::env::var(name).ok()),
    });
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(function = function_name, error = %err, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    let listener = match bind(&config).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(function = function_name, error = %err, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    let init = init(config.clone());
    match serve(listener, config, registry, init, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(function = function_name, error = %err, "the function stopped");
            ExitCode::FAILURE
        }
    }
}
