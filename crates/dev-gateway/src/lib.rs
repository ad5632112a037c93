//! dev-gateway
