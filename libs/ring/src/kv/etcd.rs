//! The etcd backend.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, SortOrder, SortTarget, Txn, TxnOp,
    WatchOptions, WatchResponse,
};
use tokio::sync::watch;

use super::client::{KvStore, KvWatch, Versioned};
use crate::config::EtcdConfig;
use crate::error::KvError;

/// First pause before re-establishing a failed watch; doubles up to
/// [`WATCH_BACKOFF_MAX`].
const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(100);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// A [`KvStore`] on etcd v3 (3.4 or newer).
///
/// Conditional writes are transactions comparing the key's `mod_revision`;
/// watches re-read the key and re-watch from the next revision after any
/// error, with exponential backoff, so a restarted etcd is picked up again.
/// gRPC channels reconnect by themselves.
#[derive(Clone)]
pub struct EtcdKv {
    client: Client,
    timeout: Duration,
    max_cas_attempts: usize,
}

impl fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdKv")
            .field("timeout", &self.timeout)
            .field("max_cas_attempts", &self.max_cas_attempts)
            .finish_non_exhaustive()
    }
}

impl EtcdKv {
    /// Connects to the configured endpoints. Fails if none is given; the
    /// connection itself is made lazily and re-made after errors.
    pub async fn connect(config: &EtcdConfig) -> Result<Self, KvError> {
        let timeout = config.dial_timeout.0;
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|source| KvError::Etcd {
                op: "connect",
                source,
            })?;
        Ok(Self {
            client,
            timeout,
            max_cas_attempts: config.max_retries,
        })
    }

    /// Runs one request with the configured timeout.
    async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T, KvError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(|source| KvError::Etcd { op, source }),
            Err(_) => Err(KvError::Timeout {
                op,
                timeout: self.timeout,
            }),
        }
    }

    /// The value of `key` and the store's revision at the time of the read.
    async fn get_at_revision(&self, key: &str) -> Result<(Option<Versioned>, i64), KvError> {
        let mut client = self.client.clone();
        let response = self.call("get", client.get(key, None)).await?;
        let store_revision = response.header().map_or(0, |h| h.revision());
        let value = response.kvs().first().map(|kv| Versioned {
            value: kv.value().to_vec(),
            revision: kv.mod_revision(),
        });
        Ok((value, store_revision))
    }

    /// Keeps `tx` up to date with `key` until every receiver is gone.
    async fn follow(self, key: String, tx: watch::Sender<Option<Versioned>>) {
        let mut backoff = WATCH_BACKOFF_MIN;
        loop {
            let outcome = tokio::select! {
                outcome = self.watch_once(&key, &tx) => outcome,
                () = tx.closed() => return,
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(key, "etcd watch ended, re-watching");
                    backoff = WATCH_BACKOFF_MIN;
                }
                Err((err, healthy)) => {
                    if healthy {
                        backoff = WATCH_BACKOFF_MIN;
                    }
                    tracing::warn!(key, error = %err, retry_in = ?backoff, "etcd watch failed");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = tx.closed() => return,
            }
            backoff = (backoff * 2).min(WATCH_BACKOFF_MAX);
        }
    }

    /// One watch session: read the key, publish it, then publish every
    /// change after that read. Returns when the stream ends; the flag in
    /// the error says whether the watch had been established (so the
    /// backoff restarts from its minimum).
    async fn watch_once(
        &self,
        key: &str,
        tx: &watch::Sender<Option<Versioned>>,
    ) -> Result<(), (KvError, bool)> {
        let (value, store_revision) = self.get_at_revision(key).await.map_err(|e| (e, false))?;
        publish(tx, value);

        let options = WatchOptions::new().with_start_revision(store_revision + 1);
        let mut client = self.client.clone();
        let mut stream = self
            .call("watch", client.watch(key, Some(options)))
            .await
            .map_err(|e| (e, false))?;
        loop {
            let message = stream.message().await.map_err(|source| {
                (
                    KvError::Etcd {
                        op: "watch",
                        source,
                    },
                    true,
                )
            })?;
            let Some(response) = message else {
                return Ok(());
            };
            if response.canceled() {
                tracing::info!(
                    key,
                    reason = response.cancel_reason(),
                    compact_revision = response.compact_revision(),
                    "etcd cancelled the watch"
                );
                return Ok(());
            }
            if let Some(value) = latest_value(key, &response) {
                publish(tx, value);
            }
        }
    }
}

/// The key's value after the last event of `response` that concerns it.
/// Delete events carry a key-value with version 0 (a tombstone).
fn latest_value(key: &str, response: &WatchResponse) -> Option<Option<Versioned>> {
    response
        .events()
        .iter()
        .rev()
        .filter_map(|event| event.kv())
        .find(|kv| kv.key() == key.as_bytes())
        .map(|kv| {
            (kv.version() != 0).then(|| Versioned {
                value: kv.value().to_vec(),
                revision: kv.mod_revision(),
            })
        })
}

fn publish(tx: &watch::Sender<Option<Versioned>>, value: Option<Versioned>) {
    tx.send_if_modified(|current| {
        if *current == value {
            false
        } else {
            *current = value;
            true
        }
    });
}

#[async_trait]
impl KvStore for EtcdKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        Ok(self.get_at_revision(key).await?.0)
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, KvError> {
        let mut client = self.client.clone();
        let response = self.call("put", client.put(key, value, None)).await?;
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    async fn compare_and_put(
        &self,
        key: &str,
        expected_revision: i64,
        value: Vec<u8>,
    ) -> Result<Option<i64>, KvError> {
        // A missing key compares as mod_revision 0.
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then([TxnOp::put(key, value, None)]);
        let mut client = self.client.clone();
        let response = self.call("txn", client.txn(txn)).await?;
        Ok(response
            .succeeded()
            .then(|| response.header().map_or(0, |h| h.revision())))
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut client = self.client.clone();
        self.call("delete", client.delete(key, None)).await?;
        Ok(())
    }

    async fn compare_and_delete(&self, key: &str, expected_revision: i64) -> Result<bool, KvError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                expected_revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        let mut client = self.client.clone();
        let response = self.call("txn", client.txn(txn)).await?;
        Ok(response.succeeded())
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError> {
        let mut client = self.client.clone();
        let options = GetOptions::new()
            .with_prefix()
            .with_sort(SortTarget::Key, SortOrder::Ascend);
        let response = self.call("get", client.get(prefix, Some(options))).await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    Versioned {
                        value: kv.value().to_vec(),
                        revision: kv.mod_revision(),
                    },
                )
            })
            .collect())
    }

    async fn watch_key(&self, key: &str) -> Result<KvWatch, KvError> {
        // The first read happens here so the caller starts with the current
        // value (and a connection error surfaces now, not in the log).
        let (value, _) = self.get_at_revision(key).await?;
        let (tx, rx) = watch::channel(value);
        tokio::spawn(self.clone().follow(key.to_string(), tx));
        Ok(rx)
    }

    fn max_cas_attempts(&self) -> usize {
        self.max_cas_attempts
    }
}
