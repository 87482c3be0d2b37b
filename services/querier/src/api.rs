//! The Prometheus HTTP API (`/api/v1/...` and `/prometheus/api/v1/...`) as an axum
//! router: parameter parsing, tenant resolution, and responses shaped exactly as
//! Prometheus shapes them. Remote read (`/read`) is routed here too; its
//! protocol is [`crate::remote_read`]'s.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use strata_model::{is_valid_label_name, Labels};
use strata_status::ServiceError;

use crate::engine::{format_value, parse_guarded, QueryOutput};
use crate::error::ApiError;
use crate::json::{
    error_body, success_body, write_array, write_labels, write_query_data, write_str, TooLarge,
};
use crate::params::{
    invalid_param, parse_limit, parse_match_param, parse_range_params, parse_time_param,
    parse_timeout, Params, MAX_TIME_MS, MIN_TIME_MS,
};
use crate::querier::Querier;
use crate::remote_read;
use crate::status::{tsdb_stats, ProcessStatus};

/// Resolves the tenant of a request from its headers (`X-Scope-OrgID`, or
/// whatever the auth layer decides).
pub type TenantResolver = Arc<dyn Fn(&HeaderMap) -> Result<String, ServiceError> + Send + Sync>;

/// The warning Prometheus adds when `limit` cut a result short.
const TRUNCATED_WARNING: &str = "results truncated due to limit";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, error_body(self.error_type, &self.message))
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn success(data: &[u8], warnings: &[String], infos: &[String]) -> Response {
    json_response(StatusCode::OK, success_body(data, warnings, infos))
}

#[derive(Clone)]
struct AppState {
    querier: Arc<Querier>,
    resolve_tenant: TenantResolver,
    process: Arc<ProcessStatus>,
}

/// The Prometheus API, mounted under both `/prometheus/api/v1` and `/api/v1`.
pub fn router(
    querier: Arc<Querier>,
    resolve_tenant: TenantResolver,
    process: Arc<ProcessStatus>,
) -> Router {
    let api = Router::new()
        .route("/query", get(query).post(query))
        .route("/query_range", get(query_range).post(query_range))
        .route("/series", get(series).post(series))
        .route("/labels", get(labels).post(labels))
        .route("/label/{name}/values", get(label_values))
        .route(
            "/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/format_query", get(format_query).post(format_query))
        .route("/metadata", get(metadata))
        .route("/status/buildinfo", get(buildinfo))
        .route("/status/config", get(status_config))
        .route("/status/flags", get(status_flags))
        .route("/status/runtimeinfo", get(status_runtimeinfo))
        .route("/status/tsdb", get(status_tsdb))
        .route("/read", post(remote_read))
        .fallback(unknown_endpoint);
    Router::new()
        .nest("/prometheus/api/v1", api.clone())
        .nest("/api/v1", api)
        .with_state(AppState {
            querier,
            resolve_tenant,
            process,
        })
}

/// The tenant and the form values of a request. Like Go's `ParseForm`, reads the
/// body only of a form-encoded POST.
fn prepare(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, Params), ApiError> {
    let tenant = (state.resolve_tenant)(headers).map_err(ApiError::from_service)?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    // A body over the HTTP limit (2 MiB) is answered in the API's JSON shape.
    let body = body.map_err(|rejection| {
        let mut message = rejection.body_text();
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            message.push_str(" (request bodies of the query API are limited to 2 MiB)");
        }
        ApiError {
            status: rejection.status(),
            error_type: "bad_data",
            message,
        }
    })?;
    let form_body = (is_form && method == Method::POST).then_some(&body[..]);
    Ok((tenant, Params::parse(uri.query(), form_body)))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn query_response(output: QueryOutput, max_bytes: usize) -> Result<Response, ApiError> {
    let mut data = Vec::new();
    write_query_data(&mut data, &output.data, format_value, max_bytes).map_err(too_large)?;
    Ok(success(&data, &output.warnings, &output.infos))
}

/// An answer over `querier.max_response_size_bytes`: 422, naming the limit.
fn too_large(e: TooLarge) -> ApiError {
    ApiError::execution(format!(
        "{e} (querier.max_response_size_bytes; err-strata-response-too-large)"
    ))
}

#[tracing::instrument(name = "querier.query", skip_all)]
async fn query(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    let time_ms = parse_time_param(&params, "time", now_ms()).map_err(ApiError::bad_data)?;
    let timeout = parse_timeout(&params).map_err(ApiError::bad_data)?;
    let output = state
        .querier
        .instant_query(&tenant, params.get("query"), time_ms, timeout)
        .await?;
    query_response(output, state.querier.config().max_response_size_bytes)
}

#[tracing::instrument(name = "querier.query_range", skip_all)]
async fn query_range(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    let range = parse_range_params(&params).map_err(ApiError::bad_data)?;
    let timeout = parse_timeout(&params).map_err(ApiError::bad_data)?;
    let output = state
        .querier
        .range_query(&tenant, params.get("query"), range, timeout)
        .await?;
    query_response(output, state.querier.config().max_response_size_bytes)
}

