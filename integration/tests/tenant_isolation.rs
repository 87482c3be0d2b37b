//! Data pushed as one tenant is invisible to another in every read endpoint.

use strata_integration::{encode_write_request, get_json, now_ms, push_raw, write_request, Strata};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_data() {
    let strata = Strata::start(&["-target=all"]).await;
    let now = now_ms();
    let body = encode_write_request(&write_request(&[(
        &[("__name__", "secret_metric"), ("owner", "a")],
        &[(now - 1000, 42.0)],
    )]));
    let (status, msg) = push_raw(&strata.url("/api/v1/push"), Some("tenant-a"), body).await;
    assert_eq!(status, 200, "{msg}");

    let t = now as f64 / 1000.0;
    let endpoints = [
        format!("/api/v1/query?query=secret_metric&time={t}"),
        format!("/prometheus/api/v1/query?query=secret_metric&time={t}"),
        format!(
            "/api/v1/query_range?query=secret_metric&start={}&end={t}&step=1",
            t - 60.0
        ),
        "/api/v1/series?match[]=secret_metric".to_string(),
        "/api/v1/labels".to_string(),
        "/api/v1/label/owner/values".to_string(),
        "/api/v1/label/__name__/values".to_string(),
        "/prometheus/api/v1/series?match[]={owner=\"a\"}".to_string(),
    ];
    for path in &endpoints {
        let (status, a) = get_json(&strata.url(path), Some("tenant-a")).await;
        assert_eq!(status, 200, "{path}: {a}");
        let a_data = a["data"].get("result").unwrap_or(&a["data"]).clone();
        assert!(
            a_data.as_array().is_some_and(|v| !v.is_empty()),
            "{path}: tenant-a must see its data: {a}"
        );
        assert!(
            a.to_string().contains("secret_metric")
                || a.to_string().contains("owner")
                || a.to_string().contains("\"a\""),
            "{path}: {a}"
        );

        let (status, b) = get_json(&strata.url(path), Some("tenant-b")).await;
        assert_eq!(status, 200, "{path}: {b}");
        let b_data = b["data"].get("result").unwrap_or(&b["data"]).clone();
        assert_eq!(
            b_data,
            serde_json::json!([]),
            "{path}: tenant-b sees tenant-a's data: {b}"
        );
    }
}
