//! The runtime over real TCP on 127.0.0.1, with a small test handler.

mod binding;
mod body_limits;
mod routing;
mod shutdown;
// Marked as test code so that clippy's allowances for tests (`expect`, `panic`) cover the helpers.
#[cfg(test)]
mod support;
