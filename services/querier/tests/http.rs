//! The HTTP API end to end through axum's router, over a fake set of ingesters
//! that keeps series per tenant and records which tenant each call was for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use strata_model::{Labels, Matcher, Series};
use strata_proto::ingester::{LabelNamesRequest, LabelValuesRequest, QueryRequest, SeriesRequest};
use strata_proto::types::{LabelMatcher, StreamSeries};
use strata_querier::{router, IngesterQuery, Querier, QuerierConfig, TenantResolver};
use strata_status::ServiceError;
use tower::ServiceExt;

#[derive(Debug, Default)]
struct FakeIngesters {
    series: HashMap<String, Vec<Series>>,
    asked_for: Mutex<Vec<String>>,
}

impl FakeIngesters {
    fn matching(&self, tenant: &str, matchers: &[LabelMatcher]) -> Vec<&Series> {
        self.asked_for.lock().unwrap().push(tenant.to_string());
        let matchers: Vec<Matcher> = strata_proto::matchers_from_proto(matchers).unwrap();
        self.series
            .get(tenant)
            .map(|all| {
                all.iter()
                    .filter(|s| {
                        matchers
                            .iter()
                            .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl IngesterQuery for FakeIngesters {
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        Ok(self
            .matching(tenant, &request.matchers)
            .into_iter()
            .map(|s| StreamSeries {
                labels: strata_proto::labels_to_proto(&s.labels),
                chunks: vec![],
            })
            .collect())
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(self
            .matching(tenant, &request.matchers)
            .into_iter()
            .flat_map(|s| s.labels.iter().map(|l| l.name.clone()))
            .collect())
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        Ok(self
            .matching(tenant, &request.matchers)
            .into_iter()
            .filter_map(|s| s.labels.get(&request.label_name).map(str::to_string))
            .collect())
    }

    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        let mut out = Vec::new();
        for set in &request.matcher_sets {
            out.extend(
                self.matching(tenant, &set.matchers)
                    .into_iter()
                    .map(|s| s.labels.clone()),
            );
        }
        Ok(out)
    }
}

fn series(pairs: &[(&str, &str)]) -> Series {
    Series {
        labels: Labels::from_pairs(pairs.iter().copied()),
        samples: vec![],
    }
}

fn tenant_from_header() -> TenantResolver {
    Arc::new(|headers: &HeaderMap| {
        headers
            .get("x-scope-orgid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                ServiceError::new(strata_status::ErrorCode::Unauthenticated, "no org id")
            })
    })
}

struct Harness {
    fake: Arc<FakeIngesters>,
    app: axum::Router,
}

fn harness() -> Harness {
    harness_with(|querier| querier)
}

fn harness_with(configure: impl FnOnce(Querier) -> Querier) -> Harness {
    harness_from(QuerierConfig::default(), configure)
}

fn harness_from(config: QuerierConfig, configure: impl FnOnce(Querier) -> Querier) -> Harness {
    let mut fake = FakeIngesters::default();
    fake.series.insert(
        "team-a".into(),
        vec![
            series(&[
                ("__name__", "up"),
                ("job", "prometheus"),
                ("instance", "localhost:9090"),
            ]),
            series(&[
                ("__name__", "up"),
                ("job", "node"),
                ("instance", "localhost:9100"),
            ]),
            series(&[
                ("__name__", "process_start_time_seconds"),
                ("job", "prometheus"),
            ]),
        ],
    );
    fake.series.insert(
        "team-b".into(),
        vec![series(&[
            ("__name__", "up"),
            ("job", "secret"),
            ("zone", "b"),
        ])],
    );
    let fake = Arc::new(fake);
    let querier = configure(Querier::new(config, fake.clone()).unwrap());
    Harness {
        app: router(Arc::new(querier), tenant_from_header(), Arc::default()),
        fake,
    }
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body));
        });
        assert_eq!(content_type.as_deref(), Some("application/json"));
        (status, value)
    }

    async fn get(&self, tenant: &str, uri: &str) -> (StatusCode, Value) {
        self.send(
            Request::get(uri)
                .header("X-Scope-OrgID", tenant)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    async fn post_form(&self, tenant: &str, uri: &str, form: &str) -> (StatusCode, Value) {
        self.send(
            Request::post(uri)
                .header("X-Scope-OrgID", tenant)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form.to_string()))
                .unwrap(),
        )
        .await
    }

    fn tenants_asked(&self) -> Vec<String> {
        std::mem::take(&mut *self.fake.asked_for.lock().unwrap())
    }
}

