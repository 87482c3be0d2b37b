//! [`IngesterPush`], the seam between the distributor and the ingesters: what
//! the distributor asks of "the ingesters". A leaf module, since the
//! distributor, the ingester's client and the replicating fan-out all name it.

use strata_proto::prometheus::WriteRequest;
use strata_status::ServiceError;

/// Where validated series go: one ingester (implemented for
/// [`strata_ingester::IngesterClient`], remote or in-process), or all of
/// them ([`crate::ReplicatedPush`]).
#[async_trait::async_trait]
pub trait IngesterPush: Send + Sync + std::fmt::Debug {
    /// Stores the series of `request` for `tenant`; `Ok` means stored durably.
    async fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError>;
}
