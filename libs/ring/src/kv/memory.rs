//! An in-process KV store with etcd's revision semantics.

use std::collections::HashMap;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::client::{KvStore, KvWatch, Versioned};
use crate::error::KvError;

/// An in-memory [`KvStore`]: one global revision counter like etcd, watches
/// through `tokio::sync::watch`. Clone the `Arc` holding it to share it.
#[derive(Debug, Default)]
pub struct MemoryKv {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    revision: i64,
    entries: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    value: Option<Versioned>,
    /// Exists once anyone watched or wrote the key.
    watchers: watch::Sender<Option<Versioned>>,
}

impl Entry {
    fn new() -> Self {
        Self {
            value: None,
            watchers: watch::Sender::new(None),
        }
    }

    fn set(&mut self, value: Option<Versioned>) {
        self.value.clone_from(&value);
        self.watchers.send_replace(value);
    }
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write(&self, key: &str, expected: Option<i64>, value: Vec<u8>) -> Option<i64> {
        let mut inner = self.inner.lock();
        let current = inner
            .entries
            .get(key)
            .and_then(|e| e.value.as_ref())
            .map_or(0, |v| v.revision);
        if expected.is_some_and(|expected| expected != current) {
            return None;
        }
        inner.revision += 1;
        let revision = inner.revision;
        inner
            .entries
            .entry(key.to_string())
            .or_insert_with(Entry::new)
            .set(Some(Versioned { value, revision }));
        Some(revision)
    }
}

#[async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, KvError> {
        Ok(self
            .inner
            .lock()
            .entries
            .get(key)
            .and_then(|e| e.value.clone()))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<i64, KvError> {
        Ok(self.write(key, None, value).unwrap_or_default())
    }

    async fn compare_and_put(
        &self,
        key: &str,
        expected_revision: i64,
        value: Vec<u8>,
    ) -> Result<Option<i64>, KvError> {
        Ok(self.write(key, Some(expected_revision), value))
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let mut inner = self.inner.lock();
        let exists = inner.entries.get(key).is_some_and(|e| e.value.is_some());
        if exists {
            inner.revision += 1;
            if let Some(entry) = inner.entries.get_mut(key) {
                entry.set(None);
            }
        }
        Ok(())
    }

    async fn compare_and_delete(&self, key: &str, expected_revision: i64) -> Result<bool, KvError> {
        let mut inner = self.inner.lock();
        let current = inner
            .entries
            .get(key)
            .and_then(|e| e.value.as_ref())
            .map(|v| v.revision);
        if current != Some(expected_revision) {
            return Ok(false);
        }
        inner.revision += 1;
        if let Some(entry) = inner.entries.get_mut(key) {
            entry.set(None);
        }
        Ok(true)
    }

    async fn list_prefix(&self, prefix: &str) -> Result<Vec<(String, Versioned)>, KvError> {
        let inner = self.inner.lock();
        let mut found: Vec<(String, Versioned)> = inner
            .entries
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .filter_map(|(key, entry)| Some((key.clone(), entry.value.clone()?)))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    async fn watch_key(&self, key: &str) -> Result<KvWatch, KvError> {
        let mut inner = self.inner.lock();
        let entry = inner
            .entries
            .entry(key.to_string())
            .or_insert_with(Entry::new);
        Ok(entry.watchers.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desc::RingDesc;
    use crate::kv::client::KvStoreExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn revisions_and_conditional_writes() {
        let kv = MemoryKv::new();
        assert_eq!(kv.get("k").await.unwrap(), None);
        assert_eq!(
            kv.compare_and_put("k", 5, b"x".to_vec()).await.unwrap(),
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
        let r2 = kv
            .compare_and_put("k", r1, b"b".to_vec())
            .await
            .unwrap()
            .unwrap();
        assert!(r2 > r1);
        assert_eq!(kv.get("k").await.unwrap().unwrap().value, b"b");
        kv.delete("k").await.unwrap();
        assert_eq!(kv.get("k").await.unwrap(), None);
        assert!(kv
            .compare_and_put("k", 0, b"c".to_vec())
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn conditional_deletes_and_prefix_listing() {
        let kv = MemoryKv::new();
        let r = kv.put("ha/t/a", b"1".to_vec()).await.unwrap();
        kv.put("ha/t/b", b"2".to_vec()).await.unwrap();
        kv.put("hb", b"3".to_vec()).await.unwrap();
        let keys: Vec<String> = kv
            .list_prefix("ha/")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["ha/t/a", "ha/t/b"]);
        assert!(!kv.compare_and_delete("ha/t/a", r + 100).await.unwrap());
        assert!(!kv.compare_and_delete("missing", 0).await.unwrap());
        assert!(kv.compare_and_delete("ha/t/a", r).await.unwrap());
        assert_eq!(kv.get("ha/t/a").await.unwrap(), None);
        assert_eq!(kv.list_prefix("ha/").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn watch_sees_latest_value_and_deletes() {
        let kv = MemoryKv::new();
        kv.put("k", b"1".to_vec()).await.unwrap();
        let mut w = kv.watch_key("k").await.unwrap();
        assert_eq!(w.borrow_and_update().as_ref().unwrap().value, b"1");
        kv.put("k", b"2".to_vec()).await.unwrap();
        w.changed().await.unwrap();
        assert_eq!(w.borrow_and_update().as_ref().unwrap().value, b"2");
        kv.delete("k").await.unwrap();
        w.changed().await.unwrap();
        assert!(w.borrow_and_update().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn cas_retries_on_concurrent_writers() {
        let kv: Arc<dyn KvStore> = Arc::new(MemoryKv::new());
        let mut tasks = Vec::new();
        for n in 0..8u32 {
            let kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..5u32 {
                    kv.cas::<RingDesc, _>("ring", |desc| {
                        let mut desc = desc.unwrap_or_default();
                        let id = format!("i{n}-{round}");
                        desc.instances.insert(
                            id.clone(),
                            crate::desc::InstanceDesc {
                                id,
                                addr: String::new(),
                                zone: String::new(),
                                state: crate::desc::InstanceState::Active,
                                tokens: vec![],
                                registered_timestamp: 0,
                                heartbeat_timestamp: 0,
                            },
                        );
                        Some(desc)
                    })
                    .await
                    .unwrap();
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (desc, _) = kv.get_value::<RingDesc>("ring").await.unwrap().unwrap();
        assert_eq!(desc.instances.len(), 40);
    }

    #[tokio::test]
    async fn cas_refuses_to_overwrite_corrupt_values() {
        let kv = MemoryKv::new();
        kv.put("ring", b"{not json".to_vec()).await.unwrap();
        let err = kv
            .cas::<RingDesc, _>("ring", |_| Some(RingDesc::default()))
            .await
            .unwrap_err();
        assert!(matches!(err, KvError::Decode { .. }), "{err}");
        assert_eq!(kv.get("ring").await.unwrap().unwrap().value, b"{not json");
    }

    #[tokio::test]
    async fn cas_with_no_change_does_not_write() {
        let kv = MemoryKv::new();
        let rev = kv.put("ring", b"{}".to_vec()).await.unwrap();
        let out = kv.cas::<RingDesc, _>("ring", |_| None).await.unwrap();
        assert!(out.is_none());
        assert_eq!(kv.get("ring").await.unwrap().unwrap().revision, rev);
    }
}