fn bad_data(message: &str) -> Value {
    json!({"status": "error", "errorType": "bad_data", "error": message})
}

#[tokio::test]
async fn series_endpoint() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/series?match[]=up").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "success", "data": [
            {"__name__": "up", "instance": "localhost:9090", "job": "prometheus"},
            {"__name__": "up", "instance": "localhost:9100", "job": "node"},
        ]})
    );
    assert_eq!(h.tenants_asked(), ["team-a"]);

    // Several match[] values: the union, each series once; form-encoded POST works.
    let (status, body) = h
        .post_form(
            "team-a",
            "/prometheus/api/v1/series",
            "match%5B%5D=up%7Bjob%3D%22node%22%7D&match%5B%5D=%7Bjob%3D%22prometheus%22%7D",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 3);

    let (status, body) = h.get("team-a", "/api/v1/series?match[]=up&limit=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
}

#[tokio::test]
async fn series_endpoint_validation() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/series").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, bad_data("no match[] parameter provided"));

    let (status, body) = h
        .get("team-a", "/api/v1/series?match[]=%7Bjob%3D~%22.*%22%7D")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "bad_data");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid parameter \"match[]\""));

    let (status, body) = h
        .get("team-a", "/api/v1/series?match[]=up&start=yesterday")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_data("invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp")
    );
    assert!(h.tenants_asked().is_empty());
}

#[tokio::test]
async fn labels_endpoint() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/labels").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "success", "data": ["__name__", "instance", "job"]})
    );
    let (_, body) = h
        .get(
            "team-a",
            "/api/v1/labels?match[]=process_start_time_seconds",
        )
        .await;
    assert_eq!(body["data"], json!(["__name__", "job"]));
    let (_, body) = h
        .post_form(
            "team-a",
            "/api/v1/labels",
            "limit=2&start=0&end=2015-07-01T20:10:51Z",
        )
        .await;
    assert_eq!(body["data"], json!(["__name__", "instance"]));
    assert_eq!(body["warnings"], json!(["results truncated due to limit"]));
}

#[tokio::test]
async fn label_values_endpoint() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/label/job/values").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"status": "success", "data": ["node", "prometheus"]})
    );
    let (_, body) = h
        .get(
            "team-a",
            "/prometheus/api/v1/label/job/values?match[]=up%7Binstance%3D%22localhost%3A9100%22%7D",
        )
        .await;
    assert_eq!(body["data"], json!(["node"]));
    let (_, body) = h.get("team-a", "/api/v1/label/nonexistent/values").await;
    assert_eq!(body["data"], json!([]));

    let (status, body) = h.get("team-a", "/api/v1/label/not-a-name/values").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, bad_data("invalid label name: \"not-a-name\""));
}

#[tokio::test]
async fn tenants_see_only_their_own_series() {
    let h = harness();
    let (_, body) = h.get("team-b", "/api/v1/label/job/values").await;
    assert_eq!(body["data"], json!(["secret"]));
    let (_, body) = h.get("team-b", "/api/v1/series?match[]=up").await;
    assert_eq!(
        body["data"],
        json!([{"__name__": "up", "job": "secret", "zone": "b"}])
    );
    assert_eq!(h.tenants_asked(), ["team-b", "team-b"]);

    let (_, body) = h.get("team-a", "/api/v1/label/job/values").await;
    assert_eq!(body["data"], json!(["node", "prometheus"]));
    let (_, body) = h.get("nobody", "/api/v1/labels").await;
    assert_eq!(body["data"], json!([]));
    assert_eq!(h.tenants_asked(), ["team-a", "nobody"]);

    // No tenant: the resolver's error, with its code's status; storage untouched.
    let (status, body) = h
        .send(Request::get("/api/v1/labels").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"], "no org id");
    assert!(h.tenants_asked().is_empty());
}

#[tokio::test]
async fn query_range_validation() {
    let h = harness();
    let step_error = bad_data(
        "invalid parameter \"step\": zero or negative query resolution step widths are not \
         accepted. Try a positive integer",
    );
    let (status, body) = h
        .get(
            "team-a",
            "/api/v1/query_range?query=up&start=0&end=100&step=0",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, step_error);
    let (status, body) = h
        .post_form(
            "team-a",
            "/api/v1/query_range",
            "query=up&start=0&end=100&step=-10",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, step_error);

    let (status, body) = h
        .get(
            "team-a",
            "/api/v1/query_range?query=up&start=0&end=1000000000&step=1",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the \
             query resolution (?step=XX)"
        )
    );

    let (status, body) = h
        .get(
            "team-a",
            "/api/v1/query_range?query=up&start=100&end=0&step=1",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_data("invalid parameter \"end\": end timestamp must not be before start time")
    );

    let (status, body) = h
        .get("team-a", "/api/v1/query?query=up&time=2015-07-01T25:00:00Z")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_data(
            "invalid parameter \"time\": cannot parse \"2015-07-01T25:00:00Z\" to a valid timestamp"
        )
    );

    let (status, body) = h.get("team-a", "/api/v1/query?query=up&timeout=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_data("invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration")
    );
    assert!(h.tenants_asked().is_empty());
}

