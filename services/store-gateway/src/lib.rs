//! The store-gateway: serves the blocks tenants have in object storage to
//! queriers, without downloading whole blocks. It owns discovering each
//! tenant's blocks (the compactor's bucket index, else a listing; blocks
//! marked for deletion are dropped after `ignore_deletion_mark_delay`), the
//! local index-header of each block (built once by ranged reads, kept in
//! `sync_dir` so a restart fetches nothing), the ranged reader that counts
//! every object-storage request, the byte-budgeted LRU caches of postings,
//! series and chunks, the sharding of blocks over store-gateways with the
//! ring ([`sharding`]), and the gRPC `StoreGateway` service that streams
//! series with their chunks in bounded batches.
//!
//! It deliberately does not merge series across blocks or replicas (the
//! querier merges everything it receives), evaluate PromQL, or write to the
//! bucket. Block queries run on Tokio's blocking pool over the synchronous
//! block readers of `strata-tsdb`; see [`reader`](crate::reader) for why.
//!
//! Its client ([`StoreGatewayClient`], remote over gRPC or this process's own
//! in-process) is here too: it is what queriers read blocks through.

mod block;
mod cache;
mod client;
mod config;
mod error;
mod lifecycle;
mod metrics;
mod reader;
mod service;
pub mod sharding;
mod store;

#[cfg(test)]
mod tests;

pub use client::StoreGatewayClient;
pub use config::{ShardingRingConfig, StoreGatewayConfig};
pub use error::StoreError;
pub use lifecycle::{LifecycleError, StoreGatewayService};
pub use metrics::StoreMetrics;
pub use service::{grpc_service, StoreGatewayGrpc};
pub use sharding::ShardingStrategy;
pub use store::{BlocksAnswer, BucketStore, SyncStats};
