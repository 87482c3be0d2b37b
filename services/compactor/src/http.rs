//! The compactor's HTTP endpoint, `POST /compactor/run`: a pass on demand,
//! answered with what it did.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use strata_status::ServiceError;

use crate::compactor::Compactor;

/// `POST /compactor/run`: one pass now (after the one running, if any);
/// answers the pass's [`crate::PassStats`], with 500 if a tenant failed, and the
/// error's own status (see `CompactorError`'s code) if the pass could not
/// run at all.
pub fn router(compactor: Arc<Compactor>) -> Router {
    Router::new().route(
        "/compactor/run",
        axum::routing::post(run_handler).with_state(compactor),
    )
}

async fn run_handler(State(compactor): State<Arc<Compactor>>) -> Response {
    match compactor.run_once().await {
        Ok(stats) if stats.failed_tenants.is_empty() => axum::Json(stats).into_response(),
        Ok(stats) => (http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(stats)).into_response(),
        Err(e) => {
            let e = ServiceError::from_coded(&e);
            (
                e.code.http_status(),
                format!("compaction pass failed: {}\n", e.message),
            )
                .into_response()
        }
    }
}
