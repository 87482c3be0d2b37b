//! The harness for Strata's end-to-end tests: it starts the real `strata` binary
//! and the real peers (Prometheus, vmagent, ...) as child processes on 127.0.0.1
//! with free ports and temporary directories, waits until they are ready, and
//! kills them when dropped. Tests talk to every process over HTTP only.
//!
//! The `strata` binary is found through `STRATA_BIN`, else in the workspace's
//! target directory (`make test` builds it first).

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod lifecycle;
pub mod proxy;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use tempfile::TempDir;

/// A port that was free a moment ago on 127.0.0.1, below the kernel's
/// ephemeral range (32768 and up here): a port `bind(0)` hands out is one
/// the kernel also gives to outgoing connections, so a process started a
/// moment later could find it taken by another process's connection to etcd
/// or S3 ("Address already in use"). Ports are handed out in turn from a start
/// that differs per test process, each checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const HIGH: u32 = 32_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = LOW + (std::process::id() * 97) % (HIGH - LOW);
    for _ in 0..(HIGH - LOW) {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start - LOW + offset) % (HIGH - LOW);
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn strata_bin() -> PathBuf {
    if let Ok(p) = std::env::var("STRATA_BIN") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    let bin = target.join("debug").join("strata");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p strata` first (make test does), or set STRATA_BIN",
        bin.display()
    );
    bin
}

/// Whether an external program is installed; tests that need it fail with a
/// clear message when it is not (CI installs it; a silent skip would hide gaps).
pub fn require_program(name: &str) -> PathBuf {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} is not installed: run .ci/run (it installs the Debian packages the tests need)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A child process killed on drop; its output goes to files in its temp dir so a
/// failing test can show the log.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    pub dir: TempDir,
}

impl Process {
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: TempDir) -> Process {
        Self::spawn_with_env(name, program, args, &[], dir)
    }

    /// [`Process::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        dir: TempDir,
    ) -> Process {
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Process {
            name: name.to_string(),
            child,
            dir,
        }
    }

    /// [`Process::spawn`], then [`Process::wait_ready`] on `ready_url` for up
    /// to 30 s: how every peer of the tests is started.
    pub async fn spawn_ready(
        name: &str,
        program: &Path,
        args: &[String],
        dir: TempDir,
        ready_url: &str,
    ) -> Process {
        let mut process = Self::spawn(name, program, args, dir);
        process.wait_ready(ready_url, Duration::from_secs(30)).await;
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's log so far (stderr then stdout), for failure messages.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- {} stderr ---\n{}\n--- {} stdout ---\n{}",
            self.name,
            read("stderr.log"),
            self.name,
            read("stdout.log")
        )
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `url` answers 200, or panics with the process's log.
    pub async fn wait_ready(&mut self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client = reqwest::Client::new();
        loop {
            if let Ok(resp) = client.get(url).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            if !self.is_running() {
                panic!(
                    "{} exited before becoming ready\n{}",
                    self.name,
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{} not ready at {url} after {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `strata` process with its ports.
#[derive(Debug)]
pub struct Strata {
    pub process: Process,
    pub http_port: u16,
    pub grpc_port: u16,
}

impl Strata {
    /// Starts `strata` with the given extra flags (e.g. `-target=all`) on free ports.
    pub async fn start(extra_args: &[&str]) -> Strata {
        let http_port = free_port();
        let grpc_port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            format!("-server.http_listen_port={http_port}"),
            format!("-server.grpc_listen_port={grpc_port}"),
            "-server.http_listen_address=127.0.0.1".to_string(),
            "-server.grpc_listen_address=127.0.0.1".to_string(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let ready = format!("http://127.0.0.1:{http_port}/ready");
        let process = Process::spawn_ready("strata", &strata_bin(), &args, dir, &ready).await;
        Strata {
            process,
            http_port,
            grpc_port,
        }
    }

    /// [`Strata::start`] with flags built as `String`s.
    pub async fn start_with_flags(flags: &[String]) -> Strata {
        let args: Vec<&str> = flags.iter().map(String::as_str).collect();
        Strata::start(&args).await
    }

    /// Starts a single-process `strata` (`-target=all`) that keeps its data
    /// under `dir` ([`local_storage_flags`]): started again on the same `dir`,
    /// it finds the same WAL and blocks.
    pub async fn start_all_in(dir: &Path) -> Strata {
        let flags = local_storage_flags(dir);
        Strata::start(&["-target=all", &flags[0], &flags[1]]).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.http_port, path)
    }

    /// POSTs an empty body to `path` (an operator endpoint such as
    /// `/compactor/run`); returns the status and the response text.
    pub async fn post(&self, path: &str) -> (reqwest::StatusCode, String) {
        let url = self.url(path);
        let resp = reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = resp.status();
        (status, resp.text().await.unwrap())
    }

    /// `POST /ingester/flush`: the ingester cuts its head into blocks (all but
    /// the last minute) and ships them; returns the status and the response
    /// text (the flush's stats as JSON, or the error).
    pub async fn flush(&self) -> (reqwest::StatusCode, String) {
        self.post("/ingester/flush").await
    }

    /// How many instances the ingester ring page lists as ACTIVE, or `None`
    /// while the page does not answer with JSON (the process is starting).
    pub async fn active_ingesters(&self) -> Option<usize> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(self.url("/ingester/ring"))
            .header("Accept", "application/json")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let active = body["instances"]
            .as_array()?
            .iter()
            .filter(|i| i["state"] == "ACTIVE")
            .count();
        Some(active)
    }

    /// The process's `/metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        let url = self.url("/metrics");
        let resp = reqwest::get(&url)
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.text().await.unwrap()
    }

    /// The value of the metric `name` without labels, if it is exported.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    /// The ingester ring as its page's JSON shows it (`{"instances": [...]}`).
    pub async fn ring_json(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(self.url("/ingester/ring"))
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The `strata` flags that keep a process's data under `dir`: the ingester's
/// TSDB (WAL and local blocks) in `dir/tsdb`, the filesystem bucket in
/// `dir/blocks`.
pub fn local_storage_flags(dir: &Path) -> [String; 2] {
    [
        format!("-blocks_storage.tsdb.dir={}", dir.join("tsdb").display()),
        format!(
            "-blocks_storage.filesystem.dir={}",
            dir.join("blocks").display()
        ),
    ]
}

/// The series of a matrix answer (`data.result` of a range query or a range
/// selector), each keyed by its `label` with its (timestamp ms, value) samples.
pub fn matrix_samples(body: &serde_json::Value, label: &str) -> Vec<(String, Vec<(i64, f64)>)> {
    body["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result in {body}"))
        .iter()
        .map(|s| {
            let key = s["metric"][label].as_str().unwrap_or_default().to_string();
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let t = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
                    let value: f64 = v[1]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap_or_else(|e| panic!("value {} of {key}: {e}", v[1]));
                    (t, value)
                })
                .collect();
            (key, values)
        })
        .collect()
}

/// A Debian `prometheus` 2.42 with the given config file contents (`{{PORT}}` in
/// the text is replaced by its own web port).
#[derive(Debug)]
pub struct Prometheus {
    pub process: Process,
    pub port: u16,
}

impl Prometheus {
    pub async fn start(config: &str, extra_args: &[&str]) -> Prometheus {
        let bin = require_program("prometheus");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(&dir, "prometheus.yml", config, port);
        let mut args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--storage.remote.flush-deadline=1s".to_string(),
        ];
        args.extend(extra_args.iter().map(|s| s.to_string()));
        let ready = format!("http://127.0.0.1:{port}/-/ready");
        let process = Process::spawn_ready("prometheus", &bin, &args, dir, &ready).await;
        Prometheus { process, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

/// The `scrape_configs` and `remote_write` sections of a Prometheus config
/// (to follow its `global` section) that scrape Prometheus itself (job
/// `prometheus`) and the Strata at `strata_port` (job `strata`) and
/// remote-write everything to that Strata as `tenant`, the basic-auth user
/// (as the README tells users), with `queue_config` (a YAML flow mapping).
pub fn scrape_and_push_to_strata(strata_port: u16, tenant: &str, queue_config: &str) -> String {
    format!(
        r#"scrape_configs:
  - job_name: prometheus
    static_configs: [{{targets: ['127.0.0.1:{{{{PORT}}}}']}}]
  - job_name: strata
    static_configs: [{{targets: ['127.0.0.1:{strata_port}']}}]
remote_write:
  - url: http://127.0.0.1:{strata_port}/api/v1/push
    basic_auth: {{username: {tenant}, password: unused}}
    queue_config: {queue_config}
"#
    )
}

/// vmagent (Debian `victoria-metrics` package) scraping with the given config and
/// remote-writing to `remote_write_url` with the given extra headers.
#[derive(Debug)]
pub struct Vmagent {
    pub process: Process,
    pub port: u16,
}

impl Vmagent {
    /// `remote_write_urls` each get the same `headers` (vmagent applies a single
    /// `-remoteWrite.headers` value to every URL).
    pub async fn start(
        scrape_config: &str,
        remote_write_urls: &[String],
        headers: &str,
    ) -> Vmagent {
        let bin = require_program("vmagent");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let config_path = write_config(&dir, "scrape.yml", scrape_config, port);
        let mut args = vec![
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-promscrape.config={}", config_path.display()),
            format!("-remoteWrite.headers={headers}"),
            format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("tmp").display()
            ),
            "-remoteWrite.flushInterval=1s".to_string(),
        ];
        args.extend(
            remote_write_urls
                .iter()
                .map(|u| format!("-remoteWrite.url={u}")),
        );
        let ready = format!("http://127.0.0.1:{port}/health");
        let process = Process::spawn_ready("vmagent", &bin, &args, dir, &ready).await;
        Vmagent { process, port }
    }
}

/// Writes `text` to the file `name` in `dir` with every `{{PORT}}` replaced by
/// `port` (a peer's own web port), and returns the file's path.
fn write_config(dir: &TempDir, name: &str, text: &str, port: u16) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text.replace("{{PORT}}", &port.to_string())).unwrap();
    path
}

/// GETs a Prometheus-API URL and returns the parsed JSON body and status.
pub async fn get_json(url: &str, tenant: Option<&str>) -> (u16, serde_json::Value) {
    let req = reqwest::Client::new().get(url);
    let (status, text) =
        send_with_headers(req, &tenant_header(tenant), &format!("GET {url}")).await;
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON ({e}): {text}"));
    (status, json)
}

/// Encodes a remote-write request the way Prometheus sends it (protobuf, then
/// snappy block format).
pub fn encode_write_request(req: &strata_proto::prometheus::WriteRequest) -> Vec<u8> {
    let raw = prost::Message::encode_to_vec(req);
    snap::raw::Encoder::new().compress_vec(&raw).unwrap()
}

/// A series as test code writes it: label pairs and (timestamp ms, value) samples.
pub type TestSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

/// A remote-write request holding `series`.
pub fn write_request(series: &[TestSeries<'_>]) -> strata_proto::prometheus::WriteRequest {
    use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
    WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| {
                let mut labels: Vec<Label> = labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                TimeSeries {
                    labels,
                    samples: samples
                        .iter()
                        .map(|(t, v)| Sample {
                            timestamp: *t,
                            value: *v,
                        })
                        .collect(),
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    }
}

/// An encoded remote-write body with the one sample `sample` for each series
/// `{__name__="<metric>", series="<name>"}` of `names`.
pub fn one_sample_per_series_body(metric: &str, names: &[String], sample: (i64, f64)) -> Vec<u8> {
    let labels: Vec<[(&str, &str); 2]> = names
        .iter()
        .map(|n| [("__name__", metric), ("series", n.as_str())])
        .collect();
    let samples = [sample];
    let series: Vec<_> = labels.iter().map(|l| (&l[..], &samples[..])).collect();
    encode_write_request(&write_request(&series))
}

/// Pushes every series of `series` (name → samples) to `strata` as
/// `{__name__="<metric>", series="<name>"}` for `tenant`, one request a
/// series, and asserts each push is answered 200.
pub async fn push_each_series(
    strata: &Strata,
    tenant: &str,
    metric: &str,
    series: &std::collections::BTreeMap<String, Vec<(i64, f64)>>,
) {
    for (name, samples) in series {
        let labels = [("__name__", metric), ("series", name.as_str())];
        let body = encode_write_request(&write_request(&[(&labels[..], &samples[..])]));
        let (status, msg) = push_raw(&strata.url("/api/v1/push"), Some(tenant), body).await;
        assert_eq!(status, 200, "{msg}");
    }
}

/// Pushes every series of `series` (name → samples, as the label `series` of
/// `metric`) in one request, so that the head sees them all at once (pushed
/// one by one, a head cutting blocks every second may cut before the next
/// series' older samples arrive); panics unless answered 200.
pub async fn push_series_at_once(
    strata: &Strata,
    tenant: &str,
    metric: &str,
    series: &std::collections::BTreeMap<String, Vec<(i64, f64)>>,
) {
    let labels: Vec<[(&str, &str); 2]> = series
        .keys()
        .map(|name| [("__name__", metric), ("series", name.as_str())])
        .collect();
    let all: Vec<TestSeries<'_>> = labels
        .iter()
        .zip(series.values())
        .map(|(l, samples)| (&l[..], &samples[..]))
        .collect();
    let body = encode_write_request(&write_request(&all));
    let (status, msg) = push_raw(&strata.url("/api/v1/push"), Some(tenant), body).await;
    assert_eq!(status, 200, "{msg}");
}

/// POSTs a remote-write body; returns the status and the response text.
pub async fn push_raw(url: &str, tenant: Option<&str>, body: Vec<u8>) -> (u16, String) {
    push_with_headers(url, &tenant_header(tenant), body).await
}

/// The `X-Scope-OrgID` header naming `tenant`, if there is one.
fn tenant_header(tenant: Option<&str>) -> Vec<(&str, &str)> {
    tenant.map(|t| ("X-Scope-OrgID", t)).into_iter().collect()
}

/// Sends `req` with the extra `headers`; returns the status and the response
/// text, or panics naming the request (`what`, e.g. `GET <url>`) when no
/// answer comes.
async fn send_with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &[(&str, &str)],
    what: &str,
) -> (u16, String) {
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after `timeout`
/// with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `count()` is at least `n` more than it was when the wait began
/// (e.g. `n` more acknowledged pushes), polling as [`eventually`] does.
pub async fn eventually_grows_by(
    what: &str,
    timeout: Duration,
    n: usize,
    count: impl Fn() -> usize,
) {
    let start = count();
    eventually(what, timeout, || {
        let now = count();
        async move { (now >= start + n).then_some(()) }
    })
    .await;
}

/// A single-member etcd on loopback with a temp data dir, killed on drop.
#[derive(Debug)]
pub struct Etcd {
    pub process: Process,
    pub client_port: u16,
}

impl Etcd {
    pub async fn start() -> Etcd {
        let etcd = require_program("etcd");
        let client_port = free_port();
        let peer_port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let args: Vec<String> = vec![
            "--name=t1".into(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=t1={peer}"),
            "--initial-cluster-state=new".into(),
            "--unsafe-no-fsync".into(),
        ];
        let process =
            Process::spawn_ready("etcd", &etcd, &args, dir, &format!("{client}/health")).await;
        Etcd {
            process,
            client_port,
        }
    }

    /// The endpoint as Strata's `kvstore.etcd.endpoints` takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The `strata` flags for an ingester ring kept in this etcd: every
    /// series on `replication_factor` ingesters, a heartbeat every second,
    /// `num_tokens` tokens an instance.
    pub fn ring_flags(&self, replication_factor: u32, num_tokens: u32) -> Vec<String> {
        vec![
            "-ingester.ring.kvstore.store=etcd".to_string(),
            format!("-ingester.ring.kvstore.etcd.endpoints={}", self.endpoint()),
            format!("-ingester.ring.replication_factor={replication_factor}"),
            "-ingester.ring.heartbeat_period=1s".to_string(),
            format!("-ingester.ring.num_tokens={num_tokens}"),
        ]
    }
}

/// A real S3-compatible server (`s3s-fs`: SigV4, path-style) on loopback with
/// one bucket, [`S3Server::BUCKET`]. Its data root outlives [`S3Server::stop`], so
/// a test can take object storage away and bring it back on the same port.
#[derive(Debug)]
pub struct S3Server {
    process: Option<Process>,
    root: TempDir,
    pub port: u16,
}

impl S3Server {
    pub const BUCKET: &'static str = "blocks";
    pub const ACCESS_KEY: &'static str = "test";
    pub const SECRET_KEY: &'static str = "testsecret";

    pub async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(Self::BUCKET)).unwrap();
        let mut server = S3Server {
            process: None,
            root,
            port: free_port(),
        };
        server.restart().await;
        server
    }

    /// Starts (again) on the same port with the same data; waits until it answers.
    pub async fn restart(&mut self) {
        self.stop();
        let program = require_program("s3s-fs");
        let args: Vec<String> = [
            "--host",
            "127.0.0.1",
            "--port",
            &self.port.to_string(),
            "--access-key",
            Self::ACCESS_KEY,
            "--secret-key",
            Self::SECRET_KEY,
            self.root.path().to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = Process::spawn("s3s-fs", &program, &args, tempfile::tempdir().unwrap());
        let url = format!("http://127.0.0.1:{}/", self.port);
        for _ in 0..200 {
            if reqwest::get(&url).await.is_ok() {
                self.process = Some(process);
                return;
            }
            assert!(process.is_running(), "s3s-fs exited\n{}", process.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("s3s-fs did not answer\n{}", process.logs());
    }

    /// Kills the server; requests to its port fail until [`S3Server::restart`].
    pub fn stop(&mut self) {
        self.process = None;
    }

    /// The bucket as s3s-fs stores it: `<bucket dir>/<tenant>/<ULID>/<file>`.
    pub fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(Self::BUCKET)
    }

    /// The server's log so far (empty while stopped).
    pub fn logs(&self) -> String {
        self.process.as_ref().map(Process::logs).unwrap_or_default()
    }

    /// The `strata` flags that point `blocks_storage` at this server.
    pub fn strata_flags(&self) -> Vec<String> {
        vec![
            "-blocks_storage.backend=s3".to_string(),
            format!("-blocks_storage.s3.endpoint=127.0.0.1:{}", self.port),
            format!("-blocks_storage.s3.bucket_name={}", Self::BUCKET),
            format!("-blocks_storage.s3.access_key_id={}", Self::ACCESS_KEY),
            format!("-blocks_storage.s3.secret_access_key={}", Self::SECRET_KEY),
            "-blocks_storage.s3.region=us-east-1".to_string(),
            "-blocks_storage.s3.insecure=true".to_string(),
        ]
    }
}

/// Every sample Debian's `promtool tsdb dump` prints for `blocks` (block
/// directories, copied beside the empty `wal/` promtool wants), as (value of
/// the label `by`, timestamp ms, value) in dump order. A sample held by two
/// blocks is printed twice, so callers can check each appears once.
pub fn promtool_dump(blocks: &[PathBuf], by: &str) -> Vec<(String, i64, f64)> {
    let promtool = require_program("promtool");
    let copy = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(copy.path().join("wal")).unwrap();
    for block in blocks {
        let dst = copy.path().join(block.file_name().unwrap());
        std::fs::create_dir_all(dst.join("chunks")).unwrap();
        for f in ["meta.json", "index"] {
            std::fs::copy(block.join(f), dst.join(f)).unwrap();
        }
        for entry in std::fs::read_dir(block.join("chunks")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit()) {
                std::fs::copy(&path, dst.join("chunks").join(name)).unwrap();
            }
        }
    }
    let out = Command::new(&promtool)
        .args(["tsdb", "dump", copy.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool tsdb dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines: {__name__="m", series="s0"} 1.5 1700000000000
    let key = format!("{by}=\"");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (labels, rest) = line.rsplit_once("} ")?;
            let label = labels.split(key.as_str()).nth(1)?.split('"').next()?;
            let mut parts = rest.split_whitespace();
            let value: f64 = parts.next()?.parse().ok()?;
            let ts: i64 = parts.next()?.parse().ok()?;
            Some((label.to_string(), ts, value))
        })
        .collect()
}

/// POSTs a remote-write body with extra headers (e.g. `Authorization`, and
/// `X-Scope-OrgID` only if listed); returns the status and the response text.
pub async fn push_with_headers(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let req = reqwest::Client::new()
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    send_with_headers(req, headers, &format!("POST {url}")).await
}

/// GETs `url` with extra headers; returns the status and the response text
/// (error bodies need not be JSON).
pub async fn get_with_headers(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let req = reqwest::Client::new().get(url);
    send_with_headers(req, headers, &format!("GET {url}")).await
}

/// Series labels (sorted by name) → samples (timestamp ms, value) in time order.
pub type IngesterSeries = std::collections::BTreeMap<Vec<(String, String)>, Vec<(i64, f64)>>;

/// What one ingester alone holds for `tenant`: the series named `metric` with
/// their samples in `[start_ms, end_ms]`, read over the ingester's own gRPC
/// `QueryStream` at `127.0.0.1:grpc_port` (no querier, no merge with other
/// replicas) and decoded from its XOR chunks here. A sample two chunks both
/// hold is listed twice, so a caller sees duplicates.
pub async fn ingester_query(
    grpc_port: u16,
    tenant: &str,
    metric: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<IngesterSeries, String> {
    use strata_proto::ingester::ingester_client::IngesterClient;
    use strata_proto::ingester::{ChunkEncoding, LabelMatcher, MatchType, QueryRequest};
    let mut client = IngesterClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .map_err(|e| format!("connect to the ingester at port {grpc_port}: {e}"))?;
    let request = QueryRequest {
        start_timestamp_ms: start_ms,
        end_timestamp_ms: end_ms,
        matchers: vec![LabelMatcher {
            r#type: MatchType::Equal as i32,
            name: "__name__".to_string(),
            value: metric.to_string(),
        }],
    };
    let request = strata_proto::tenant_request(tenant, request).map_err(|e| e.to_string())?;
    let mut stream = client
        .query_stream(request)
        .await
        .map_err(|e| format!("QueryStream: {e}"))?
        .into_inner();
    let mut out = IngesterSeries::new();
    while let Some(batch) = stream
        .message()
        .await
        .map_err(|e| format!("QueryStream: {e}"))?
    {
        for series in batch.series {
            let mut labels: Vec<(String, String)> = series
                .labels
                .into_iter()
                .map(|l| (l.name, l.value))
                .collect();
            labels.sort();
            let samples = out.entry(labels).or_default();
            for chunk in series.chunks {
                if chunk.encoding != ChunkEncoding::Xor as i32 {
                    return Err(format!("a chunk with encoding {}", chunk.encoding));
                }
                let decoded = decode_xor_chunk(&chunk.data)?;
                samples.extend(
                    decoded
                        .into_iter()
                        .filter(|(t, _)| (start_ms..=end_ms).contains(t)),
                );
            }
        }
    }
    for samples in out.values_mut() {
        samples.sort_by_key(|(t, _)| *t);
    }
    Ok(out)
}

/// Reads a bit stream most significant bit first, as Prometheus's `bstream`.
struct BitReader<'a> {
    bytes: &'a [u8],
    bit: usize,
}

impl BitReader<'_> {
    fn bits(&mut self, n: u32) -> Result<u64, String> {
        let mut v = 0u64;
        for _ in 0..n {
            let byte = self.bytes.get(self.bit / 8).ok_or("XOR chunk ends early")?;
            let b = (byte >> (7 - self.bit % 8)) & 1;
            v = (v << 1) | u64::from(b);
            self.bit += 1;
        }
        Ok(v)
    }

    fn uvarint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.bits(8)?;
            v |= (b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long in XOR chunk".into())
    }

    fn varint(&mut self) -> Result<i64, String> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }
}

/// The samples of a Prometheus XOR chunk (`chunkenc/xor.go`): a big-endian
/// u16 count, then the first timestamp (varint) and value (64 bits), the
/// second timestamp as a uvarint delta, later ones as delta-of-deltas in
/// 0/14/17/20/64-bit buckets, every value after the first XORed with the
/// previous one (leading zeros in 5 bits, significant bits in 6).
pub fn decode_xor_chunk(data: &[u8]) -> Result<Vec<(i64, f64)>, String> {
    if data.len() < 2 {
        return Err(format!("XOR chunk of {} bytes", data.len()));
    }
    let n = u16::from_be_bytes([data[0], data[1]]) as usize;
    let mut r = BitReader {
        bytes: &data[2..],
        bit: 0,
    };
    let mut out = Vec::with_capacity(n);
    let (mut t, mut delta, mut bits) = (0i64, 0i64, 0u64);
    let (mut leading, mut trailing) = (0u32, 0u32);
    for i in 0..n {
        match i {
            0 => {
                t = r.varint()?;
                bits = r.bits(64)?;
            }
            _ => {
                if i == 1 {
                    delta = r.uvarint()? as i64;
                } else {
                    let mut d = 0u8;
                    for _ in 0..4 {
                        d <<= 1;
                        if r.bits(1)? == 0 {
                            break;
                        }
                        d |= 1;
                    }
                    let dod = match d {
                        0b0000 => 0,
                        0b0010 | 0b0110 | 0b1110 => {
                            let size = match d {
                                0b0010 => 14,
                                0b0110 => 17,
                                _ => 20,
                            };
                            let v = r.bits(size)?;
                            // Negative numbers come back as high unsigned ones.
                            if v > 1 << (size - 1) {
                                v as i64 - (1i64 << size)
                            } else {
                                v as i64
                            }
                        }
                        _ => r.bits(64)? as i64,
                    };
                    delta += dod;
                }
                t += delta;
                if r.bits(1)? == 1 {
                    if r.bits(1)? == 1 {
                        leading = r.bits(5)? as u32;
                        let mut significant = r.bits(6)? as u32;
                        // 0 significant bits means 64 (it overflowed 6 bits).
                        if significant == 0 {
                            significant = 64;
                        }
                        trailing = 64u32
                            .checked_sub(leading + significant)
                            .ok_or("bad XOR value header")?;
                    }
                    let significant = 64 - leading - trailing;
                    let v = r.bits(significant)?;
                    bits ^= v.checked_shl(trailing).unwrap_or(0);
                }
            }
        }
        out.push((t, f64::from_bits(bits)));
    }
    Ok(out)
}
