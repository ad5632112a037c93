//! fleet tests
