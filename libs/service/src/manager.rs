//! Starting, watching and stopping a process's services, and their states as
//! the readiness handler sees them.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::service::{BoxError, Service, State, Stop};

/// The step of a service's lifecycle in which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Running,
    Stopping,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        })
    }
}

/// Why [`Manager::run`] did not end cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("service {service} failed while {phase}: {source}")]
    Failed {
        service: String,
        phase: Phase,
        #[source]
        source: BoxError,
    },
    #[error("services {} did not stop within the graceful shutdown timeout of {grace:?}", .pending.join(", "))]
    StopTimeout {
        pending: Vec<String>,
        grace: Duration,
    },
}

/// Why the process is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the process is shutting down")]
    ShuttingDown,
    #[error("service {service} is {state}")]
    NotRunning { service: String, state: State },
    #[error("service {service} is not ready: {reason}")]
    Service { service: String, reason: String },
}

struct Entry {
    name: String,
    service: Arc<dyn Service>,
    state: Mutex<State>,
}

/// Every service's state; what `/ready` answers from.
pub struct StatusBoard {
    entries: Vec<Entry>,
    shutting_down: AtomicBool,
}

impl fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.states()).finish()
    }
}

impl StatusBoard {
    /// Each service in start order with its state.
    pub fn states(&self) -> Vec<(String, State)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), *e.state.lock()))
            .collect()
    }

    /// `Ok` when every service is Running and says it is ready, and no
    /// shutdown has begun; else the first reason it is not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(NotReady::ShuttingDown);
        }
        for entry in &self.entries {
            let state = *entry.state.lock();
            if state != State::Running {
                return Err(NotReady::NotRunning {
                    service: entry.name.clone(),
                    state,
                });
            }
            if let Some(reason) = entry.service.not_ready() {
                return Err(NotReady::Service {
                    service: entry.name.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }

    fn set(&self, index: usize, state: State) {
        if let Some(entry) = self.entries.get(index) {
            *entry.state.lock() = state;
        }
    }
}

/// A service's `running` step, spawned.
struct Running {
    index: usize,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), BoxError>>,
}

/// Runs a process's services: see the crate's documentation.
pub struct Manager {
    board: Arc<StatusBoard>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("services", &self.board)
            .finish()
    }
}