/// `start` and `end` of the metadata endpoints: all time when absent.
fn metadata_range(params: &Params) -> Result<(i64, i64), ApiError> {
    let start = parse_time_param(params, "start", MIN_TIME_MS).map_err(ApiError::bad_data)?;
    let end = parse_time_param(params, "end", MAX_TIME_MS).map_err(ApiError::bad_data)?;
    Ok((start, end))
}

/// Runs a storage call within the querier's timeout.
async fn with_timeout<T>(
    querier: &Querier,
    call: impl std::future::Future<Output = Result<T, ServiceError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(querier.config().timeout.0, call).await {
        Ok(result) => result.map_err(ApiError::from_service),
        Err(_) => Err(ApiError::timeout("query timed out in fetching series")),
    }
}

fn truncate<T>(items: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push(TRUNCATED_WARNING.to_string());
    }
}

async fn series(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    let matches = params.get_all("match[]");
    if matches.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = metadata_range(&params)?;
    let matcher_sets = parse_match_param(&matches, state.querier.shape_limits())
        .map_err(|e| ApiError::bad_data(invalid_param("match[]", e)))?;
    let limit = parse_limit(&params).map_err(ApiError::bad_data)?;
    let storage = state.querier.queryable(&tenant);
    let mut found: Vec<Labels> =
        with_timeout(&state.querier, storage.series(&matcher_sets, start, end)).await?;
    storage
        .count_fetched_series(&found)
        .map_err(|e| ApiError::execution(e.message))?;
    let mut warnings = Vec::new();
    truncate(&mut found, limit, &mut warnings);
    let mut data = Vec::new();
    let max_bytes = state.querier.config().max_response_size_bytes;
    write_array(&mut data, &found, write_labels, max_bytes).map_err(too_large)?;
    Ok(success(&data, &warnings, &[]))
}

fn string_list_response(
    mut list: Vec<String>,
    limit: usize,
    max_bytes: usize,
) -> Result<Response, ApiError> {
    let mut warnings = Vec::new();
    truncate(&mut list, limit, &mut warnings);
    let mut data = Vec::new();
    write_array(&mut data, &list, |out, s| write_str(out, s), max_bytes).map_err(too_large)?;
    Ok(success(&data, &warnings, &[]))
}

async fn labels(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    let (start, end) = metadata_range(&params)?;
    let matcher_sets = parse_match_param(&params.get_all("match[]"), state.querier.shape_limits())
        .map_err(ApiError::bad_data)?;
    let limit = parse_limit(&params).map_err(ApiError::bad_data)?;
    let storage = state.querier.queryable(&tenant);
    let names = with_timeout(
        &state.querier,
        storage.label_names(&matcher_sets, start, end),
    )
    .await?;
    string_list_response(names, limit, state.querier.config().max_response_size_bytes)
}

async fn label_values(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    if !is_valid_label_name(&name) {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (start, end) = metadata_range(&params)?;
    let matcher_sets = parse_match_param(&params.get_all("match[]"), state.querier.shape_limits())
        .map_err(ApiError::bad_data)?;
    let limit = parse_limit(&params).map_err(ApiError::bad_data)?;
    let storage = state.querier.queryable(&tenant);
    let values = with_timeout(
        &state.querier,
        storage.label_values(&name, &matcher_sets, start, end),
    )
    .await?;
    string_list_response(
        values,
        limit,
        state.querier.config().max_response_size_bytes,
    )
}

/// Prometheus remote read. Errors are plain text (what Prometheus's client
/// logs), not the query API's JSON.
#[tracing::instrument(name = "querier.remote_read", skip_all)]
async fn remote_read(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let tenant = match (state.resolve_tenant)(&headers) {
        Ok(tenant) => tenant,
        Err(e) => return remote_read::error_response(&ApiError::from_service(e)),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let mut message = rejection.body_text();
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                message.push_str(" (remote-read request bodies are limited to 2 MiB)");
            }
            return remote_read::error_response(&ApiError {
                status: rejection.status(),
                error_type: "bad_data",
                message,
            });
        }
    };
    remote_read::serve(&state.querier, &tenant, &body).await
}

/// `/api/v1/query_exemplars` (`query`, `start`, `end`): the exemplars of
/// the series the query's selectors match, from the ingesters.
async fn query_exemplars(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    let (start, end) = metadata_range(&params)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let expr = parse_guarded(params.get("query"), state.querier.shape_limits())
        .map_err(|e| ApiError::bad_data(invalid_param("query", e)))?;
    let matcher_sets = strata_promql::selector_matcher_sets(&expr)
        .map_err(|e| ApiError::bad_data(invalid_param("query", e)))?;
    if matcher_sets.is_empty() {
        return Ok(success(b"[]", &[], &[]));
    }
    let found = state
        .querier
        .exemplars(&tenant, &matcher_sets, start, end)
        .await?;
    Ok(success(&crate::exemplars::to_json(&found), &[], &[]))
}

