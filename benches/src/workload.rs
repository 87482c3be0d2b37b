//! Realistic series: ~100 metric names, each series with 8 Kubernetes-style
//! labels, counters that grow plausibly and gauges that wander.

use strata_proto::prometheus::{Label, Sample, TimeSeries};

/// Metric names: counters end in `_total`, the rest are gauges. The
/// `go_memstats_*` and `*_total` families are what the standard queries select.
pub(crate) fn metric_names() -> Vec<(String, bool)> {
    let counters = [
        "http_requests_total",
        "http_request_errors_total",
        "grpc_server_handled_total",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_cpu_seconds_total",
        "process_cpu_seconds_total",
        "container_cpu_usage_seconds_total",
        "container_network_receive_packets_total",
        "kube_pod_container_status_restarts_total",
        "go_gc_cycles_total",
        "prometheus_http_requests_total",
        "apiserver_request_total",
        "etcd_disk_wal_fsync_total",
        "node_disk_reads_completed_total",
        "node_disk_writes_completed_total",
        "node_context_switches_total",
        "node_intr_total",
        "coredns_dns_requests_total",
        "nginx_ingress_controller_requests_total",
        "rest_client_requests_total",
        "workqueue_adds_total",
        "kubelet_runtime_operations_total",
        "container_fs_reads_total",
        "container_fs_writes_total",
        "node_vmstat_pgfault_total",
        "scheduler_schedule_attempts_total",
        "envoy_cluster_upstream_rq_total",
        "jvm_gc_collection_seconds_count_total",
        "kafka_messages_in_total",
    ];
    let mut names: Vec<(String, bool)> = counters.iter().map(|n| (n.to_string(), true)).collect();
    for i in 0..30 {
        names.push((format!("app_events_{i}_total"), true));
    }
    let memstats = [
        "alloc_bytes",
        "heap_alloc_bytes",
        "heap_idle_bytes",
        "heap_inuse_bytes",
        "heap_objects",
        "heap_released_bytes",
        "heap_sys_bytes",
        "mcache_inuse_bytes",
        "mspan_inuse_bytes",
        "next_gc_bytes",
        "stack_inuse_bytes",
        "sys_bytes",
    ];
    names.extend(memstats.iter().map(|n| (format!("go_memstats_{n}"), false)));
    let gauges = [
        "up",
        "node_memory_MemAvailable_bytes",
        "node_load1",
        "node_filesystem_avail_bytes",
        "container_memory_working_set_bytes",
        "kube_pod_status_ready",
        "go_goroutines",
        "process_resident_memory_bytes",
        "process_open_fds",
        "http_inflight_requests",
    ];
    names.extend(gauges.iter().map(|n| (n.to_string(), false)));
    for i in 0..18 {
        names.push((format!("app_queue_{i}_depth"), false));
    }
    names
}

const NAMESPACES: [&str; 12] = [
    "default",
    "kube-system",
    "monitoring",
    "payments",
    "checkout",
    "search",
    "ads",
    "auth",
    "billing",
    "frontend",
    "data",
    "ml",
];
const JOBS: [&str; 8] = [
    "kubelet",
    "node-exporter",
    "api",
    "worker",
    "gateway",
    "db-proxy",
    "cache",
    "scheduler",
];
const CONTAINERS: [&str; 6] = ["app", "sidecar", "envoy", "init", "exporter", "logger"];

/// One generated series: its labels (sorted by name) and its current value.
#[derive(Debug, Clone)]
pub(crate) struct GenSeries {
    pub(crate) labels: Vec<Label>,
    pub(crate) counter: bool,
    pub(crate) value: f64,
}

/// Deterministic xorshift so runs are reproducible without a rand dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The `id`-th series of a workload; `generation` changes the pod so churned
/// series are new series.
pub(crate) fn make_series(
    names: &[(String, bool)],
    id: usize,
    generation: u32,
    rng: &mut Rng,
) -> GenSeries {
    let (name, counter) = &names[id % names.len()];
    let target = id / names.len();
    let pod = format!("{}-{:x}-{}", JOBS[target % JOBS.len()], target, generation);
    let mut labels = vec![
        Label {
            name: "__name__".into(),
            value: name.clone(),
        },
        Label {
            name: "container".into(),
            value: CONTAINERS[target % CONTAINERS.len()].into(),
        },
        Label {
            name: "instance".into(),
            value: format!(
                "10.{}.{}.{}:9100",
                (target >> 16) & 255,
                (target >> 8) & 255,
                target & 255
            ),
        },
        Label {
            name: "job".into(),
            value: JOBS[target % JOBS.len()].into(),
        },
        Label {
            name: "namespace".into(),
            value: NAMESPACES[target % NAMESPACES.len()].into(),
        },
        Label {
            name: "node".into(),
            value: format!("node-{}", target % 500),
        },
        Label {
            name: "pod".into(),
            value: pod,
        },
        Label {
            name: "region".into(),
            value: ["eu-west-1", "us-east-1", "ap-south-1"][target % 3].into(),
        },
    ];
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    let value = if *counter {
        (rng.unit() * 1e6).round()
    } else {
        rng.unit() * 100.0
    };
    GenSeries {
        labels,
        counter: *counter,
        value,
    }
}

impl GenSeries {
    /// Advances the value by one scrape interval and returns the sample.
    pub(crate) fn next_sample(&mut self, timestamp: i64, rng: &mut Rng) -> TimeSeries {
        if self.counter {
            self.value += (rng.unit() * 20.0).round();
        } else {
            self.value = (self.value + (rng.unit() - 0.5) * 4.0).max(0.0);
        }
        TimeSeries {
            labels: self.labels.clone(),
            samples: vec![Sample {
                value: self.value,
                timestamp,
            }],
            ..Default::default()
        }
    }
}