impl Manager {
    /// `services` in start order (see [`crate::ModuleGraph::start_order`]).
    pub fn new(services: Vec<(String, Arc<dyn Service>)>) -> Self {
        let entries = services
            .into_iter()
            .map(|(name, service)| Entry {
                name,
                service,
                state: Mutex::new(State::New),
            })
            .collect();
        Self {
            board: Arc::new(StatusBoard {
                entries,
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// The states, for the readiness handler; valid before and after `run`.
    pub fn status(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }

    /// Starts every service in order, then waits until `shutdown` completes
    /// or a service fails; then stops the started services in reverse order,
    /// all within `grace`. A shutdown during the start stops what started.
    /// The error names the first service that failed and the step.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> Result<(), RunError> {
        let board = self.board;
        tokio::pin!(shutdown);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();
        let mut running: Vec<Running> = Vec::new();
        let mut failure: Option<RunError> = None;
        let mut shut_down = false;
        // A service whose start was cut short: its stopping step undoes what
        // the start had done (a ring joined, say).
        let mut abandoned: Option<usize> = None;

        for (index, entry) in board.entries.iter().enumerate() {
            board.set(index, State::Starting);
            tracing::info!(service = %entry.name, "starting");
            let service = entry.service.clone();
            // Spawned, so that a panic is this service's failure, not the
            // manager's, and a shutdown can abandon a long start.
            let mut start = tokio::spawn(async move { service.starting().await });
            let started = tokio::select! {
                r = &mut start => Started::Done(r),
                () = &mut shutdown => Started::ShutDown,
                Some(ended) = done_rx.recv() => Started::OtherEnded(ended),
            };
            match started {
                Started::ShutDown => {
                    start.abort();
                    tracing::info!(service = %entry.name, "shutdown requested while starting");
                    abandoned = Some(index);
                    shut_down = true;
                    break;
                }
                Started::OtherEnded(ended) => {
                    // A service that already runs failed while this one started.
                    start.abort();
                    abandoned = Some(index);
                    failure = Some(ended_early(&board, &mut running, ended).await);
                    break;
                }
                Started::Done(Ok(Ok(()))) => {}
                Started::Done(result) => {
                    board.set(index, State::Failed);
                    failure = Some(RunError::Failed {
                        service: entry.name.clone(),
                        phase: Phase::Starting,
                        source: flatten(result),
                    });
                    break;
                }
            }
            board.set(index, State::Running);
            tracing::info!(service = %entry.name, "running");
            let (stop_tx, stop) = Stop::new();
            let service = entry.service.clone();
            let done = done_tx.clone();
            let task = tokio::spawn(async move {
                // Reports the end however it comes, a panic included.
                let _reports_end = EndReport { index, done };
                service.running(stop).await
            });
            running.push(Running {
                index,
                stop: stop_tx,
                task,
            });
        }

        if failure.is_none() && !shut_down {
            tracing::info!(services = running.len(), "all services are running");
            tokio::select! {
                () = &mut shutdown => {}
                Some(ended) = done_rx.recv() => {
                    failure = Some(ended_early(&board, &mut running, ended).await);
                }
            }
        }

        board.shutting_down.store(true, Ordering::SeqCst);
        match &failure {
            Some(e) => tracing::error!(error = %e, "stopping every service"),
            None => tracing::info!("stopping every service"),
        }
        let deadline = Instant::now() + grace;
        let mut pending = Vec::new();
        if let Some(index) = abandoned {
            let entry = &board.entries[index];
            board.set(index, State::Stopping);
            match tokio::time::timeout_at(deadline, entry.service.stopping()).await {
                Ok(Ok(())) => board.set(index, State::Terminated),
                Ok(Err(e)) => {
                    board.set(index, State::Failed);
                    tracing::error!(service = %entry.name, error = %e, "failed while stopping");
                }
                Err(_) => {
                    board.set(index, State::Failed);
                    pending.push(entry.name.clone());
                }
            }
        }
        while let Some(service) = running.pop() {
            let entry = &board.entries[service.index];
            board.set(service.index, State::Stopping);
            let _ = service.stop.send(true);
            if Instant::now() >= deadline {
                pending.push(entry.name.clone());
                board.set(service.index, State::Failed);
                service.task.abort();
                continue;
            }
            let stopped = tokio::time::timeout_at(deadline, async {
                let ran = service.task.await;
                let cleaned = entry.service.stopping().await;
                (ran, cleaned)
            })
            .await;
            let error = match stopped {
                Err(_) => {
                    pending.push(entry.name.clone());
                    board.set(service.index, State::Failed);
                    continue;
                }
                Ok((Ok(Ok(())), Ok(()))) => None,
                Ok((Ok(Ok(())), Err(e))) => Some((Phase::Stopping, e)),
                Ok((ran, _)) => Some((Phase::Running, flatten(ran))),
            };
            match error {
                None => {
                    board.set(service.index, State::Terminated);
                    tracing::info!(service = %entry.name, "stopped");
                }
                Some((phase, source)) => {
                    board.set(service.index, State::Failed);
                    tracing::error!(service = %entry.name, %phase, error = %source, "failed while stopping");
                    failure.get_or_insert(RunError::Failed {
                        service: entry.name.clone(),
                        phase,
                        source,
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None if !pending.is_empty() => Err(RunError::StopTimeout { pending, grace }),
            None => Ok(()),
        }
    }
}

/// Tells the manager that the running step of the service at `index` ended,
/// when dropped: also when the step panicked.
struct EndReport {
    index: usize,
    done: mpsc::UnboundedSender<usize>,
}

impl Drop for EndReport {
    fn drop(&mut self) {
        let _ = self.done.send(self.index);
    }
}

/// How waiting for a service's start ended.
enum Started {
    Done(Result<Result<(), BoxError>, tokio::task::JoinError>),
    ShutDown,
    /// The running step of the service at this index ended.
    OtherEnded(usize),
}

/// The failure of the service at `index`, whose running step ended before it
/// was told to stop; it is taken out of `running` (nothing left to stop).
async fn ended_early(board: &StatusBoard, running: &mut Vec<Running>, index: usize) -> RunError {
    board.set(index, State::Failed);
    let source = match running.iter().position(|r| r.index == index) {
        Some(at) => match running.remove(at).task.await {
            Ok(Ok(())) => BoxError::from("it stopped on its own"),
            other => flatten(other),
        },
        None => BoxError::from("it stopped on its own"),
    };
    RunError::Failed {
        service: board.entries[index].name.clone(),
        phase: Phase::Running,
        source,
    }
}

/// A spawned step's outcome as one error: its own, or how its task ended.
fn flatten(result: Result<Result<(), BoxError>, tokio::task::JoinError>) -> BoxError {
    match result {
        Ok(Ok(())) => BoxError::from("no error"),
        Ok(Err(e)) => e,
        Err(e) if e.is_panic() => BoxError::from(format!("panicked: {}", panic_message(e))),
        Err(e) => BoxError::from(e.to_string()),
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests;
