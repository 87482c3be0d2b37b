//! Rust types and gRPC stubs generated from `proto/`, plus the conversions between
//! wire types and `strata-model` types. Nothing here knows about processes.
//!
//! The generated code is in [`prometheus`] and [`strata`], leaf modules the
//! hand-written ones (`convert`, `tenant`) build on.

pub mod prometheus;
pub mod strata;

pub use strata::ingester;
pub use strata::storegateway;
pub use strata::types;

mod convert;
mod tenant;

pub use convert::{
    labels_from_proto, labels_to_proto, matcher_from_proto, matcher_to_proto, matchers_from_proto,
    remote_matcher_from_proto, ConvertError,
};

pub use tenant::{request_tenant, tenant_request, TenantNotSendable, TENANT_METADATA_KEY};
