//! Rust types and gRPC stubs generated from `proto/`, plus the conversions between
//! wire types and `strata-model` types. Nothing here knows about processes.

#![allow(missing_debug_implementations, unreachable_pub, clippy::all)]

/// Prometheus remote-write 1.0 (package `prometheus`).
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// Generated modules nest by protobuf package, so `strata.ingester` lives at
/// `strata::ingester` for its references to `super::types` and
/// `super::super::prometheus` to resolve.
pub mod strata {
    /// Messages several services share: label matchers, chunks, streamed
    /// series (package `strata.types`).
    pub mod types {
        tonic::include_proto!("strata.types");
    }
    /// The ingester's gRPC service (package `strata.ingester`). The shared
    /// messages it uses are re-exported under their old path for the code
    /// (`benches/`, `integration/`) not yet moved to [`super::types`].
    pub mod ingester {
        tonic::include_proto!("strata.ingester");
        pub use super::types::{Chunk, ChunkEncoding, LabelMatcher, MatchType, StreamSeries};
    }
    /// The store-gateway's gRPC service (package `strata.storegateway`).
    pub mod storegateway {
        tonic::include_proto!("strata.storegateway");
    }
}

pub use strata::ingester;
pub use strata::storegateway;
pub use strata::types;

mod convert;
mod tenant;

pub use convert::{
    labels_from_proto, labels_to_proto, matcher_from_proto, matcher_to_proto, matchers_from_proto,
    ConvertError,
};

pub use tenant::{request_tenant, tenant_request, TenantNotSendable, TENANT_METADATA_KEY};
