//! The ingester's HTTP routes: `POST /ingester/flush`, the operator's "cut and
//! ship everything now".

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Router;
use strata_service::Slot;

use crate::ingester::Ingester;

pub fn router(ingester: Slot<Ingester>) -> Router {
    Router::new().route(
        "/ingester/flush",
        axum::routing::post(flush).with_state(ingester),
    )
}

/// Cuts every head into blocks (but for its last minute, which pushes in
/// flight still reach) and uploads them.
async fn flush(State(ingester): State<Slot<Ingester>>) -> Response {
    let Some(ingester) = ingester.get() else {
        return (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "the ingester is starting (replaying its WAL)\n",
        )
            .into_response();
    };
    match ingester.flush().await {
        Ok(stats) => axum::Json(stats).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "flush failed");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("flush failed: {e}\n"),
            )
                .into_response()
        }
    }
}
