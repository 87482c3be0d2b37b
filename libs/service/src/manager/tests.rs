use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::*;

/// What the test services did, in order: "a:start", "a:stop", …
type Log = Arc<Mutex<Vec<String>>>;

/// How a test service behaves in each step.
#[derive(Default, Clone, Copy)]
enum Behaviour {
    #[default]
    Fine,
    FailStarting,
    FailRunning,
    PanicRunning,
    EndRunning,
    HangStopping,
}

struct TestService {
    name: &'static str,
    log: Log,
    behaviour: Behaviour,
    /// When set, `starting` waits for it.
    start_gate: Option<Arc<Notify>>,
    /// When set, `running` fails when it is notified.
    fail_trigger: Option<Arc<Notify>>,
    not_ready: Mutex<Option<String>>,
}

impl TestService {
    fn new(name: &'static str, log: &Log, behaviour: Behaviour) -> Self {
        Self {
            name,
            log: log.clone(),
            behaviour,
            start_gate: None,
            fail_trigger: None,
            not_ready: Mutex::new(None),
        }
    }

    fn record(&self, step: &str) {
        self.log.lock().push(format!("{}:{step}", self.name));
    }
}

#[async_trait::async_trait]
impl Service for TestService {
    async fn starting(&self) -> Result<(), BoxError> {
        self.record("start");
        if let Some(gate) = &self.start_gate {
            gate.notified().await;
        }
        match self.behaviour {
            Behaviour::FailStarting => Err("the bucket is unreachable".into()),
            _ => Ok(()),
        }
    }

    async fn running(&self, mut stop: Stop) -> Result<(), BoxError> {
        match self.behaviour {
            Behaviour::FailRunning => {
                if let Some(trigger) = &self.fail_trigger {
                    trigger.notified().await;
                }
                Err("the server's listener died".into())
            }
            Behaviour::PanicRunning => panic!("a loop broke"),
            Behaviour::EndRunning => Ok(()),
            _ => {
                stop.wait().await;
                Ok(())
            }
        }
    }

    async fn stopping(&self) -> Result<(), BoxError> {
        self.record("stop");
        if let Behaviour::HangStopping = self.behaviour {
            futures::future::pending::<()>().await;
        }
        Ok(())
    }

    fn not_ready(&self) -> Option<String> {
        self.not_ready.lock().clone()
    }
}

fn manager(services: Vec<Arc<TestService>>) -> Manager {
    Manager::new(
        services
            .into_iter()
            .map(|s| (s.name.to_string(), s as Arc<dyn Service>))
            .collect(),
    )
}

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().clone()
}

#[tokio::test]
async fn starts_in_order_and_stops_in_reverse() {
    let log = log();
    let services = ["server", "ingester", "distributor"]
        .map(|n| Arc::new(TestService::new(n, &log, Behaviour::Fine)));
    let m = manager(services.to_vec());
    let board = m.status();
    let shutdown = Arc::new(Notify::new());
    let trigger = shutdown.clone();
    let run = tokio::spawn(m.run(
        async move { trigger.notified().await },
        Duration::from_secs(5),
    ));
    wait_until(|| board.readiness().is_ok()).await;
    shutdown.notify_one();
    run.await.unwrap().unwrap();
    assert_eq!(
        entries(&log),
        [
            "server:start",
            "ingester:start",
            "distributor:start",
            "distributor:stop",
            "ingester:stop",
            "server:stop"
        ]
    );
    assert!(board.states().iter().all(|(_, s)| *s == State::Terminated));
}

#[tokio::test]
async fn a_failed_start_stops_what_started_and_names_the_service() {
    let log = log();
    let m = manager(vec![
        Arc::new(TestService::new("server", &log, Behaviour::Fine)),
        Arc::new(TestService::new("ingester", &log, Behaviour::Fine)),
        Arc::new(TestService::new("compactor", &log, Behaviour::FailStarting)),
        Arc::new(TestService::new("querier", &log, Behaviour::Fine)),
    ]);
    let board = m.status();
    let err = m
        .run(futures::future::pending(), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "service compactor failed while starting: the bucket is unreachable"
    );
    // The ingester that had started (and joined its ring) was stopped: it
    // left the ring before the process exits.
    assert_eq!(
        entries(&log),
        [
            "server:start",
            "ingester:start",
            "compactor:start",
            "ingester:stop",
            "server:stop"
        ]
    );
    let states = board.states();
    assert_eq!(states[2], ("compactor".to_string(), State::Failed));
    assert_eq!(states[3], ("querier".to_string(), State::New));
}

