//! Shared core of the faas-llm-router fleet.
//!
//! # Layout
//! - [`task`]: the tasks callers declare and the difficulty classify reports.
//! - [`api`]: wire types of the router and of the calls between functions.
//! - [`policy`]: route selection.
//! - [`classifier`]: the trained task/difficulty classifier.
//! - [`pricing`]: the price catalogue and cost from usage.
//! - [`gateway`]: calls to other functions through the OpenFaaS gateway.
//! - [`metrics`]: Prometheus metrics for provider calls.
//! - [`providers`]: the normalised provider interface and its clients.
//! - [`env`]: configuration from environment variables.
//! - [`secrets`]: secrets read from mounted files, redacted when printed.
//! - [`http`]: the one HTTP client builder.
//! - [`auth`]: AWS SigV4 signing and Google OAuth2 access tokens.
//! - [`eventstream`]: AWS event-stream binary framing (Bedrock streams).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod classifier;
pub mod env;
pub mod eventstream;
pub mod gateway;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod pricing;
pub mod providers;
pub mod secrets;
pub mod task;

pub use task::{Difficulty, Task};
