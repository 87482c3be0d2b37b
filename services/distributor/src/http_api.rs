//! `POST /api/v1/push` (and Cortex's older `/api/prom/push`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use strata_auth::TenantResolver;
use strata_status::ServiceError;

use crate::distributor::Distributor;

#[derive(Clone)]
struct PushState {
    distributor: Arc<Distributor>,
    resolve_tenant: TenantResolver,
}

/// The push routes, with the body size limit of the config.
pub fn router(distributor: Arc<Distributor>, resolve_tenant: TenantResolver) -> Router {
    let limit = distributor.config().max_recv_msg_size;
    Router::new()
        .route("/api/v1/push", post(push))
        .route("/api/prom/push", post(push))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(PushState {
            distributor,
            resolve_tenant,
        })
}

async fn push(State(state): State<PushState>, headers: HeaderMap, body: Bytes) -> Response {
    let result = async {
        let tenant = (state.resolve_tenant)(&headers)?;
        check_encoding(&headers)?;
        state.distributor.push_body(&tenant, &body).await?;
        Ok::<_, PushError>(tenant)
    }
    .await;
    match result {
        Ok(_) => StatusCode::OK.into_response(),
        Err(PushError::Unsupported(message)) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("{message}\n")).into_response()
        }
        Err(PushError::Service(e)) => {
            if !e.code.is_client_error() {
                tracing::warn!(error = %e.message, "push failed");
            }
            (e.code.http_status(), format!("{}\n", e.message)).into_response()
        }
    }
}

enum PushError {
    Unsupported(String),
    Service(ServiceError),
}

impl From<ServiceError> for PushError {
    fn from(e: ServiceError) -> Self {
        PushError::Service(e)
    }
}

/// Remote-write 1.0 is protobuf in snappy; other declared encodings are 415.
/// Absent headers are accepted, as Prometheus itself does.
fn check_encoding(headers: &HeaderMap) -> Result<(), PushError> {
    if let Some(value) = headers.get(header::CONTENT_ENCODING) {
        let value = value.to_str().unwrap_or_default().trim();
        if !value.eq_ignore_ascii_case("snappy") {
            return Err(PushError::Unsupported(format!(
                "unsupported Content-Encoding {value:?}: remote-write 1.0 bodies are snappy-compressed"
            )));
        }
    }
    if let Some(value) = headers.get(header::CONTENT_TYPE) {
        let value = value.to_str().unwrap_or_default();
        let media = value.split(';').next().unwrap_or_default().trim();
        let proto = value
            .split(';')
            .skip(1)
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
            .map(|(_, v)| v.trim());
        if !media.eq_ignore_ascii_case("application/x-protobuf") {
            return Err(PushError::Unsupported(format!(
                "unsupported Content-Type {value:?}: remote-write bodies are application/x-protobuf"
            )));
        }
        if let Some(proto) = proto {
            if proto != "prometheus.WriteRequest" {
                return Err(PushError::Unsupported(format!(
                    "unsupported remote-write message {proto:?}: Strata speaks remote-write 1.0 (prometheus.WriteRequest)"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(k.clone(), v.parse().unwrap());
        }
        map
    }

    #[test]
    fn encodings() {
        assert!(check_encoding(&HeaderMap::new()).is_ok());
        assert!(check_encoding(&headers(&[
            (header::CONTENT_ENCODING, "snappy"),
            (header::CONTENT_TYPE, "application/x-protobuf"),
        ]))
        .is_ok());
        assert!(check_encoding(&headers(&[(
            header::CONTENT_TYPE,
            "application/x-protobuf;proto=prometheus.WriteRequest"
        )]))
        .is_ok());
        assert!(check_encoding(&headers(&[(header::CONTENT_ENCODING, "gzip")])).is_err());
        assert!(check_encoding(&headers(&[(header::CONTENT_TYPE, "application/json")])).is_err());
        assert!(check_encoding(&headers(&[(
            header::CONTENT_TYPE,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
        )]))
        .is_err());
    }
}
