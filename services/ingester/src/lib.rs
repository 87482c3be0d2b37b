//! The ingester: one in-memory head per tenant (from `strata-tsdb`) behind the
//! gRPC `Ingester` service of `proto/ingester.proto`. Distributors push to it;
//! queriers read recent data from it as streamed XOR chunks.
//!
//! Durability ([`Ingester::open`]): one write-ahead log per ingester, shared
//! by every tenant, in `<blocks_storage.tsdb.dir>/@wal`: one flusher thread,
//! one open segment and one fsync for all the tenants' pushes in flight,
//! however many tenants there are. A push appends to its tenant's head and
//! logs exactly the samples the head accepted, under the tenant's append lock
//! (so the WAL's order of a series' samples is the head's), then waits, outside
//! the lock, until the WAL says the record is durable per `wal_fsync` before it
//! is acknowledged. On start the WAL is replayed into every tenant's head, and
//! the per-tenant WALs of earlier versions (`<tenant>/wal`) are migrated into
//! it, before the ingester serves (and before the binary makes it ACTIVE in
//! the ring).
//!
//! Blocks ([`Ingester::spawn_background`]): when a head spans more than 1.5 ×
//! `block_ranges_period`, its oldest full range is written as a Prometheus
//! block in `<tenant>/<ULID>/` and the head drops what the block holds; after
//! a round that cut anything the WAL is checkpointed once for every tenant.
//! A head idle for `head_compaction_idle_timeout` is cut whole; a tenant idle
//! for `close_idle_tsdb_timeout` with everything shipped is closed (its head
//! freed, its local directory removed) until its next push. A shipper uploads
//! new blocks to the bucket (meta.json last), retrying with backoff without
//! ever holding up pushes, and records them in `<tenant>/shipper.json`;
//! shipped blocks are deleted locally after `retention_period`.
//! [`Ingester::flush`] cuts the whole head and ships it. All of this runs on
//! two tasks for every tenant, not on threads per tenant.
//!
//! Series limits: with [`Ingester::with_limits`], a push that would create a
//! series beyond the tenant's share of `max_global_series_per_user` or
//! `max_global_series_per_metric` has that series rejected (429). The share
//! is [`strata_limits::local_series_limit`] of the counts a [`RingCounts`]
//! reports. The check and the creation are not one atomic step, so concurrent
//! pushes can overshoot a limit by the series they create at the same moment.
//!
//! Metric metadata (`metadata`): the remote-write metadata entries, per
//! tenant and metric family, in memory only and forgotten when not received
//! again within `metadata_retain_period`; bounded by the tenant's share of
//! `max_global_metadata_per_user` and by `max_global_metadata_per_metric`.
//!
//! Its client ([`IngesterClient`]) is here too: remote over gRPC or this
//! process's own in-process, it is what distributors push through and
//! queriers read through.
mod client;
mod config;
mod db;
mod error;
mod http;
mod ingester;
mod lifecycle;
mod metadata;
mod metrics;
mod series_limits;
mod service;

pub use client::IngesterClient;
pub use config::IngesterConfig;
pub use error::IngesterError;
pub use http::router;
pub use ingester::{FlushStats, Ingester, FLUSH_KEEPS_RECENT};
pub use lifecycle::{IngesterService, LifecycleError};
pub use series_limits::{FixedRingCounts, RingCounts};
pub use service::{grpc_service, IngesterGrpc};