#[tokio::test]
async fn hostile_parameters_are_bad_data_not_panics() {
    let h = harness();
    let hostile = [
        "NaN",
        "Inf",
        "-Inf",
        "1e400",
        "-1e400",
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999999999999999",
        "%00",
        "%FF%FE",
        "2015-02-30T00:00:00Z",
        "0x10",
        "1_000",
        "",
    ];
    for value in hostile {
        for uri in [
            format!("/api/v1/query_range?query=up&start={value}&end=10&step=1"),
            format!("/api/v1/query_range?query=up&start=0&end={value}&step=1"),
            format!("/api/v1/query_range?query=up&start=0&end=10&step={value}"),
            format!("/api/v1/query?query=up&time={value}&timeout={value}"),
            format!("/api/v1/series?match[]={value}&start={value}"),
            format!("/api/v1/labels?end={value}&limit={value}"),
            format!("/api/v1/label/job/values?match[]=up{value}"),
        ] {
            let (status, body) = h.get("team-a", &uri).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::BAD_REQUEST || status == 422,
                "{uri}: {status} {body}"
            );
            if status != StatusCode::OK {
                assert_eq!(body["status"], "error", "{uri}");
            }
        }
    }
}

#[tokio::test]
async fn small_endpoints() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "success", "data": {}}));
    for bad in ["limit=x", "limit_per_metric=1.5"] {
        let (status, body) = h.get("team-a", &format!("/api/v1/metadata?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["errorType"], "bad_data", "{bad}");
    }

    let (status, body) = h
        .get("team-a", "/api/v1/query_exemplars?query=up&start=0&end=10")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "success", "data": []}));

    let (status, body) = h.get("team-a", "/api/v1/status/buildinfo").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["version"], env!("CARGO_PKG_VERSION"));
    // Filled at build time: the compiler always, git where the source is a checkout.
    assert!(
        body["data"]["goVersion"]
            .as_str()
            .unwrap()
            .starts_with("rustc "),
        "{body}"
    );
    let date = body["data"]["buildDate"].as_str().unwrap();
    assert_eq!(date.len(), "20060102-15:04:05".len(), "{date}");
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.git")).exists() {
        assert_eq!(
            body["data"]["revision"].as_str().unwrap().len(),
            40,
            "{body}"
        );
    }

    let (status, body) = h
        .get(
            "team-a",
            "/api/v1/format_query?query=sum%28up%29%20by%20%28job%29",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], "sum by (job) (up)");

    let (status, body) = h.get("team-a", "/api/v1/format_query?query=sum%28").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "bad_data");
}

