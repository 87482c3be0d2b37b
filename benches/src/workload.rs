//! Realistic series: 100 metric names, each series with 8 Kubernetes-style
//! labels besides `__name__`, counters that grow at a per-series rate, gauges
//! that wander around a per-series level, and one classic histogram per scrape
//! target (`http_request_duration_seconds`: 12 `_bucket{le=...}` series, `_sum`
//! and `_count`).
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
    for i in 0..4 {
        names.push((format!("app_queue_{i}_depth"), false));
    }
    // A classic histogram: its series are counters (cumulative counts and sum).
    for _ in HISTOGRAM_LE {
        names.push((format!("{HISTOGRAM}_bucket"), true));
    }
    names.push((format!("{HISTOGRAM}_sum"), true));
    names.push((format!("{HISTOGRAM}_count"), true));
    names
}

/// The classic histogram every scrape target exposes.
pub(crate) const HISTOGRAM: &str = "http_request_duration_seconds";
/// Its bucket boundaries (Prometheus client libraries' defaults), in the order
/// of its `_bucket` names in [`metric_names`].
pub(crate) const HISTOGRAM_LE: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

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
    /// One series of the target's classic histogram: a bucket (`le` = the
    /// upper bound, infinite for `+Inf`), the `_count` (`le` infinite) or the
    /// `_sum`. All series of one target's histogram draw the same requests and
    /// latencies per round (see [`HistogramRound`]), so that buckets never
    /// decrease with `le` and `+Inf` equals `_count`.
    Histogram { target: u64, le: f64, sum: bool },
}

/// One generated series: its labels as encoded `prometheus.Label` fields of a
/// `TimeSeries` message, and its current value.
#[derive(Debug, Clone)]
pub(crate) struct GenSeries {
    encoded_labels: Vec<u8>,
    kind: Kind,
    value: f64,
    /// Rounds encoded so far (a histogram's increments depend on it).
    round: u64,
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
    let mut labels = vec![
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
    ];
    if let Some(le) = bucket_le(names, id) {
        labels.push(("le", le.to_string()));
    }
    labels.extend([
        ("namespace", NAMESPACES[target % NAMESPACES.len()].into()),
        ("node", format!("node-{}", target % 500)),
        ("pod", format!("{job}-{target:x}-{generation}")),
        ("region", REGIONS[target % REGIONS.len()].into()),
        ("service", format!("{job}-svc")),
    ]);
    labels
}

/// The `le` label of series `id` when it is a histogram bucket.
fn bucket_le(names: &[(String, bool)], id: usize) -> Option<&'static str> {
    let slot = id % names.len();
    if !names[slot].0.ends_with("_bucket") {
        return None;
    }
    let first = names.iter().position(|(n, _)| n.ends_with("_bucket"))?;
    HISTOGRAM_LE.get(slot - first).copied()
}

/// The `id`-th series of a workload (see [`series_labels`]).
pub(crate) fn make_series(
    names: &[(String, bool)],
    id: usize,
    generation: u32,
    rng: &mut Rng,
) -> GenSeries {
    make_series_with(names, id, generation, &[], rng)
}

/// [`make_series`] with `extra` labels besides its own (e.g. an HA pair's
/// `cluster` and `__replica__`, which Prometheus adds as external labels),
/// kept sorted by name as remote-write requires.
pub(crate) fn make_series_with(
    names: &[(String, bool)],
    id: usize,
    generation: u32,
    extra: &[(&'static str, String)],
    rng: &mut Rng,
) -> GenSeries {
    let (name, counter) = &names[id % names.len()];
    let mut labels = series_labels(names, id, generation);
    if !extra.is_empty() {
        labels.extend(extra.iter().cloned());
        labels.sort_by(|a, b| a.0.cmp(b.0));
    }
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
    let (kind, value) = if name.starts_with(HISTOGRAM) {
        let target = (id / names.len()) as u64;
        let le = match bucket_le(names, id) {
            Some(le) => le.parse().unwrap_or(f64::INFINITY),
            None => f64::INFINITY,
        };
        let sum = name.ends_with("_sum");
        let h = HistogramRound::start(target);
        let start = if sum { h.sum() } else { h.count_le(le) };
        (Kind::Histogram { target, le, sum }, start)
    } else if *counter {
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
        round: 0,
    }
}

/// splitmix64: a hash of one integer, for values that must be the same for
/// every series of a scrape target without sharing state between them.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Uniform in [0, 1) from a hash.
fn unit_of(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The requests one target's histogram observes in one round: how many, and
/// the mean of their (exponentially distributed) latency. A pure function of
/// the target and the round, so each of the target's 14 series computes the
/// same figures on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HistogramRound {
    requests: f64,
    mean_latency: f64,
}

impl HistogramRound {
    /// Per-target constants: request rate log-uniform in 1–100 per second,
    /// typical latency log-uniform in 10 ms–1 s.
    fn target(target: u64) -> (f64, f64) {
        let h = mix(target ^ 0x4849_5354);
        let rate = 100f64.powf(unit_of(h));
        let latency = 0.01 * 100f64.powf(unit_of(mix(h)));
        (rate, latency)
    }

    /// What the histogram holds before the first round: an hour of requests
    /// at the target's typical latency.
    fn start(target: u64) -> HistogramRound {
        let (rate, latency) = Self::target(target);
        HistogramRound {
            requests: (rate * 3600.0).round(),
            mean_latency: latency,
        }
    }

    /// Round `round` (≥ 1) of `interval_s` seconds: the request count
    /// jitters ±20 % and the mean latency between 0.5× and 1.5× the typical.
    pub(crate) fn of(target: u64, round: u64, interval_s: f64) -> HistogramRound {
        let (rate, latency) = Self::target(target);
        let h = mix(mix(target) ^ round);
        HistogramRound {
            requests: (rate * interval_s * (0.8 + 0.4 * unit_of(h))).round(),
            mean_latency: latency * (0.5 + unit_of(mix(h))),
        }
    }

    /// Requests at or below `le` seconds, whole (`le` infinite: all of them).
    /// Never decreases as `le` grows: rounding keeps the order.
    pub(crate) fn count_le(&self, le: f64) -> f64 {
        if le.is_infinite() {
            return self.requests;
        }
        (self.requests * (1.0 - (-le / self.mean_latency).exp())).round()
    }

    /// Sum of the latencies.
    pub(crate) fn sum(&self) -> f64 {
        self.requests * self.mean_latency
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
            Kind::Histogram { target, le, sum } => {
                let h = HistogramRound::of(target, self.round + 1, interval_s);
                self.value + if sum { h.sum() } else { h.count_le(le) }
            }
        };
        self.round += 1;
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
