//! The crate's single error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

/// Everything that can go wrong while loading a stack, starting the gateway or
/// running a function process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file (stack, environment file, env file, secret) could not be read or written.
    #[error("{action} {}: {source}", path.display())]
    File {
        /// What was being done, e.g. "reading".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// A YAML file is malformed or a field has the wrong type. `message` carries
    /// the line, the column and a snippet showing the field.
    #[error("{}: {message}", path.display())]
    Yaml {
        /// The YAML file.
        path: PathBuf,
        /// The rendered parser error.
        message: String,
    },

    /// A field parsed but its value is not acceptable.
    #[error("{}: {field}: {message}", path.display())]
    InvalidField {
        /// The file the field comes from.
        path: PathBuf,
        /// Dotted path of the field, e.g. `functions.embed.labels.com.openfaas.scale.min`.
        field: String,
        /// Why the value is rejected.
        message: String,
    },

    /// A `${VAR...}` expression could not be expanded.
    #[error("{}: line {line}: {message}", path.display())]
    Substitution {
        /// The file being expanded.
        path: PathBuf,
        /// 1-based line of the expression.
        line: usize,
        /// What is wrong with it.
        message: String,
    },

    /// A line of a `KEY=VALUE` env file is malformed.
    #[error("{}: line {line}: {message}", path.display())]
    EnvFile {
        /// The env file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },

    /// A Go-style duration such as `5m` or `1h30m` could not be parsed.
    #[error("invalid duration {input:?}: {reason}")]
    Duration {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// Two functions share a name, or a name does not match `[-a-zA-Z_0-9.]+`.
    #[error("function {name:?}: {message}")]
    InvalidFunction {
        /// The offending name.
        name: String,
        /// What is wrong with it.
        message: &'static str,
    },

    /// `cargo build` could not be run or failed.
    #[error("cargo build failed: {0}")]
    Build(String),

    /// The gateway could not bind its listen address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// The gateway has no function with this name.
    #[error("error finding function {0}")]
    UnknownFunction(String),

    /// The function's process could not be spawned.
    #[error("cannot start function {function} ({}): {source}", command.display())]
    Spawn {
        /// The function.
        function: String,
        /// The program that was to be run.
        command: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// The function's process exited before it answered `GET /_/health`.
    #[error("function {function} exited during start-up ({exit})")]
    ExitedDuringStartup {
        /// The function.
        function: String,
        /// How it exited.
        exit: String,
    },

    /// The function's process did not answer `GET /_/health` with 200 in time.
    #[error("function {function} did not become healthy within {timeout:?}")]
    StartupTimeout {
        /// The function.
        function: String,
        /// The start-up budget that ran out.
        timeout: Duration,
    },

    /// The function's process could not be reached or failed mid-request.
    #[error("function {function} is not reachable: {detail}")]
    Unreachable {
        /// The function.
        function: String,
        /// What happened, including the exit status when the process died.
        detail: String,
    },

    /// The gateway is shutting down and starts no more processes.
    #[error("the gateway is shutting down")]
    ShuttingDown,

    /// The process or signal plumbing of the operating system failed.
    #[error("{0}")]
    System(String),
}

impl Error {
    /// The HTTP status the gateway answers with when a request fails with this error.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Error::UnknownFunction(_) => StatusCode::NOT_FOUND,
            Error::StartupTimeout { .. } | Error::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Error::Spawn { .. } | Error::ExitedDuringStartup { .. } | Error::Unreachable { .. } => {
                StatusCode::BAD_GATEWAY
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn file(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::File {
            action,
            path: path.into(),
            source,
        }
    }
}
