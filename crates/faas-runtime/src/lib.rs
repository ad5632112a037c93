//! The small HTTP runtime every faas-llm-router function binary runs on.
//!
//! It speaks the contract of OpenFaaS's of-watchdog in `mode=http` (the function listens on a
//! private upstream port, by default `127.0.0.1:3000`) and Knative's (listen on `$PORT`), and
//! owns what every function would otherwise repeat:
//!
//! - HTTP/1.1 with keep-alive; every path and method goes to the function's [`Handler`], except
//!   `GET /_/health`, `GET /_/ready` and `GET /metrics`;
//! - request bodies (chunked or not) read under a size limit while they stream: 413 past it;
//! - `X-Call-Id` taken or generated, put in the logs, and on the response when generated (an
//!   incoming id is the caller's or the gateway's, which answers with it itself);
//! - a panicking handler answers 500 and the server keeps going;
//! - request metrics in the function's Prometheus registry;
//! - the watchdog's shutdown sequence: grace period (`healthcheck_interval`) with health at 503,
//!   then a drain bounded by `write_timeout`, then exit 0.
//!
//! A binary's `main` is usually just [`run`]; tests use [`bind`] and [`serve`] directly.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
mod body;
mod call_id;
mod config;
mod dispatch;
mod duration;
mod error;
mod handler;
mod metrics;
mod request_body;
mod response;
mod run;
mod server;
mod signal;
mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use body::{Body, BoxError, empty, full, streaming};
pub use call_id::CALL_ID_HEADER;
pub use config::{DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_WRITE_TIMEOUT, RuntimeConfig};
pub use duration::parse_go_duration;
pub use error::Error;
pub use handler::{Handler, HandlerFn, RequestContext, handler_fn};
pub use metrics::{REQUEST_DURATION_SECONDS, REQUESTS_IN_FLIGHT, REQUESTS_TOTAL, register_metric};
pub use response::{error_response, json_error, json_response, sse_response};
pub use run::{run, run_internal};
pub use server::{bind, serve};
pub use signal::shutdown_signal;
pub use telemetry::init_tracing;
