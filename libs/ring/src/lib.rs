//! The hash ring, Strata's version of the toolkit Cortex and Mimir keep in
//! dskit: which instances own which part of the 32-bit token space, and so
//! which ingesters (store-gateways, rulers) hold a given series.
//!
//! It owns:
//! - the ring's stored form ([`RingDesc`], one [`InstanceDesc`] per
//!   instance, JSON under one KV key) and random [`generate_tokens`];
//! - the replication strategy ([`RingSnapshot::get_at`]): RF distinct
//!   instances clockwise from a key, distinct zones when zone-aware,
//!   unhealthy replicas dropped and the quorum checked;
//! - the KV store trait ([`KvStore`]) with an etcd backend ([`EtcdKv`]) and an
//!   in-memory one ([`MemoryKv`]), compare-and-swap and watches;
//! - the [`Lifecycler`] that registers, heartbeats and leaves, the
//!   [`Membership`] a service holds across its lifecycle, and the [`Ring`]
//!   client that keeps a local copy for lookups;
//! - the `ring` config section ([`RingConfig`]);
//! - the ring's HTTP page (list, forget an instance) and its gauges
//!   ([`http`], dskit's `ring/http.go`).
//!
//! It deliberately does not know about gRPC clients, series or tenants: a
//! caller hashes its key (`strata_model::shard_token`) and sends requests to
//! the instances this crate returns.

mod config;
mod desc;
mod error;
pub mod http;
mod kv;
mod lifecycler;
mod membership;
mod pool;
mod replication;
mod ring;
mod tokens;

pub use config::{EtcdConfig, KvConfig, KvStoreKind, RingConfig, MAX_NUM_TOKENS};
pub use desc::{now_secs, InstanceDesc, InstanceState, RingDesc};
pub use error::{ConfigError, KvError, RingError};
pub use kv::{
    new_kv_store, EtcdKv, KvStore, KvStoreExt, KvValue, KvWatch, MemoryKv, Versioned,
    DEFAULT_MAX_CAS_ATTEMPTS,
};
pub use lifecycler::{forget_instance, Lifecycler};
pub use membership::{Membership, Registration};
pub use pool::{ClientFactory, ClientPool};
pub use replication::{
    Operation, Quorum, ReplicationOptions, ReplicationSet, RingSnapshot, RingSummary,
};
pub use ring::{Ring, DEFAULT_RESYNC_PERIOD};
pub use tokens::{complete_tokens, generate_tokens, TokensFile};
