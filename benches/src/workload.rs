//! Realistic series: 100 metric names, each series with 8 Kubernetes-style
//! labels besides `__name__`, counters that grow at a per-series rate and gauges
//! that wander around a per-series level.
//!
//! A series keeps its labels only as pre-encoded protobuf bytes: a request body
//! is built by copying them and appending one encoded sample, so the generator
//! spends well under a microsecond per sample and never limits the target.

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
const REGIONS: [&str; 3] = ["eu-west-1", "us-east-1", "ap-south-1"];

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
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How a series' value moves from one scrape to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Grows by `rate` per second (±20 %), in whole units.
    Counter { rate: f64 },
    /// Grows by `rate` per second (±20 %), fractional (the `*_seconds_total` family).
    SecondsCounter { rate: f64 },
    /// Wanders ±2 % around `level`, rounded to whole units for byte and count gauges.
    Gauge { level: f64, whole: bool },
    /// Never changes (`up`, `kube_pod_status_ready`).
    Constant,
}

/// One generated series: its labels as encoded `prometheus.Label` fields of a
/// `TimeSeries` message, and its current value.
#[derive(Debug, Clone)]
pub(crate) struct GenSeries {
    encoded_labels: Vec<u8>,
    kind: Kind,
    value: f64,
}

/// The labels of the `id`-th series of a workload (sorted by name). Series
/// `id` is metric `id % names.len()` of scrape target `id / names.len()`;
/// `generation` changes the pod, so a churned series is a new series.
pub(crate) fn series_labels(
    names: &[(String, bool)],
    id: usize,
    generation: u32,
) -> Vec<(&'static str, String)> {
    let (name, _) = &names[id % names.len()];
    let target = id / names.len();
    let job = JOBS[target % JOBS.len()];
    vec![
        ("__name__", name.clone()),
        ("container", CONTAINERS[target % CONTAINERS.len()].into()),
        (
            "instance",
            format!(
                "10.{}.{}.{}:9100",
                (target >> 16) & 255,
                (target >> 8) & 255,
                target & 255
            ),
        ),
        ("job", job.into()),
        ("namespace", NAMESPACES[target % NAMESPACES.len()].into()),
        ("node", format!("node-{}", target % 500)),
        ("pod", format!("{job}-{target:x}-{generation}")),
        ("region", REGIONS[target % REGIONS.len()].into()),
        ("service", format!("{job}-svc")),
    ]
}

/// The `id`-th series of a workload (see [`series_labels`]).
pub(crate) fn make_series(
    names: &[(String, bool)],
    id: usize,
    generation: u32,
    rng: &mut Rng,
) -> GenSeries {
    let (name, counter) = &names[id % names.len()];
    let labels = series_labels(names, id, generation);
    let mut encoded_labels = Vec::with_capacity(256);
    let mut label = Vec::with_capacity(96);
    for (n, v) in &labels {
        label.clear();
        put_bytes_field(&mut label, 0x0a, n.as_bytes());
        put_bytes_field(&mut label, 0x12, v.as_bytes());
        put_bytes_field(&mut encoded_labels, 0x0a, &label);
    }
    // Rates spread log-uniformly over 0.01–1000 per second; levels likewise.
    let spread = |rng: &mut Rng, lo: f64, hi: f64| lo * (hi / lo).powf(rng.unit());
    let (kind, value) = if *counter {
        let rate = spread(rng, 0.01, 1000.0);
        let start = (rate * spread(rng, 60.0, 86_400.0)).round();
        if name.contains("_seconds_") {
            (Kind::SecondsCounter { rate: rate / 100.0 }, start / 100.0)
        } else {
            (Kind::Counter { rate }, start)
        }
    } else if name == "up" || name == "kube_pod_status_ready" {
        (Kind::Constant, 1.0)
    } else if name.ends_with("_bytes") {
        let level = spread(rng, 1e6, 1e10).round();
        (Kind::Gauge { level, whole: true }, level)
    } else {
        let level = spread(rng, 1.0, 1000.0);
        let whole = !name.starts_with("node_load");
        let level = if whole { level.round() } else { level };
        (Kind::Gauge { level, whole }, level)
    };
    GenSeries {
        encoded_labels,
        kind,
        value,
    }
}

impl GenSeries {
    /// Advances the value by one scrape interval and appends this series with
    /// that one sample, as field 1 (`timeseries`) of a `WriteRequest`, to `out`.
    pub(crate) fn encode_next(
        &mut self,
        timestamp_ms: i64,
        interval_s: f64,
        rng: &mut Rng,
        out: &mut Vec<u8>,
    ) {
        let jitter = 0.8 + 0.4 * rng.unit();
        self.value = match self.kind {
            Kind::Counter { rate } => self.value + (rate * interval_s * jitter).round(),
            Kind::SecondsCounter { rate } => self.value + rate * interval_s * jitter,
            Kind::Gauge { level, whole } => {
                let v = (self.value + level * 0.02 * (rng.unit() - 0.5)).max(0.0);
                if whole {
                    v.round()
                } else {
                    v
                }
            }
            Kind::Constant => self.value,
        };
        // Sample { value = 1 (fixed64), timestamp = 2 (varint) }.
        let mut sample = [0u8; 20];
        sample[0] = 0x09;
        sample[1..9].copy_from_slice(&self.value.to_le_bytes());
        sample[9] = 0x10;
        let mut len = 10;
        let mut ts = timestamp_ms as u64;
        while ts >= 0x80 {
            sample[len] = (ts as u8) | 0x80;
            ts >>= 7;
            len += 1;
        }
        sample[len] = ts as u8;
        len += 1;
        let sample = &sample[..len];
        // TimeSeries { labels = 1 (already encoded), samples = 2 }.
        let body_len = self.encoded_labels.len() + 1 + varint_len(len as u64) + len;
        out.push(0x0a);
        put_varint(out, body_len as u64);
        out.extend_from_slice(&self.encoded_labels);
        put_bytes_field(out, 0x12, sample);
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: `tag` (field number << 3 | 2), length, bytes.
fn put_bytes_field(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}
