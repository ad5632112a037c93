//! The fleet's shared domain: what callers ask for, how a route is chosen,
//! what it costs. No HTTP, no TLS, no secrets: those live in the crates that
//! do I/O (`providers`, `gateway-client`, `secrets`, `faas-runtime`).
//!
//! # Layout
//! - [`task`]: the tasks callers declare and the difficulty classify reports.
//! - [`chat`]: the provider-neutral chat and embedding vocabulary (messages,
//!   usage, finish reasons, locality).
//! - [`api`]: wire types of the router and of the calls between functions.
//! - [`policy`]: route selection, and learning from feedback.
//! - [`calls`]: what feedback on a routed call needs, kept per call id.
//! - [`classifier`]: the trained task/difficulty classifier.
//! - [`pricing`]: the price catalogue and cost from usage.
//! - [`env`]: configuration from environment variables.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod calls;
pub mod chat;
pub mod classifier;
pub mod env;
pub mod failure;
pub mod policy;
pub mod pricing;
pub mod task;

pub use task::{Difficulty, Task};