#[tokio::test]
async fn a_running_service_that_fails_stops_the_process() {
    for (behaviour, message) in [
        (Behaviour::FailRunning, "the server's listener died"),
        (Behaviour::PanicRunning, "panicked: a loop broke"),
        (Behaviour::EndRunning, "it stopped on its own"),
    ] {
        let log = log();
        let m = manager(vec![
            Arc::new(TestService::new("http-server", &log, behaviour)),
            Arc::new(TestService::new("ingester", &log, Behaviour::Fine)),
        ]);
        let board = m.status();
        let err = m
            .run(futures::future::pending(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("service http-server failed while running: {message}")
        );
        // The other service was stopped, and readiness says the process is going.
        assert!(entries(&log).contains(&"ingester:stop".to_string()));
        assert_eq!(board.readiness(), Err(NotReady::ShuttingDown));
    }
}

#[tokio::test]
async fn a_failure_while_another_starts_stops_the_start() {
    let log = log();
    let trigger = Arc::new(Notify::new());
    let mut server = TestService::new("grpc-server", &log, Behaviour::FailRunning);
    server.fail_trigger = Some(trigger.clone());
    let mut ingester = TestService::new("ingester", &log, Behaviour::Fine);
    // The ingester's start (a WAL replay) never ends on its own.
    ingester.start_gate = Some(Arc::new(Notify::new()));
    let m = manager(vec![Arc::new(server), Arc::new(ingester)]);
    let board = m.status();
    let run = tokio::spawn(m.run(futures::future::pending(), Duration::from_secs(5)));
    wait_until(|| board.states()[1].1 == State::Starting).await;
    trigger.notify_one();
    let err = run.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "service grpc-server failed while running: the server's listener died"
    );
    assert_eq!(board.states()[1].1, State::Terminated);
    assert!(entries(&log).contains(&"ingester:stop".to_string()));
}

#[tokio::test]
async fn readiness_follows_the_states() {
    let log = log();
    let gate = Arc::new(Notify::new());
    let mut ingester = TestService::new("ingester", &log, Behaviour::Fine);
    ingester.start_gate = Some(gate.clone());
    let ingester = Arc::new(ingester);
    let m = manager(vec![
        Arc::new(TestService::new("server", &log, Behaviour::Fine)),
        ingester.clone(),
    ]);
    let board = m.status();
    assert_eq!(
        board.readiness(),
        Err(NotReady::NotRunning {
            service: "server".into(),
            state: State::New
        })
    );
    let shutdown = Arc::new(Notify::new());
    let trigger = shutdown.clone();
    let run = tokio::spawn(m.run(
        async move { trigger.notified().await },
        Duration::from_secs(5),
    ));
    wait_until(|| board.states()[1].1 == State::Starting).await;
    assert_eq!(
        board.readiness().unwrap_err().to_string(),
        "service ingester is Starting"
    );
    *ingester.not_ready.lock() = Some("not ACTIVE in the ring".into());
    gate.notify_one();
    wait_until(|| board.states()[1].1 == State::Running).await;
    assert_eq!(
        board.readiness().unwrap_err().to_string(),
        "service ingester is not ready: not ACTIVE in the ring"
    );
    *ingester.not_ready.lock() = None;
    assert_eq!(board.readiness(), Ok(()));
    shutdown.notify_one();
    run.await.unwrap().unwrap();
    assert_eq!(board.readiness(), Err(NotReady::ShuttingDown));
}

#[tokio::test]
async fn not_ready_as_soon_as_shutdown_begins() {
    let log = log();
    // Its stopping never ends: readiness must already say "shutting down"
    // while it is stopping, and the manager gives up after the grace period.
    let m = manager(vec![
        Arc::new(TestService::new("server", &log, Behaviour::Fine)),
        Arc::new(TestService::new("ingester", &log, Behaviour::HangStopping)),
    ]);
    let board = m.status();
    let shutdown = Arc::new(Notify::new());
    let trigger = shutdown.clone();
    let run = tokio::spawn(m.run(
        async move { trigger.notified().await },
        Duration::from_millis(300),
    ));
    wait_until(|| board.readiness().is_ok()).await;
    shutdown.notify_one();
    // Its stopping has begun (and hangs): readiness says so, whether or not
    // the grace period has run out by the time this thread looks.
    wait_until(|| entries(&log).contains(&"ingester:stop".to_string())).await;
    assert_eq!(board.readiness(), Err(NotReady::ShuttingDown));
    let err = run.await.unwrap().unwrap_err();
    // The grace period was used up by the ingester: the server, next in
    // line, is not waited for either.
    assert_eq!(
        err.to_string(),
        "services ingester, server did not stop within the graceful shutdown timeout of 300ms"
    );
    assert!(!entries(&log).contains(&"server:stop".to_string()));
}

#[tokio::test]
async fn a_shutdown_during_the_start_stops_what_started() {
    let log = log();
    let mut slow = TestService::new("ingester", &log, Behaviour::Fine);
    slow.start_gate = Some(Arc::new(Notify::new()));
    let m = manager(vec![
        Arc::new(TestService::new("server", &log, Behaviour::Fine)),
        Arc::new(slow),
        Arc::new(TestService::new("querier", &log, Behaviour::Fine)),
    ]);
    let board = m.status();
    let shutdown = Arc::new(Notify::new());
    let trigger = shutdown.clone();
    let run = tokio::spawn(m.run(
        async move { trigger.notified().await },
        Duration::from_secs(5),
    ));
    wait_until(|| board.states()[1].1 == State::Starting).await;
    shutdown.notify_one();
    run.await.unwrap().unwrap();
    // The ingester's stopping undoes its half-done start; the querier never
    // started.
    assert_eq!(
        entries(&log),
        [
            "server:start",
            "ingester:start",
            "ingester:stop",
            "server:stop"
        ]
    );
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
