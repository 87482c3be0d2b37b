//! The Helm chart's `distributed` mode is a working cluster, not only valid YAML:
//! render it with `helm template` (etcd and S3 pointed at a real etcd and a real
//! s3s-fs on loopback), then start every Strata workload it describes as local
//! processes — each replica with the container's own args, the rendered
//! ConfigMap as its config file and the env the pod would get — and push through
//! a distributor, query through a querier, and flush blocks to S3.
//!
//! What Kubernetes would provide is substituted, nothing else: the pod name and
//! IP in the environment, the mount paths (`/etc/strata`, `/data`), and distinct
//! ports, since all pods share one host here.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::Deserialize as _;
use serde_json::Value;
use strata_integration::{
    encode_write_request, eventually, free_port, get_json, now_ms, push_raw, require_program,
    strata_bin, write_request, Etcd, Process, S3Server,
};

const TENANT: &str = "chart-test";

/// A workload (Deployment or StatefulSet) the chart renders for Strata.
struct Workload {
    name: String,
    replicas: usize,
    args: Vec<String>,
    /// Env var names the container gets; values are filled in per pod.
    env: Vec<String>,
}

struct Pod {
    workload: String,
    process: Process,
    http_port: u16,
}

impl Pod {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }
}

fn render_chart(etcd: &Etcd, s3: &S3Server) -> Vec<Value> {
    let helm = require_program("helm");
    let chart = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("helm/strata");
    let sets = [
        "mode=distributed".to_string(),
        "etcd.enabled=false".to_string(),
        format!("etcd.externalEndpoints={{{}}}", etcd.endpoint()),
        "objectStorage.enabled=true".to_string(),
        format!("objectStorage.s3.endpoint=127.0.0.1:{}", s3.port),
        format!("objectStorage.s3.bucket={}", S3Server::BUCKET),
        "objectStorage.s3.region=us-east-1".to_string(),
        "objectStorage.s3.insecure=true".to_string(),
        "objectStorage.s3.credentialsSecret=strata-s3".to_string(),
        "logFormat=logfmt".to_string(),
    ];
    let mut cmd = Command::new(helm);
    cmd.args([
        "template",
        "strata",
        chart.to_str().unwrap(),
        "--namespace",
        "metrics",
    ]);
    for set in &sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            let json = serde_json::to_value(value).unwrap();
            (!json.is_null()).then_some(json)
        })
        .collect()
}

fn strata_workloads(manifests: &[Value]) -> Vec<Workload> {
    manifests
        .iter()
        .filter(|m| m["kind"] == "Deployment" || m["kind"] == "StatefulSet")
        .filter_map(|m| {
            let containers = m["spec"]["template"]["spec"]["containers"].as_array()?;
            let strata = containers.iter().find(|c| c["name"] == "strata")?;
            let strings = |v: &Value, key: &str| -> Vec<String> {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| {
                                if key.is_empty() {
                                    x.as_str()
                                } else {
                                    x[key].as_str()
                                }
                            })
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            Some(Workload {
                name: m["metadata"]["name"].as_str()?.to_string(),
                replicas: m["spec"]["replicas"].as_u64()? as usize,
                args: strings(&strata["args"], ""),
                env: strings(&strata["env"], "name"),
            })
        })
        .collect()
}