/// The shape limits and the response budget answer with the Prometheus
/// error shapes, naming the config key; queries within them are untouched.
#[tokio::test]
async fn query_limits_name_their_config_keys() {
    let h = harness_from(
        QuerierConfig {
            max_query_expression_depth: 10,
            max_query_expression_size_bytes: 200,
            max_query_matchers_per_selector: 2,
            max_response_size_bytes: 300,
            ..QuerierConfig::default()
        },
        |q| q,
    );
    let deep = format!("{}up{}", "(".repeat(20), ")".repeat(20));
    let long = format!("up{}", " + up".repeat(50));
    let cases = [
        ("query", deep.as_str(), "querier.max_query_expression_depth"),
        (
            "query",
            long.as_str(),
            "querier.max_query_expression_size_bytes",
        ),
        (
            "query",
            r#"up{a="1",b="2",c="3"}"#,
            "querier.max_query_matchers_per_selector",
        ),
    ];
    for (endpoint, query, key) in [
        "/api/v1/query",
        "/api/v1/query_range",
        "/api/v1/format_query",
        "/api/v1/query_exemplars",
    ]
    .iter()
    .flat_map(|e| cases.iter().map(move |(_, q, k)| (*e, *q, *k)))
    {
        let form = format!(
            "query={}&start=0&end=600&step=60",
            query.replace('+', "%2B")
        );
        let (status, body) = h.post_form("team-a", endpoint, &form).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{endpoint} {query}: {body}"
        );
        assert_eq!(body["errorType"], "bad_data");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(key), "{endpoint}: {message}");
        assert!(
            message.starts_with("invalid parameter \"query\""),
            "{message}"
        );
    }
    // A regex whose compiled program would be huge is refused by the regex
    // crate's size limit, quickly, as a bad query.
    let (status, body) = h
        .post_form(
            "team-a",
            "/api/v1/query",
            "query=up%7Bjob%3D~%22((a%7B1000%7D)%7B1000%7D)%7B1000%7D%22%7D",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorType"], "bad_data");
    // Selectors of match[] keep to the same limits.
    let (status, body) = h
        .get("team-a", &format!("/api/v1/series?match[]={}", deep))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("querier.max_query_expression_depth"));
    // Within the limits the answer is as before, until the response budget:
    // one point fits in 300 bytes, a hundred do not.
    let (status, body) = h
        .get("team-a", "/api/v1/query?query=vector%281%29&time=0")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .get(
            "team-a",
            "/api/v1/query_range?query=vector%281%29&start=0&end=6000&step=60",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("querier.max_response_size_bytes"));
    // format_query keeps to the budget as well.
    let small = harness_from(
        QuerierConfig {
            max_response_size_bytes: 20,
            ..QuerierConfig::default()
        },
        |q| q,
    );
    let (status, body) = small
        .get("team-a", "/api/v1/format_query?query=sum%28up%29")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], "sum(up)");
    let (status, body) = small
        .get(
            "team-a",
            "/api/v1/format_query?query=sum%28up%29%20by%20%28job%2Cinstance%29",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("querier.max_response_size_bytes"));
}

#[tokio::test]
async fn unknown_api_paths_are_json_404s() {
    let h = harness();
    for path in [
        "/api/v1/status/walreplay",
        "/api/v1/admin/tsdb/delete_series",
        "/prometheus/api/v1/nope",
    ] {
        let (status, body) = h.get("team-a", path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["status"], "error", "{path}");
        assert_eq!(body["errorType"], "not_found", "{path}");
        assert!(body["error"].as_str().unwrap().contains(path), "{body}");
    }
}

#[tokio::test]
async fn status_tsdb_counts_the_tenant_s_own_series() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/status/tsdb").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert_eq!(data["headStats"]["numSeries"], 3, "{body}");
    assert_eq!(
        data["seriesCountByMetricName"],
        json!([{"name": "up", "value": 2}, {"name": "process_start_time_seconds", "value": 1}])
    );
    assert_eq!(
        data["labelValueCountByLabelName"][0],
        json!({"name": "__name__", "value": 2})
    );
    // Another tenant's series are not counted.
    let (_, body) = h.get("team-b", "/api/v1/status/tsdb?limit=1").await;
    assert_eq!(body["data"]["headStats"]["numSeries"], 1, "{body}");
    assert_eq!(
        body["data"]["seriesCountByLabelValuePair"],
        json!([{"name": "__name__=up", "value": 1}])
    );
    let (status, body) = h.get("team-a", "/api/v1/status/tsdb?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errorType"], "bad_data");
}

