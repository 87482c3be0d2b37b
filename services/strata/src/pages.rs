//! The process's own HTTP pages: `/`, `/ready`, `/metrics`, `/config`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prometheus::Registry;
use strata_service::{NotReady, Slot, StatusBoard};

/// `GET /config`: the running configuration as YAML, secrets masked.
pub(crate) async fn show_config(State(yaml): State<Arc<String>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/yaml; charset=utf-8")],
        yaml.as_str().to_owned(),
    )
        .into_response()
}

/// The index page at `/`: the admin and status pages this process serves.
pub(crate) fn index_page(pages: &[(&str, &str)]) -> String {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html><head><title>Strata</title></head><body>\n<h1>Strata</h1>\n<ul>\n",
    );
    for (path, what) in pages {
        html.push_str(&format!("<li><a href=\"{path}\">{path}</a>: {what}</li>\n"));
    }
    html.push_str("</ul>\n<p>Every HTTP endpoint: docs/api.md.</p>\n</body></html>\n");
    html
}

pub(crate) async fn show_index(State(page): State<Arc<String>>) -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page.as_str().to_owned(),
    )
        .into_response()
}

/// `GET /ready`: 200 when every service runs and is ready; 503 naming the
/// service (and its state or reason) otherwise, and while shutting down.
pub(crate) async fn ready(State(board): State<Slot<StatusBoard>>) -> Response {
    let verdict = match board.get() {
        Some(board) => board.readiness(),
        None => Err(NotReady::ShuttingDown),
    };
    match verdict {
        Ok(()) => "ready\n".into_response(),
        Err(reason) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
            .into_response(),
    }
}

pub(crate) async fn metrics(State(registry): State<Arc<Registry>>) -> Response {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        strata_telemetry::render(&registry),
    )
        .into_response()
}
