//! The key-value store the ring lives in: a small async trait with two
//! backends, [`EtcdKv`] (production) and [`MemoryKv`] (single process, tests).
//!
//! The trait is byte-oriented and object-safe, so components hold an
//! `Arc<dyn KvStore>`; [`KvStoreExt::cas`] adds the typed compare-and-swap
//! loop on top of [`KvStore::compare_and_put`]. The trait and its types are in
//! `client`, which both backends implement; this module only picks a backend
//! from the config ([`new_kv_store`]).

mod client;
mod etcd;
mod memory;

use std::sync::Arc;

use crate::config::{KvConfig, KvStoreKind};
use crate::error::KvError;

pub use client::{KvStore, KvStoreExt, KvValue, KvWatch, Versioned, DEFAULT_MAX_CAS_ATTEMPTS};
pub use etcd::EtcdKv;
pub use memory::MemoryKv;

/// Builds the store `config` names. Each call makes a new store: with
/// `store: inmemory` every component of a process must share the one
/// returned here, or they will not see each other.
pub async fn new_kv_store(config: &KvConfig) -> Result<Arc<dyn KvStore>, KvError> {
    match config.store {
        KvStoreKind::Inmemory => Ok(Arc::new(MemoryKv::new())),
        KvStoreKind::Etcd => Ok(Arc::new(EtcdKv::connect(&config.etcd).await?)),
    }
}