fn start_pod(workload: &Workload, index: usize, config_file: &Path) -> Pod {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let pod_name = format!("{}-{index}", workload.name);
    let (http_port, grpc_port) = (free_port(), free_port());
    let mut args: Vec<String> = workload
        .args
        .iter()
        .map(|a| a.replace("/etc/strata/strata.yaml", config_file.to_str().unwrap()))
        .collect();
    // Per-pod values Kubernetes would make unique (the pod's own IP and volume).
    args.extend([
        "-server.http_listen_address=127.0.0.1".to_string(),
        format!("-server.http_listen_port={http_port}"),
        "-server.grpc_listen_address=127.0.0.1".to_string(),
        format!("-server.grpc_listen_port={grpc_port}"),
        format!("-ingester.ring.instance_addr=127.0.0.1:{grpc_port}"),
        format!(
            "-ingester.ring.tokens_file_path={}",
            data.join("tokens").display()
        ),
        format!("-blocks_storage.tsdb.dir={}", data.join("tsdb").display()),
    ]);
    let env: Vec<(String, String)> = workload
        .env
        .iter()
        .map(|name| {
            let value = match name.as_str() {
                "POD_NAME" => pod_name.clone(),
                "POD_IP" => "127.0.0.1".to_string(),
                "AWS_ACCESS_KEY_ID" => S3Server::ACCESS_KEY.to_string(),
                "AWS_SECRET_ACCESS_KEY" => S3Server::SECRET_KEY.to_string(),
                other => panic!("the chart sets env {other}: teach this test its value"),
            };
            (name.clone(), value)
        })
        .collect();
    Pod {
        workload: workload.name.clone(),
        process: Process::spawn_with_env(&pod_name, &strata_bin(), &args, &env, dir),
        http_port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distributed_chart_config_runs_as_a_cluster() {
    let etcd = Etcd::start().await;
    let s3 = S3Server::start().await;
    let manifests = render_chart(&etcd, &s3);

    let config = manifests
        .iter()
        .find(|m| m["kind"] == "ConfigMap")
        .and_then(|m| m["data"]["strata.yaml"].as_str())
        .expect("the chart renders a ConfigMap with strata.yaml")
        .to_string();
    let config_dir = tempfile::tempdir().unwrap();
    let config_file = config_dir.path().join("strata.yaml");
    std::fs::write(&config_file, &config).unwrap();

    let workloads = strata_workloads(&manifests);
    let targets: Vec<String> = workloads
        .iter()
        .filter_map(|w| w.args.iter().find_map(|a| a.strip_prefix("-target=")))
        .map(String::from)
        .collect();
    for needed in ["distributor", "ingester", "querier"] {
        assert!(
            targets.iter().any(|t| t == needed),
            "distributed mode renders no {needed}: {targets:?}"
        );
    }

    let mut pods = Vec::new();
    for workload in &workloads {
        for i in 0..workload.replicas {
            pods.push(start_pod(workload, i, &config_file));
        }
    }
    for pod in &mut pods {
        let url = pod.url("/ready");
        pod.process.wait_ready(&url, Duration::from_secs(60)).await;
    }
    let of = |suffix: &str| -> Vec<&Pod> {
        pods.iter()
            .filter(|p| p.workload.ends_with(suffix))
            .collect()
    };
    let (distributors, queriers, ingesters) = (of("-distributor"), of("-querier"), of("-ingester"));
    assert_eq!(ingesters.len(), 3, "the chart's default: 3 ingesters");

    // Every distributor takes pushes; 2xx means a quorum of ingesters has them.
    // Ending 2 minutes ago: a flush leaves the last minute in the heads.
    let start = (now_ms() - 210_000) / 1000 * 1000;
    let mut pushed = Vec::new();
    for (d, distributor) in distributors.iter().enumerate() {
        let series = format!("d{d}");
        let samples: Vec<(i64, f64)> = (0..10)
            .map(|i| (start + i * 10_000, (d * 100 + i as usize) as f64))
            .collect();
        let labels = [("__name__", "chart_test"), ("series", series.as_str())];
        let body = encode_write_request(&write_request(&[(&labels[..], &samples[..])]));
        let url = distributor.url("/api/v1/push");
        let (status, msg) = eventually(
            "a push answered 200 (the ring has 3 ACTIVE ingesters)",
            Duration::from_secs(60),
            || {
                let (url, body) = (url.clone(), body.clone());
                async move {
                    let (status, msg) = push_raw(&url, Some(TENANT), body).await;
                    (status == 200).then_some((status, msg))
                }
            },
        )
        .await;
        assert_eq!(status, 200, "{msg}");
        pushed.push((series, samples));
    }

    // Every querier answers with exactly what was pushed.
    let end = start + 100_000;
    for querier in &queriers {
        let url = querier.url(&format!(
            "/prometheus/api/v1/query?query=chart_test%5B5m%5D&time={}",
            end / 1000
        ));
        let (status, body) = get_json(&url, Some(TENANT)).await;
        assert_eq!(status, 200, "{body}");
        let mut got: Vec<(String, Vec<(i64, f64)>)> = body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let series = r["metric"]["series"].as_str().unwrap().to_string();
                let samples = r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| {
                        (
                            (v[0].as_f64().unwrap() * 1000.0).round() as i64,
                            v[1].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect();
                (series, samples)
            })
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, pushed, "querier {}", querier.workload);
    }

    // Each ingester flushes its head as a block to S3: one copy per replica.
    let client = reqwest::Client::new();
    for ingester in &ingesters {
        let resp = client
            .post(ingester.url("/ingester/flush"))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status().is_success(),
            "flush: {}\n{}",
            resp.status(),
            ingester.process.logs()
        );
    }
    let tenant_dir = s3.bucket_dir().join(TENANT);
    let blocks = eventually(
        "3 blocks (one per ingester) in S3",
        Duration::from_secs(60),
        || {
            let tenant_dir = tenant_dir.clone();
            async move {
                let blocks: Vec<_> = std::fs::read_dir(&tenant_dir)
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.join("meta.json").is_file())
                    .collect();
                (blocks.len() >= 3).then_some(blocks)
            }
        },
    )
    .await;
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    drop(pods);
}
