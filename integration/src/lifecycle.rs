//! Watching a process stop: signals, exit status, readiness over time.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crate::Process;

impl Process {
    /// Sends SIGTERM (a graceful stop request).
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None`
    /// if it still runs.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One answer of a readiness endpoint: the status, or `None` when the
/// connection was refused (nothing listening), and the body.
pub async fn probe(url: &str) -> (Option<u16>, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            (Some(status), resp.text().await.unwrap_or_default())
        }
        Err(_) => (None, String::new()),
    }
}
