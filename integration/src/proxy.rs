//! A TCP proxy a test puts between Strata's processes to break the network
//! between them on demand: [`TcpProxy::partition`] stops forwarding in both
//! directions while keeping every connection open (what a black-holed network
//! or a partition looks like from either side: nothing answers, nothing
//! closes), [`TcpProxy::heal`] resumes it; [`TcpProxy::slow_down`] holds
//! every chunk of bytes for a while before forwarding it (a slow disk or
//! network: requests take seconds, but answer). A process that should be
//! reached through the proxy advertises the proxy's port (an ingester's
//! `-ingester.ring.instance_addr`) or is configured with it (an S3 endpoint).

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// A proxy on 127.0.0.1, forwarding to a target port set once the target
/// runs. Stops accepting when dropped.
#[derive(Debug)]
pub struct TcpProxy {
    pub port: u16,
    target: Arc<AtomicU16>,
    partitioned: Arc<AtomicBool>,
    /// Milliseconds each chunk is held before it is forwarded.
    delay_ms: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port; forwards nothing until [`TcpProxy::forward_to`].
    pub async fn start() -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(0));
        let partitioned = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn({
            let (target, partitioned, delay) =
                (target.clone(), partitioned.clone(), delay_ms.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let port = target.load(Ordering::SeqCst);
                    if port == 0 {
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
                        continue;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let link = Link {
                        partitioned: partitioned.clone(),
                        delay_ms: delay.clone(),
                    };
                    tokio::spawn(pump(client_read, server_write, link.clone()));
                    tokio::spawn(pump(server_read, client_write, link));
                }
            }
        });
        TcpProxy {
            port,
            target,
            partitioned,
            delay_ms,
            accept,
        }
    }

    /// Forwards new connections to `127.0.0.1:port`.
    pub fn forward_to(&self, port: u16) {
        self.target.store(port, Ordering::SeqCst);
    }

    /// Stops forwarding bytes, both ways, on every connection (new ones too).
    pub fn partition(&self) {
        self.partitioned.store(true, Ordering::SeqCst);
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.partitioned.store(false, Ordering::SeqCst);
    }

    /// Holds every chunk read from either side for `delay` before it is
    /// forwarded (zero: at once again).
    pub fn slow_down(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What one connection's pumps follow.
#[derive(Clone)]
struct Link {
    partitioned: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

/// Copies `from` to `to`; while partitioned, what was read is held back, and
/// each chunk waits for the delay.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, link: Link) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let delay = link.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        while link.partitioned.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