/// `/api/v1/metadata` (`metric`, `limit`, `limit_per_metric`), from the
/// ingesters' metadata: see [`crate::metadata`].
async fn metadata(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    // Prometheus's parsing: any integer, negative meaning no limit.
    let number = |name: &str, absent: i64| -> Result<i64, ApiError> {
        let raw = params.get(name);
        if raw.is_empty() {
            return Ok(absent);
        }
        raw.parse()
            .map_err(|_| ApiError::bad_data(format!("{name} must be a number")))
    };
    let limits = crate::metadata::MetadataLimits {
        metrics: number("limit", -1)?,
        per_metric: number("limit_per_metric", 0)?,
    };
    let families = state
        .querier
        .metric_metadata(&tenant, params.get("metric"), limits)
        .await?;
    Ok(success(&crate::metadata::to_json(&families), &[], &[]))
}

async fn format_query(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (_tenant, params) = prepare(&state, &method, &headers, &uri, body)?;
    let pretty = state.querier.format_query(params.get("query")).await?;
    let mut data = Vec::new();
    write_str(&mut data, &pretty);
    Ok(success(&data, &[], &[]))
}

/// Any other path under the API prefixes: 404 in the API's error shape (a
/// bare 404 is what Grafana shows as "unexpected end of JSON input").
async fn unknown_endpoint(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        error_type: "not_found",
        message: format!(
            "unknown API endpoint {}; docs/api.md lists the endpoints Strata serves",
            uri.path()
        ),
    }
}

/// Build information, in Prometheus's fields plus `application` (revision,
/// branch, date and compiler from `build.rs`); needs no tenant.
async fn buildinfo() -> Response {
    let info = serde_json::json!({
        "application": "Strata",
        "version": env!("CARGO_PKG_VERSION"),
        "revision": env!("STRATA_BUILD_REVISION"),
        "branch": env!("STRATA_BUILD_BRANCH"),
        "buildUser": "",
        "buildDate": env!("STRATA_BUILD_DATE"),
        // Prometheus's field for the compiler's version.
        "goVersion": env!("STRATA_BUILD_RUST_VERSION"),
    });
    success(info.to_string().as_bytes(), &[], &[])
}

/// The process's status pages are for the callers of the API: a request
/// needs what a query needs (a tenant, and with auth a credential).
fn caller_of_the_api(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    (state.resolve_tenant)(headers)
        .map(drop)
        .map_err(ApiError::from_service)
}

/// The running configuration, secrets masked, as Prometheus's `{"yaml": …}`.
async fn status_config(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller_of_the_api(&state, &headers)?;
    let data = serde_json::json!({ "yaml": state.process.config_yaml });
    Ok(success(data.to_string().as_bytes(), &[], &[]))
}

/// Every setting as a flag name (the dotted config key) and its value.
async fn status_flags(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller_of_the_api(&state, &headers)?;
    let data = serde_json::to_string(&state.process.flags).unwrap_or_else(|_| "{}".into());
    Ok(success(data.as_bytes(), &[], &[]))
}

/// Start time, working directory and the runtime's counts.
async fn status_runtimeinfo(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller_of_the_api(&state, &headers)?;
    let threads = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Threads:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let data = state.process.runtime_info(threads, cores);
    Ok(success(data.to_string().as_bytes(), &[], &[]))
}

/// The tenant's cardinality over the series its ingesters hold (the last
/// `querier.query_ingesters_within`), in Prometheus's shape; `limit` (default
/// 10) entries per list. Bounded by the tenant's fetched-series limit.
async fn status_tsdb(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (tenant, params) = prepare(&state, &method, &headers, &uri, Ok(Bytes::new()))?;
    let limit = match params.get("limit") {
        "" => 10,
        raw => match raw.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"limit\": must be an integer from 1 to 10000, got {raw:?}"
                )))
            }
        },
    };
    let end = now_ms();
    let window = i64::try_from(state.querier.config().query_ingesters_within.0.as_millis())
        .unwrap_or(i64::MAX);
    let start = if window > 0 {
        end.saturating_sub(window)
    } else {
        MIN_TIME_MS
    };
    let every_series =
        strata_model::Matcher::new(strata_model::MatchOp::RegexMatch, "__name__", ".+")
            .map_err(|e| ApiError::from_service(ServiceError::internal(e.to_string())))?;
    let storage = state.querier.queryable(&tenant);
    let found: Vec<Labels> = with_timeout(
        &state.querier,
        storage.series(&[vec![every_series]], start, end),
    )
    .await?;
    storage
        .count_fetched_series(&found)
        .map_err(|e| ApiError::execution(e.message))?;
    let data = tsdb_stats(&found, limit, start, end);
    Ok(success(data.to_string().as_bytes(), &[], &[]))
}
