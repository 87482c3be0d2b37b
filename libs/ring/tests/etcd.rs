//! The ring against a real etcd (3.4+): compare-and-swap under contention,
//! watch propagation, and re-watching after etcd restarts.
//!
//! Each test starts its own `/usr/bin/etcd` on free 127.0.0.1 ports with a
//! temporary data directory and kills it when done. A missing binary fails
//! the test (CI installs Debian's `etcd-server`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_model::ConfigDuration;
use strata_ring::{
    EtcdConfig, EtcdKv, InstanceState, KvConfig, KvStore, KvStoreExt, KvStoreKind, Lifecycler,
    Operation, Ring, RingConfig, RingDesc, RingSnapshot,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ETCD_BIN: &str = "/usr/bin/etcd";
const KEY: &str = "strata/rings/ingester";

/// One etcd member; killed on drop.
struct Etcd {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl Etcd {
    async fn start() -> Etcd {
        assert!(
            Path::new(ETCD_BIN).exists(),
            "{ETCD_BIN} not found: these tests need a real etcd (Debian: apt-get install etcd-server)"
        );
        let mut etcd = Etcd {
            child: None,
            data_dir: tempfile::tempdir().expect("temp dir"),
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn().await;
        etcd
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("etcd.log")
    }

    async fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let child = Command::new(ETCD_BIN)
            .args(["--name", "t1", "--data-dir"])
            .arg(self.data_dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t1={peer}")])
            .args(["--initial-cluster-state", "new", "--unsafe-no-fsync"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {ETCD_BIN}: {e}"));
        self.child = Some(child);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("etcd exited with {status}; log:\n{}", self.log());
            }
            if self.healthy().await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn healthy(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.client_port)).await
        else {
            return false;
        };
        let request = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if stream.write_all(request.as_bytes()).await.is_err() {
            return false;
        }
        let mut response = String::new();
        let read =
            tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut response))
                .await;
        matches!(read, Ok(Ok(_))) && response.contains("\"health\":\"true\"")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills etcd and starts it again on the same ports and data.
    async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ring_config(etcd: &Etcd, id: &str) -> RingConfig {
    RingConfig {
        kvstore: KvConfig {
            store: KvStoreKind::Etcd,
            prefix: "strata/".into(),
            etcd: EtcdConfig {
                endpoints: vec![etcd.endpoint()],
                dial_timeout: ConfigDuration::from_secs(2),
                max_retries: 20,
            },
        },
        heartbeat_period: ConfigDuration(Duration::from_millis(200)),
        instance_id: id.into(),
        instance_addr: format!("{id}:9095"),
        replication_factor: 1,
        ..RingConfig::default()
    }
}

async fn connect(etcd: &Etcd) -> Arc<dyn KvStore> {
    let config = ring_config(etcd, "");
    Arc::new(
        EtcdKv::connect(&config.kvstore.etcd)
            .await
            .expect("connect to etcd"),
    )
}

async fn wait_for(
    ring: &Ring,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&RingSnapshot) -> bool,
) {
    let mut rx = ring.subscribe();
    let result = tokio::time::timeout(timeout, rx.wait_for(|s| pred(s))).await;
    assert!(matches!(result, Ok(Ok(_))), "timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_semantics() {
    let etcd = Etcd::start().await;
    let kv = connect(&etcd).await;
    assert_eq!(kv.get("k").await.unwrap(), None);
    assert_eq!(
        kv.compare_and_put("k", 3, b"x".to_vec()).await.unwrap(),
        None
    );
    let r1 = kv
        .compare_and_put("k", 0, b"a".to_vec())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kv.compare_and_put("k", 0, b"b".to_vec()).await.unwrap(),
        None
    );
    let got = kv.get("k").await.unwrap().unwrap();
    assert_eq!((got.value.as_slice(), got.revision), (&b"a"[..], r1));

    let mut watch = kv.watch_key("k").await.unwrap();
    assert_eq!(watch.borrow_and_update().as_ref().unwrap().value, b"a");
    let r2 = kv
        .compare_and_put("k", r1, b"b".to_vec())
        .await
        .unwrap()
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|v| v.as_ref().is_some_and(|v| v.revision == r2)),
    )
    .await
    .expect("watch saw the update")
    .unwrap();
    kv.delete("k").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.wait_for(Option::is_none))
        .await
        .expect("watch saw the delete")
        .unwrap();

    // Prefix listing (key order, nothing outside the prefix) and
    // conditional deletes, as the HA tracker uses them.
    let a = kv.put("ha/t/a", b"1".to_vec()).await.unwrap();
    kv.put("ha/t/b", b"2".to_vec()).await.unwrap();
    kv.put("hb", b"3".to_vec()).await.unwrap();
    let listed: Vec<(String, Vec<u8>)> = kv
        .list_prefix("ha/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.value))
        .collect();
    assert_eq!(
        listed,
        [
            ("ha/t/a".to_string(), b"1".to_vec()),
            ("ha/t/b".to_string(), b"2".to_vec())
        ]
    );
    assert!(!kv.compare_and_delete("ha/t/a", a + 100).await.unwrap());
    assert!(kv.compare_and_delete("ha/t/a", a).await.unwrap());
    assert_eq!(kv.get("ha/t/a").await.unwrap(), None);

    // Corrupt ring contents are an error, never overwritten.
    kv.put(KEY, b"not json".to_vec()).await.unwrap();
    assert!(kv
        .cas::<RingDesc, _>(KEY, |_| Some(RingDesc::new()))
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_end_active_with_disjoint_tokens() {
    let etcd = Etcd::start().await;
    let mut joins = Vec::new();
    for n in 0..4 {
        let config = ring_config(&etcd, &format!("ing-{n}"));
        let kv = connect(&etcd).await;
        joins.push(tokio::spawn(async move {
            let lc = Lifecycler::start(&config, kv, KEY).await.expect("join");
            lc.activate().await.expect("activate");
            lc
        }));
    }
    let mut lifecyclers = Vec::new();
    for join in joins {
        lifecyclers.push(join.await.unwrap());
    }

    let kv = connect(&etcd).await;
    let (desc, _) = kv.get_value::<RingDesc>(KEY).await.unwrap().unwrap();
    assert_eq!(desc.instances.len(), 4);
    let mut seen = HashSet::new();
    for instance in desc.instances.values() {
        assert_eq!(instance.state, InstanceState::Active, "{}", instance.id);
        assert_eq!(instance.tokens.len(), 128);
        for token in &instance.tokens {
            assert!(seen.insert(*token), "token {token} claimed twice");
        }
    }
    for (lc, id) in lifecyclers.iter().zip(0..) {
        assert_eq!(lc.tokens(), desc.instances[&format!("ing-{id}")].tokens);
    }
    for lc in lifecyclers {
        lc.stop().await.unwrap();
    }
    let (desc, _) = kv.get_value::<RingDesc>(KEY).await.unwrap().unwrap();
    assert!(desc.instances.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_client_follows_the_watch() {
    let etcd = Etcd::start().await;
    let config = ring_config(&etcd, "");
    // A resync period far beyond the test: every update must come from the watch.
    let ring = Ring::with_resync_period(
        &config,
        connect(&etcd).await,
        KEY,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert!(ring.instances().is_empty());

    let lc = Lifecycler::start(&ring_config(&etcd, "ing-1"), connect(&etcd).await, KEY)
        .await
        .unwrap();
    lc.activate().await.unwrap();
    wait_for(&ring, "ing-1 ACTIVE", Duration::from_secs(10), |s| {
        s.instance("ing-1")
            .is_some_and(|i| i.state == InstanceState::Active)
    })
    .await;
    let set = ring.get(42, Operation::Write).unwrap();
    assert_eq!(set.instances[0].id, "ing-1");

    lc.stop().await.unwrap();
    wait_for(&ring, "ing-1 gone", Duration::from_secs(10), |s| {
        s.instance("ing-1").is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewatches_after_etcd_restarts() {
    let mut etcd = Etcd::start().await;
    let config = ring_config(&etcd, "");
    let ring = Ring::with_resync_period(
        &config,
        connect(&etcd).await,
        KEY,
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    let lc = Lifecycler::start(&ring_config(&etcd, "ing-1"), connect(&etcd).await, KEY)
        .await
        .unwrap();
    wait_for(&ring, "ing-1 JOINING", Duration::from_secs(10), |s| {
        s.instance("ing-1")
            .is_some_and(|i| i.state == InstanceState::Joining)
    })
    .await;

    etcd.restart().await;

    // Heartbeats resume through the reconnected client; the state change
    // reaches the ring only through the re-established watch.
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(err) = lc.activate().await {
        assert!(
            Instant::now() < deadline,
            "lifecycler never reached etcd again: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for(
        &ring,
        "ing-1 ACTIVE after restart",
        Duration::from_secs(30),
        |s| {
            s.instance("ing-1")
                .is_some_and(|i| i.state == InstanceState::Active)
        },
    )
    .await;

    // A second restart, then a brand-new instance: still followed.
    etcd.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let lc2 = loop {
        match Lifecycler::start(&ring_config(&etcd, "ing-2"), connect(&etcd).await, KEY).await {
            Ok(lc) => break lc,
            Err(err) => {
                assert!(
                    Instant::now() < deadline,
                    "could not join after restart: {err}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for(
        &ring,
        "ing-2 after second restart",
        Duration::from_secs(30),
        |s| s.instance("ing-2").is_some(),
    )
    .await;
    let tokens: HashSet<u32> = lc.tokens().into_iter().collect();
    assert!(lc2.tokens().iter().all(|t| !tokens.contains(t)));
    lc2.stop().await.unwrap();
    lc.stop().await.unwrap();
}
