//! A Prometheus HA pair, for real: two Debian Prometheus 2.42 processes with
//! the same targets and `external_labels: {cluster: c1, __replica__: r1|r2}`
//! remote-write to two different distributors, which share the HA tracker's
//! election through etcd. Strata must store one copy of each series (no
//! `__replica__`), fail over to the other replica when the elected one is
//! killed with SIGKILL, with a gap no longer than the failover timeout plus
//! a scrape interval (and the update timeout the elected replica's last
//! refresh may lag by), and `sum(up)` must never double.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use strata_integration::{eventually, get_json, now_ms, push_raw, Etcd, Prometheus, Strata};

const TENANT: &str = "ha-team";
const FAILOVER_S: i64 = 5;
const UPDATE_S: i64 = 1;
const SCRAPE_S: i64 = 1;

async fn start(target: &str, etcd: &Etcd) -> Strata {
    let mut flags = etcd.ring_flags(1, 64);
    flags.extend([
        format!("-target={target}"),
        "-distributor.ha_tracker.enable_ha_tracker=true".to_string(),
        format!("-distributor.ha_tracker.ha_tracker_update_timeout={UPDATE_S}s"),
        "-distributor.ha_tracker.ha_tracker_update_timeout_jitter_max=0s".to_string(),
        format!("-distributor.ha_tracker.ha_tracker_failover_timeout={FAILOVER_S}s"),
        "-limits.accept_ha_samples=true".to_string(),
    ]);
    Strata::start_with_flags(&flags).await
}

/// A Prometheus of the pair: scrapes the three Strata processes (the same
/// targets for both replicas) every second and pushes to `distributor`.
async fn replica(name: &str, distributor: &Strata, targets: &[u16]) -> Prometheus {
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let config = format!(
        r#"global:
  scrape_interval: {SCRAPE_S}s
  external_labels: {{cluster: c1, __replica__: {name}}}
scrape_configs:
  - job_name: strata
    static_configs: [{{targets: [{}]}}]
remote_write:
  - url: {}
    basic_auth: {{username: {TENANT}, password: unused}}
    queue_config: {{batch_send_deadline: 1s, max_backoff: 1s}}
"#,
        targets.join(", "),
        distributor.url("/api/v1/push"),
    );
    Prometheus::start(&config, &[]).await
}

