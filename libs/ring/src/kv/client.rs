//! What a KV store is, to the ring: the [`KvStore`] trait the backends
//! implement, the [`Versioned`] values and [`KvWatch`]es it hands out, and the
//! typed compare-and-swap loop ([`KvStoreExt::cas`]) on top of it. A leaf
//! module, so the backends depend on it and not on the module that chooses
//! between them.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngExt;
use tokio::sync::watch;

use crate::desc::RingDesc;
use crate::error::KvError;

/// A stored value and the revision that last modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes stored.
    pub value: Vec<u8>,
    /// The store's modification revision of the key (always > 0).
    pub revision: i64,
}

/// The receiving end of [`KvStore::watch_key`]: always holds the latest value
/// of the key (`None` when it does not exist). Intermediate values may be
/// skipped; a ring only needs the latest.
pub type KvWatch = watch::Receiver<Option<Versioned>>;

/// Default for [`KvStore::max_cas_attempts`].
pub const DEFAULT_MAX_CAS_ATTEMPTS: usize = 10;

/// A key-value store with per-key revisions, conditional writes and watches.
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The current value of `key` and its revision.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError>;

    /// Writes `value` unconditionally; returns the new revision.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, KvError>;

    /// Writes `value` only if the key's modification revision is still
    /// `expected_revision` (0: the key must not exist). Returns the new
    /// revision, or `None` if the key changed in between.
    async fn compare_and_put(
        &self,
        key: &str,
        expected_revision: i64,
        value: Vec<u8>,
    ) -> Result<Option<i64>, KvError>;

    /// Deletes `key` (nothing happens if it does not exist).
    async fn delete(&self, key: &str) -> Result<(), KvError>;

    /// Deletes `key` only if its modification revision is still
    /// `expected_revision`; returns whether it was deleted.
    async fn compare_and_delete(&self, key: &str, expected_revision: i64) -> Result<bool, KvError>;

    /// Every key starting with `prefix`, with its value, in key order.
    async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError>;

    /// Follows `key`: the receiver holds its current value and is updated on
    /// every change. Backends re-establish the watch after errors on their
    /// own; the background work ends when every receiver is dropped.
    async fn watch_key(&self, key: &str) -> Result<KvWatch, KvError>;

    /// How many times [`KvStoreExt::cas`] tries before giving up on conflicts.
    fn max_cas_attempts(&self) -> usize {
        DEFAULT_MAX_CAS_ATTEMPTS
    }
}

/// A value type stored in the KV store.
pub trait KvValue: Sized + Send {
    /// Decodes the stored bytes; `key` only names the value in errors.
    fn decode_value(key: &str, bytes: &[u8]) -> Result<Self, KvError>;
    /// Encodes the value for storage.
    fn encode_value(&self) -> Result<Vec<u8>, KvError>;
}

impl KvValue for RingDesc {
    fn decode_value(key: &str, bytes: &[u8]) -> Result<Self, KvError> {
        RingDesc::decode(key, bytes)
    }
    fn encode_value(&self) -> Result<Vec<u8>, KvError> {
        self.encode()
    }
}

/// Typed helpers over any [`KvStore`].
pub trait KvStoreExt: KvStore {
    /// Compare-and-swap loop: reads `key`, calls `f` with the decoded value
    /// (`None` if absent) and writes what `f` returns if nobody wrote the key
    /// in between; otherwise tries again with the fresh value, at most
    /// [`KvStore::max_cas_attempts`] times. `f` returning `None` means
    /// "nothing to change" and ends the loop without writing.
    ///
    /// Returns the value written (or `None` if `f` declined). A value that
    /// does not decode is an error: it is never silently overwritten.
    fn cas<T, F>(
        &self,
        key: &str,
        mut f: F,
    ) -> impl Future<Output = Result<Option<T>, KvError>> + Send
    where
        T: KvValue + Clone,
        F: FnMut(Option<T>) -> Option<T> + Send,
    {
        async move {
            let attempts = self.max_cas_attempts().max(1);
            for attempt in 0..attempts {
                let (revision, current) = match self.get(key).await? {
                    Some(v) => (v.revision, Some(T::decode_value(key, &v.value)?)),
                    None => (0, None),
                };
                let Some(next) = f(current) else {
                    return Ok(None);
                };
                let bytes = next.encode_value()?;
                if self.compare_and_put(key, revision, bytes).await?.is_some() {
                    return Ok(Some(next));
                }
                tracing::debug!(key, attempt, "compare-and-swap conflict, retrying");
                let pause = cas_backoff(attempt);
                tokio::time::sleep(pause).await;
            }
            Err(KvError::CasConflict {
                key: key.to_string(),
                attempts,
            })
        }
    }

    /// Reads and decodes `key`.
    fn get_value<T: KvValue>(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<(T, i64)>, KvError>> + Send {
        async move {
            match self.get(key).await? {
                Some(v) => Ok(Some((T::decode_value(key, &v.value)?, v.revision))),
                None => Ok(None),
            }
        }
    }
}

impl<K: KvStore + ?Sized> KvStoreExt for K {}

/// A short random pause between conflicting CAS attempts, growing with the
/// attempt number, so contending writers spread out.
fn cas_backoff(attempt: usize) -> Duration {
    let ceiling_ms = 5u64 << attempt.min(6);
    Duration::from_millis(rand::rng().random_range(1..=ceiling_ms))
}
