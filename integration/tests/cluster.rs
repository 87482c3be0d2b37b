//! Strata as separate processes on one etcd ring: three ingesters (RF=3), a
//! distributor and a querier. Every series lands on three ingesters; with one
//! ingester killed (-9) pushes still succeed (quorum 2 of 3) and queries still
//! return every acknowledged sample.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use strata_integration::{
    encode_write_request, eventually, get_json, now_ms, push_raw, write_request, Etcd, Strata,
};

const SERIES: usize = 40;

fn ring_flags(etcd: &Etcd) -> Vec<String> {
    vec![
        "-ingester.ring.kvstore.store=etcd".to_string(),
        format!("-ingester.ring.kvstore.etcd.endpoints={}", etcd.endpoint()),
        "-ingester.ring.replication_factor=3".to_string(),
        "-ingester.ring.heartbeat_period=1s".to_string(),
        "-ingester.ring.num_tokens=64".to_string(),
    ]
}

async fn start(target: &str, id: Option<&str>, etcd: &Etcd) -> Strata {
    let mut args = ring_flags(etcd);
    args.push(format!("-target={target}"));
    if let Some(id) = id {
        args.push(format!("-ingester.ring.instance_id={id}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Strata::start(&args).await
}

/// Pushes one sample at `ts` for every test series; the HTTP status.
async fn push_round(distributor: &Strata, ts: i64, value: f64) -> (u16, String) {
    let labels: Vec<Vec<(String, String)>> = (0..SERIES)
        .map(|i| {
            vec![
                ("__name__".to_string(), "cluster_test_total".to_string()),
                ("series".to_string(), format!("s{i:03}")),
            ]
        })
        .collect();
    let borrowed: Vec<Vec<(&str, &str)>> = labels
        .iter()
        .map(|l| l.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect())
        .collect();
    let samples = [(ts, value)];
    let series: Vec<_> = borrowed
        .iter()
        .map(|l| (l.as_slice(), &samples[..]))
        .collect();
    let body = encode_write_request(&write_request(&series));
    push_raw(&distributor.url("/api/v1/push"), Some("team-a"), body).await
}

async fn memory_series(ingester: &Strata) -> f64 {
    let text = reqwest::get(ingester.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("strata_ingester_memory_series{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_ingesters_replicate_and_survive_one_loss() {
    let etcd = Etcd::start().await;
    let mut ingesters = vec![
        start("ingester", Some("ingester-1"), &etcd).await,
        start("ingester", Some("ingester-2"), &etcd).await,
        start("ingester", Some("ingester-3"), &etcd).await,
    ];
    let distributor = start("distributor", None, &etcd).await;
    let querier = start("querier", None, &etcd).await;

    // Acknowledged rounds: (timestamp, value).
    let mut acknowledged = Vec::new();
    let start_ms = now_ms() - 60_000;
    let first = eventually(
        "the distributor sees 3 ingesters",
        Duration::from_secs(30),
        || {
            let distributor = &distributor;
            async move {
                let (status, msg) = push_round(distributor, start_ms, 0.0).await;
                if status != 200 {
                    eprintln!("push not accepted yet: {status} {msg}");
                }
                (status == 200).then_some(())
            }
        },
    )
    .await;
    let () = first;
    acknowledged.push((start_ms, 0.0));
    for round in 1..5 {
        let ts = start_ms + round * 1_000;
        let (status, msg) = push_round(&distributor, ts, round as f64).await;
        assert_eq!(status, 200, "round {round}: {msg}");
        acknowledged.push((ts, round as f64));
    }

    // Every series is held by all three ingesters (RF=3 over 3 instances).
    for ingester in &ingesters {
        assert_eq!(memory_series(ingester).await, SERIES as f64);
    }

    // kill -9 one ingester; the ring still lists it as ACTIVE (its heartbeat
    // is fresh), so writes to it fail and the quorum of two carries them.
    drop(ingesters.remove(0));
    for round in 5..10 {
        let ts = start_ms + round * 1_000;
        let (status, msg) = push_round(&distributor, ts, round as f64).await;
        assert_eq!(status, 200, "round {round} with one ingester down: {msg}");
        acknowledged.push((ts, round as f64));
    }

    // The querier returns every acknowledged sample of every series, once.
    let last = acknowledged.last().unwrap().0;
    let query = format!(
        "/prometheus/api/v1/query_range?query=cluster_test_total&start={}&end={}&step=1",
        start_ms as f64 / 1000.0,
        last as f64 / 1000.0
    );
    let (status, body) = get_json(&querier.url(&query), Some("team-a")).await;
    assert_eq!(status, 200, "{body}");
    let result = body["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), SERIES, "{body}");
    for series in result {
        let values: Vec<(i64, f64)> = series["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let t = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                let x: f64 = v[1].as_str().unwrap().parse().unwrap();
                (t, x)
            })
            .collect();
        assert_eq!(values, acknowledged, "series {}", series["metric"]);
    }

    // A second ingester down breaks the write quorum: 5xx so the client retries.
    drop(ingesters.remove(0));
    let (status, msg) = push_round(&distributor, last + 1_000, 99.0).await;
    assert!(status >= 500, "with 2 of 3 ingesters down: {status} {msg}");
    assert!(msg.contains("quorum"), "{msg}");
}
