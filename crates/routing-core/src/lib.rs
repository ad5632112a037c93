//! Shared core of the faas-llm-router fleet.
//!
//! # Layout
//! - [`task`]: the tasks callers declare and the difficulty classify reports.
//! - [`providers`]: the normalised provider interface and its clients.
//! - [`env`]: configuration from environment variables.
//! - [`secrets`]: secrets read from mounted files, redacted when printed.
//! - [`http`]: the one HTTP client builder.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod env;
pub mod http;
pub mod providers;
pub mod secrets;
pub mod task;

pub use task::{Difficulty, Task};
