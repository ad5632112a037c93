//! faas-runtime
