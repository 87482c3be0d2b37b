//! A TCP proxy a test puts between Strata's processes to break the network
//! between them on demand: [`TcpProxy::partition`] stops forwarding in both
//! directions while keeping every connection open (what a black-holed network
//! or a partition looks like from either side: nothing answers, nothing
//! closes), [`TcpProxy::heal`] resumes it. A process that should be reached
//! through the proxy advertises the proxy's port (an ingester's
//! `-ingester.ring.instance_addr`).

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
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
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free port; forwards nothing until [`TcpProxy::forward_to`].
    pub async fn start() -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicU16::new(0));
        let partitioned = Arc::new(AtomicBool::new(false));
        let accept = tokio::spawn({
            let (target, partitioned) = (target.clone(), partitioned.clone());
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
                    tokio::spawn(pump(client_read, server_write, partitioned.clone()));
                    tokio::spawn(pump(server_read, client_write, partitioned.clone()));
                }
            }
        });
        TcpProxy {
            port,
            target,
            partitioned,
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
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`; while partitioned, what was read is held back.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, partitioned: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while partitioned.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
