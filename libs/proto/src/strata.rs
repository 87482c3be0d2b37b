//! Strata's own protobuf packages, generated from `proto/`. Generated modules
//! nest by protobuf package, so `strata.ingester` lives at `strata::ingester`
//! for its references to `super::types` and `super::super::prometheus` to
//! resolve.

// Generated code: prost and tonic decide its shape, not our lints.
#![allow(missing_debug_implementations, unreachable_pub, clippy::all)]

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
