//! The vocabulary of a service: the [`Service`] trait a component implements,
//! the [`State`]s it moves through, the [`Stop`] signal it runs until, and
//! the [`BoxError`] its steps fail with. A leaf module: the manager and the
//! helpers build on it.

use std::fmt;

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