#[tokio::test]
async fn process_status_pages_answer_in_prometheus_s_shape() {
    let h = harness();
    let (status, body) = h.get("team-a", "/api/v1/status/config").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"]["yaml"].is_string(), "{body}");
    let (status, body) = h.get("team-a", "/api/v1/status/flags").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"].is_object(), "{body}");
    let (status, body) = h.get("team-a", "/api/v1/status/runtimeinfo").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["data"]["goroutineCount"].as_u64().unwrap() >= 1,
        "{body}"
    );
    assert!(body["data"]["startTime"].is_string(), "{body}");
    // Like every other API call, they need a tenant.
    let request = Request::get("/api/v1/status/config")
        .body(Body::empty())
        .unwrap();
    let (status, body) = h.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

/// Ingesters that fail or hang, for the error paths.
#[derive(Debug)]
struct BrokenIngesters(Option<ServiceError>);

#[async_trait::async_trait]
impl IngesterQuery for BrokenIngesters {
    async fn query_stream(
        &self,
        _: &str,
        _: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        self.fail().await
    }
    async fn label_names(
        &self,
        _: &str,
        _: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        self.fail().await
    }
    async fn label_values(
        &self,
        _: &str,
        _: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        self.fail().await
    }
    async fn series(&self, _: &str, _: SeriesRequest) -> Result<Vec<Labels>, ServiceError> {
        self.fail().await
    }
}

impl BrokenIngesters {
    async fn fail<T>(&self) -> Result<T, ServiceError> {
        match &self.0 {
            Some(e) => Err(e.clone()),
            None => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                Err(ServiceError::internal("woke up"))
            }
        }
    }
}

fn broken(error: Option<ServiceError>) -> Harness {
    let config = QuerierConfig {
        timeout: strata_model::ConfigDuration(std::time::Duration::from_millis(50)),
        ..QuerierConfig::default()
    };
    let querier = Querier::new(config, Arc::new(BrokenIngesters(error))).unwrap();
    Harness {
        app: router(Arc::new(querier), tenant_from_header(), Arc::default()),
        fake: Arc::default(),
    }
}

#[tokio::test]
async fn storage_errors_keep_their_status() {
    let h = broken(Some(ServiceError::unavailable(
        "ingester 10.0.0.1:9095: connection refused",
    )));
    let (status, body) = h.get("team-a", "/api/v1/labels").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"status": "error", "errorType": "unavailable", "error": "ingester 10.0.0.1:9095: connection refused"})
    );

    // Our own failures get a generic message; the details go to the log.
    let h = broken(Some(ServiceError::internal(
        "chunk 7 of series x is corrupt",
    )));
    let (status, body) = h.get("team-a", "/api/v1/series?match[]=up").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["errorType"], "internal");
    assert!(!body["error"].as_str().unwrap().contains("corrupt"));
}

#[tokio::test]
async fn slow_storage_times_out() {
    let h = broken(None);
    let (status, body) = h.get("team-a", "/api/v1/label/job/values").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errorType"], "timeout");
}

#[tokio::test]
async fn a_query_over_the_tenants_series_limit_is_an_execution_error() {
    let overrides = Arc::new(strata_limits::Overrides::new(Default::default()));
    overrides.replace_tenant_overrides(HashMap::from([(
        "team-a".to_string(),
        strata_limits::Limits {
            max_fetched_series_per_query: 2,
            ..Default::default()
        },
    )]));
    let h = harness_with(|q| q.with_overrides(overrides));
    // Two series: at the limit, fine.
    let (status, _) = h
        .get("team-a", "/api/v1/query?query=count(up)&time=100")
        .await;
    assert_eq!(status, StatusCode::OK);
    // Three distinct series over the query's selectors: over it.
    let (status, body) = h
        .get(
            "team-a",
            "/api/v1/query?query=count(up)%2Bcount(process_start_time_seconds)&time=100",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errorType"], "execution");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("limit: 2 series, max_fetched_series_per_query"),
        "{message}"
    );
    let (status, body) = h
        .get("team-a", "/api/v1/series?match[]=%7Bjob%3D~%22.%2B%22%7D")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Other tenants have the default: no limit.
    let (status, _) = h
        .get("team-b", "/api/v1/series?match[]=%7Bjob%3D~%22.%2B%22%7D")
        .await;
    assert_eq!(status, StatusCode::OK);
}
