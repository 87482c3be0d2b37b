//! The distributor: the remote-write endpoint. It owns decoding a push
//! (snappy + protobuf, with size limits checked before allocating), per-series
//! validation against the tenant's limits, and forwarding the valid series to
//! the ingesters through [`IngesterPush`]. It keeps no samples itself.
//!
//! Pushes from Prometheus HA pairs are de-duplicated by the [`HaTracker`]
//! (one elected replica per cluster, agreed on through the KV store).
//!
//! Which ingesters get a series is [`ReplicatedPush`]'s concern: the ring
//! from `strata-ring`, replication to RF ingesters, and the write quorum.

mod client;
mod decode;
mod distributor;
mod error;
mod ha_tracker;
mod http_api;
mod metrics;
mod push;
mod rate_limit;
mod replicated;
mod service;
mod validation;

pub use client::push_client_options;
pub use decode::{decode_write_request, DecodeError};
pub use distributor::{Distributor, DistributorConfig, Pushed};
pub use error::DistributorError;
pub use ha_tracker::{HaTracker, HaTrackerConfig};
pub use http_api::router;
pub use push::IngesterPush;
pub use replicated::{PushClientFactory, PushClientPool, ReplicatedPush};
pub use service::DistributorService;
pub use validation::{format_series, validate_labels, Rejection};
