//! Pushing to one ingester through the ingester's own client
//! ([`strata_ingester::IngesterClient`], remote or in-process).

use std::time::Duration;

use strata_grpc_client::ClientOptions;
use strata_ingester::IngesterClient;
use strata_proto::prometheus::WriteRequest;
use strata_status::ServiceError;

use crate::push::IngesterPush;

/// How the distributor's remote ingester clients connect: `remote_timeout`
/// bounds both connecting and each push (a slower replica counts as failed
/// for the quorum); a push's answer is small.
pub fn push_client_options(remote_timeout: Duration) -> ClientOptions {
    ClientOptions {
        timeout: remote_timeout,
        connect_timeout: remote_timeout,
        max_recv_message_size: 16 << 20,
    }
}

#[async_trait::async_trait]
impl IngesterPush for IngesterClient {
    async fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
        IngesterClient::push(self, tenant, request).await
    }
}
