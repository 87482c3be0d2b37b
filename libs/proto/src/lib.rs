//! Rust types and gRPC stubs generated from `proto/`, plus the conversions between
//! wire types and `strata-model` types. Nothing here knows about processes.

#![allow(missing_debug_implementations, unreachable_pub, clippy::all)]

/// Prometheus remote-write 1.0 (package `prometheus`).
pub mod prometheus {
    tonic::include_proto!("prometheus");
}

/// Generated modules nest by protobuf package, so `strata.ingester` lives at
/// `strata::ingester` for its references to `super::super::prometheus` to resolve.
pub mod strata {
    /// The ingester's gRPC service (package `strata.ingester`).
    pub mod ingester {
        tonic::include_proto!("strata.ingester");
    }
    /// The store-gateway's gRPC service (package `strata.storegateway`).
    pub mod storegateway {
        tonic::include_proto!("strata.storegateway");
    }
}

pub use strata::ingester;
pub use strata::storegateway;

mod convert;
mod tenant;

pub use convert::{
    labels_from_proto, labels_to_proto, matcher_from_proto, matcher_to_proto, matchers_from_proto,
    ConvertError,
};

pub use tenant::{request_tenant, tenant_request, TenantNotSendable, TENANT_METADATA_KEY};
