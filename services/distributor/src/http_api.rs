//! `POST /api/v1/push` (and Cortex's older `/api/prom/push`), and the HA
//! tracker's page, `GET /distributor/ha_tracker`.
//!
//! Errors are plain text, one line, as Prometheus's and Mimir's remote-write
//! receivers answer (senders log the body; the JSON shape is the query API's).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use strata_auth::TenantResolver;
use strata_ring::http::escape_html;
use strata_status::ServiceError;

use crate::distributor::{Distributor, Pushed};

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
        .route("/distributor/ha_tracker", get(ha_tracker_page))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(PushState {
            distributor,
            resolve_tenant,
        })
}

async fn push(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let limit = state.distributor.config().max_recv_msg_size;
    let result = async {
        let tenant = (state.resolve_tenant)(&headers)?;
        check_encoding(&headers)?;
        let body = body.map_err(|rejection| body_error(&rejection, limit))?;
        Ok::<_, PushError>(state.distributor.push_body(&tenant, &body).await?)
    }
    .await;
    match result {
        Ok(Pushed::Stored) => StatusCode::OK.into_response(),
        // Mimir's answer: accepted, so the replica does not retry, and says why.
        Ok(Pushed::Deduplicated { message }) => {
            (StatusCode::ACCEPTED, format!("{message}\n")).into_response()
        }
        Err(PushError::Body(status, message)) => (status, format!("{message}\n")).into_response(),
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

/// Each tenant's clusters with their elected replica, as stored in the KV
/// store (so every distributor shows the same): HTML, or JSON with
/// `Accept: application/json`.
async fn ha_tracker_page(State(state): State<PushState>, headers: HeaderMap) -> Response {
    let Some(tracker) = state.distributor.ha_tracker() else {
        return (
            StatusCode::NOT_FOUND,
            "the HA tracker is off (distributor.ha_tracker.enable_ha_tracker)\n",
        )
            .into_response();
    };
    let mut rows = match tracker.clusters().await {
        Ok(rows) => rows,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    };
    rows.sort_by(|a, b| (&a.tenant, &a.cluster).cmp(&(&b.tenant, &b.cluster)));
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        return axum::Json(serde_json::json!({ "clusters": rows })).into_response();
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut html = String::from(
        "<!DOCTYPE html><html><head><title>Strata HA tracker</title></head><body>\
         <h1>HA tracker</h1><table border=\"1\"><tr><th>Tenant</th><th>Cluster</th>\
         <th>Elected replica</th><th>Elected at</th><th>Last update</th><th>Seconds since update</th>\
         <th>Elected changes</th></tr>",
    );
    for row in &rows {
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(&row.tenant),
            escape_html(&row.cluster),
            escape_html(&row.desc.replica),
            strata_model::Rfc3339(row.desc.elected_at),
            strata_model::Rfc3339(row.desc.received_at),
            (now_ms - row.desc.received_at) / 1000,
            row.desc.elected_changes,
        ));
    }
    html.push_str("</table></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

enum PushError {
    /// The body could not be read: too large, or the connection failed.
    Body(StatusCode, String),
    Unsupported(String),
    Service(ServiceError),
}

impl From<ServiceError> for PushError {
    fn from(e: ServiceError) -> Self {
        PushError::Service(e)
    }
}

/// A body the server would not read: over the limit (413, naming the
/// setting), or cut off by the client.
fn body_error(rejection: &BytesRejection, limit: usize) -> PushError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("push body larger than {limit} bytes, the limit distributor.max_recv_msg_size sets")
    } else {
        format!("reading the push body: {}", rejection.body_text())
    };
    PushError::Body(status, message)
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

    /// Takes every push and stores nothing.
    #[derive(Debug)]
    struct Sink;

    #[async_trait::async_trait]
    impl crate::IngesterPush for Sink {
        async fn push(
            &self,
            _tenant: &str,
            _request: strata_proto::prometheus::WriteRequest,
        ) -> Result<(), ServiceError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_413_naming_the_setting() {
        use tower::ServiceExt;
        let config = crate::DistributorConfig {
            max_recv_msg_size: 1000,
            ..Default::default()
        };
        let distributor = Distributor::new(
            config,
            Arc::new(strata_limits::Overrides::new(Default::default())),
            Arc::new(Sink),
            &prometheus::Registry::new(),
        )
        .unwrap();
        let app = router(Arc::new(distributor), strata_auth::resolver(false));
        let request = axum::http::Request::post("/api/v1/push")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .body(axum::body::Body::from(vec![0u8; 1001]))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            "push body larger than 1000 bytes, the limit distributor.max_recv_msg_size sets\n"
        );
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
