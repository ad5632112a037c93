//! placeholder
use crate::server::{Call, Reply, plain};
use http::StatusCode;

pub(crate) async fn handle(_call: &Call) -> Reply {
    plain(StatusCode::NOT_FOUND, "not yet").into()
}