/// The clusters on a distributor's HA tracker page: (cluster, replica).
async fn elected(distributor: &Strata) -> Vec<(String, String)> {
    let response = reqwest::Client::new()
        .get(distributor.url("/distributor/ha_tracker"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    body["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["tenant"] == TENANT)
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().to_string(),
                c["replica"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn result(body: &serde_json::Value) -> Vec<serde_json::Value> {
    body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_is_stored_once_and_fails_over_when_the_elected_replica_dies() {
    let etcd = Etcd::start().await;
    let backend = start("ingester,querier", &etcd).await;
    let distributor_a = start("distributor", &etcd).await;
    let distributor_b = start("distributor", &etcd).await;
    let test_start_s = now_ms() / 1000;
    let targets = [
        backend.http_port,
        distributor_a.http_port,
        distributor_b.http_port,
    ];
    let mut r1 = replica("r1", &distributor_a, &targets).await;
    let mut r2 = replica("r2", &distributor_b, &targets).await;

    // Both distributors show the same election, read from etcd.
    let first = eventually("an elected replica", Duration::from_secs(30), || async {
        let a = elected(&distributor_a).await;
        (a.len() == 1 && a == elected(&distributor_b).await).then(|| a[0].1.clone())
    })
    .await;
    // Each target's `up` is stored once, with the cluster label and without
    // the replica label.
    let query = backend.url("/prometheus/api/v1/query?query=up");
    let series = eventually("three up series", Duration::from_secs(30), || async {
        let (_, body) = get_json(&query, Some(TENANT)).await;
        let series = result(&body);
        (series.len() == 3).then_some(series)
    })
    .await;
    for s in &series {
        assert_eq!(s["metric"]["cluster"], "c1", "{s}");
        assert!(s["metric"].get("__replica__").is_none(), "{s}");
    }
    let deduped = |d: &Strata| {
        let d = d.url("/metrics");
        async move {
            let text = reqwest::get(d).await.unwrap().text().await.unwrap();
            text.lines()
                .filter(|l| l.starts_with("strata_distributor_deduped_samples_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    let (elected_distributor, other_distributor) = if first == "r1" {
        (&distributor_a, &distributor_b)
    } else {
        (&distributor_b, &distributor_a)
    };
    eventually(
        "the other replica's samples dropped",
        Duration::from_secs(20),
        || async { (deduped(other_distributor).await > 0.0).then_some(()) },
    )
    .await;
    assert_eq!(deduped(elected_distributor).await, 0.0);

    // Let both replicas run for a while, then kill the elected one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let killed_at = now_ms();
    let (dead, survivor) = if first == "r1" {
        (&mut r1, "r2")
    } else {
        (&mut r2, "r1")
    };
    std::process::Command::new("kill")
        .args(["-KILL", &dead.process.pid().to_string()])
        .status()
        .unwrap();
    eventually(
        "the surviving replica elected",
        Duration::from_secs(FAILOVER_S as u64 + 20),
        || async {
            (elected(&distributor_a).await == [("c1".to_string(), survivor.to_string())])
                .then_some(())
        },
    )
    .await;
    let failed_over_ms = now_ms() - killed_at;
    // Let the survivor push for a while after the failover.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let end_s = now_ms() / 1000;

    // The stored samples of one target: the longest gap between two
    // consecutive ones is the failover's.
    let raw = backend.url(&format!(
        "/prometheus/api/v1/query?query=up%7Binstance%3D%27127.0.0.1%3A{}%27%7D%5B10m%5D&time={end_s}",
        backend.http_port
    ));
    let (_, body) = get_json(&raw, Some(TENANT)).await;
    let series = result(&body);
    assert_eq!(series.len(), 1, "{body}");
    let times: Vec<f64> = series[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_f64().unwrap())
        .collect();
    let longest_gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(0.0_f64, f64::max);
    let allowed = (FAILOVER_S + SCRAPE_S + UPDATE_S + 1) as f64;
    assert!(
        longest_gap <= allowed,
        "a gap of {longest_gap} s in the stored samples; allowed: failover {FAILOVER_S} s + \
         scrape {SCRAPE_S} s + update {UPDATE_S} s + 1 s of remote-write batching"
    );
    let last = times.last().copied().unwrap_or(0.0);
    assert!(
        last * 1000.0 > (killed_at + failed_over_ms) as f64,
        "nothing stored after the failover ({last})"
    );

    // `sum(up)` is at most the three targets at every step of the test.
    let range = backend.url(&format!(
        "/prometheus/api/v1/query_range?query=sum(up)&start={test_start_s}&end={end_s}&step=1"
    ));
    let (_, body) = get_json(&range, Some(TENANT)).await;
    let sums: Vec<f64> = result(&body)
        .first()
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| v[1].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(sums.len() > 10, "{body}");
    assert!(
        sums.iter().all(|&s| s <= 3.0),
        "sum(up) doubled at some step: {sums:?}"
    );
    eprintln!(
        "failover seen {failed_over_ms} ms after the kill; longest gap {longest_gap} s; {} steps of sum(up) checked",
        sums.len()
    );

    // A non-elected replica's push: 202, nothing stored.
    let body = strata_integration::one_sample_per_series_body(
        "from_the_dead_replica",
        &["x".to_string()],
        (now_ms(), 1.0),
    );
    let mut request = strata_proto::prometheus::WriteRequest::default();
    let decoded = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    prost::Message::merge(&mut request, decoded.as_slice()).unwrap();
    for series in &mut request.timeseries {
        for (name, value) in [("cluster", "c1"), ("__replica__", first.as_str())] {
            series.labels.push(strata_proto::prometheus::Label {
                name: name.into(),
                value: value.into(),
            });
        }
        series.labels.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let (status, message) = push_raw(
        &distributor_a.url("/api/v1/push"),
        Some(TENANT),
        strata_integration::encode_write_request(&request),
    )
    .await;
    assert_eq!(status, 202, "{message}");
    assert!(message.contains("replicas did not match"), "{message}");
    let (_, body) = get_json(
        &backend.url("/prometheus/api/v1/query?query=from_the_dead_replica"),
        Some(TENANT),
    )
    .await;
    assert!(result(&body).is_empty(), "{body}");
}
