//! strata-service: what every Strata component has in common as a running
//! thing, after Grafana dskit's `services` package.
//!
//! - [`Service`]: a component's lifecycle in three steps — `starting` (replay a
//!   WAL, join a ring, first bucket sync), `running` (its loops or server,
//!   until told to stop), `stopping` (leave the ring, flush). Its [`State`]
//!   moves New → Starting → Running → Stopping → Terminated, or to Failed.
//! - [`ModuleGraph`]: a process's modules and what each depends on; gives the
//!   order in which the modules a `-target` names (and their dependencies)
//!   start. They stop in reverse.
//! - [`Manager`]: starts services in that order, watches them, and when any one
//!   fails — in any step, a server included — stops all the others in reverse
//!   and reports which one failed and why, so a dead loop or server is never
//!   silent. A shutdown request (SIGTERM) stops everything within a grace
//!   period.
//! - [`StatusBoard`]: every service's state, shared with the `/ready` handler:
//!   ready only when every service is Running and says it is ready itself.
//!
//! It knows nothing of flags, configs, HTTP or gRPC: the binary wires those.

mod graph;
mod manager;

use std::fmt;

pub use graph::{DependencyError, ModuleGraph};
pub use manager::{Manager, NotReady, Phase, RunError, StatusBoard};

/// What a service's steps return when they fail: any error, kept whole (its
/// sources too) for the last log line of the process.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where a service is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    New,
    Starting,
    Running,
    Stopping,
    Terminated,
    Failed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::New => "New",
            State::Starting => "Starting",
            State::Running => "Running",
            State::Stopping => "Stopping",
            State::Terminated => "Terminated",
            State::Failed => "Failed",
        })
    }
}

/// A component of the process. Every step has a default, so a service
/// implements only the steps it has.
#[async_trait::async_trait]
pub trait Service: Send + Sync + 'static {
    /// Brings the service to where it does its job. The process is not ready
    /// while any service is starting; an error here stops the process.
    async fn starting(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// The service's work (a server, its loops) until `stop` fires. It returns
    /// `Ok` once it has stopped because it was told to; an error, a panic, or
    /// an `Ok` before `stop` fired count as a failure and stop the process.
    async fn running(&self, mut stop: Stop) -> Result<(), BoxError> {
        stop.wait().await;
        Ok(())
    }

    /// Cleans up once `running` has returned: leave a ring, flush. Called
    /// for every service that started, also when a later one failed, and
    /// for one whose start was cut short by a shutdown or another service's
    /// failure (so it must cope with a half-done start).
    async fn stopping(&self) -> Result<(), BoxError> {
        Ok(())
    }

    /// While Running, why the service cannot do its job yet, if it cannot
    /// (e.g. not ACTIVE in its ring); `None` when it can.
    fn not_ready(&self) -> Option<String> {
        None
    }
}

/// Tells a running service to stop.
#[derive(Debug, Clone)]
pub struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    /// A signal and its trigger, for tests and for services that run others.
    pub fn new() -> (tokio::sync::watch::Sender<bool>, Stop) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tx, Stop(rx))
    }

    /// Returns once the service has been told to stop (or the manager is gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// The signal as the `watch` receiver that loops across the workspace
    /// take (true = stop).
    pub fn receiver(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.clone()
    }
}

/// A component that exists once its service has started (an ingester after
/// its WAL replay): routes and clients built before the start hold the slot
/// and answer "not ready yet" while it is empty.
#[derive(Debug)]
pub struct Slot<T>(std::sync::Arc<std::sync::OnceLock<std::sync::Arc<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self(std::sync::Arc::default())
    }
}

impl<T> Slot<T> {
    /// A slot that holds `value` from the start.
    pub fn filled(value: std::sync::Arc<T>) -> Self {
        let slot = Self::default();
        slot.fill(value);
        slot
    }

    pub fn get(&self) -> Option<std::sync::Arc<T>> {
        self.0.get().cloned()
    }

    /// Puts the component in; a slot is filled once (later calls are ignored
    /// and return false).
    pub fn fill(&self, value: std::sync::Arc<T>) -> bool {
        self.0.set(value).is_ok()
    }
}

/// A background loop that ended while its service was running.
#[derive(Debug, thiserror::Error)]
#[error("a background loop {0}")]
pub struct LoopEnded(String);

/// The `running` step of a service whose work is spawned loops that end when
/// `stop` fires: waits for `stop`, then for the loops. A loop that ends (or
/// panics) before `stop` is the service's failure.
pub async fn watch_loops(
    mut stop: Stop,
    loops: Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), LoopEnded> {
    use futures::StreamExt;
    let mut loops: futures::stream::FuturesUnordered<_> = loops.into_iter().collect();
    tokio::select! {
        () = stop.wait() => {}
        Some(ended) = loops.next() => {
            // Told to stop meanwhile: that is why it ended.
            if stop.is_stopping() && ended.is_ok() {
                return finish(loops).await;
            }
            return Err(LoopEnded(match ended {
                Err(e) if e.is_panic() => "panicked".to_string(),
                Err(e) => format!("failed: {e}"),
                Ok(()) => "ended on its own".to_string(),
            }));
        }
    }
    finish(loops).await
}

async fn finish(
    mut loops: futures::stream::FuturesUnordered<tokio::task::JoinHandle<()>>,
) -> Result<(), LoopEnded> {
    use futures::StreamExt;
    while let Some(ended) = loops.next().await {
        if let Err(e) = ended {
            return Err(LoopEnded(format!("failed while stopping: {e}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod watch_loops_tests {
    use super::*;

    #[tokio::test]
    async fn loops_that_end_because_of_the_stop_are_not_a_failure() {
        for _ in 0..200 {
            let (tx, stop) = Stop::new();
            let mut signal = stop.clone();
            let quick = tokio::spawn(async move { signal.wait().await });
            let _ = tx.send(true);
            // Both the stop and the loop's end are ready when it looks.
            tokio::task::yield_now().await;
            assert!(watch_loops(stop, vec![quick]).await.is_ok());
        }
    }

    #[tokio::test]
    async fn a_loop_that_ends_by_itself_is_a_failure() {
        let (_tx, stop) = Stop::new();
        let done = tokio::spawn(async {});
        let err = watch_loops(stop, vec![done]).await.unwrap_err();
        assert_eq!(err.to_string(), "a background loop ended on its own");
        let (_tx, stop) = Stop::new();
        let broken = tokio::spawn(async { panic!("boom") });
        let err = watch_loops(stop, vec![broken]).await.unwrap_err();
        assert_eq!(err.to_string(), "a background loop panicked");
    }
}
