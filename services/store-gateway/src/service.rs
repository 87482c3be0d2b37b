//! The gRPC `StoreGateway` service over a [`BucketStore`]: the tenant from the
//! `x-scope-orgid` metadata, matchers from the wire, errors mapped once.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use strata_model::Matcher;
use strata_proto::storegateway::store_gateway_server::{StoreGateway, StoreGatewayServer};
use strata_proto::storegateway::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse, SeriesRequest,
    SeriesResponse,
};
use strata_proto::types::LabelMatcher;

use strata_status::{ErrorCode, ServiceError};
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::store::BucketStore;

/// The service, cheap to clone (the in-process client of `-target=all`
/// calls it directly).
#[derive(Debug, Clone)]
pub struct StoreGatewayGrpc {
    store: Arc<BucketStore>,
}

impl StoreGatewayGrpc {
    pub fn new(store: Arc<BucketStore>) -> Self {
        Self { store }
    }
}

/// The tonic server for `store`.
pub fn grpc_service(store: Arc<BucketStore>) -> StoreGatewayServer<StoreGatewayGrpc> {
    StoreGatewayServer::new(StoreGatewayGrpc::new(store))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(100 << 20)
}

fn tenant<T>(request: &Request<T>) -> Result<String, Status> {
    strata_proto::request_tenant(request)
}

fn matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    strata_proto::matchers_from_proto(ms)
        .map_err(|e| ServiceError::new(ErrorCode::BadRequest, e.to_string()).into())
}

/// A store error as the caller sees it: its own code (see
/// [`StoreError`]'s `Coded`), and a message that says where it happened, as
/// an in-process caller has no peer address to add.
fn status(error: StoreError) -> Status {
    let mut error = ServiceError::from_coded(&error);
    error.message = format!("store-gateway: {}", error.message);
    error.into()
}

type SeriesStream = Pin<Box<dyn Stream<Item = Result<SeriesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl StoreGateway for StoreGatewayGrpc {
    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<Self::SeriesStream>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let matchers = matchers(&req.matchers)?;
        let rx = self.store.series(
            &tenant,
            matchers,
            (req.min_time_ms, req.max_time_ms),
            &req.block_ids,
            req.skip_chunks,
        );
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|r| r.map_err(status));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let matchers = matchers(&req.matchers)?;
        let answer = self
            .store
            .label_names(
                &tenant,
                matchers,
                (req.min_time_ms, req.max_time_ms),
                &req.block_ids,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(LabelNamesResponse {
            label_names: answer.value,
            queried_blocks: answer.queried_blocks,
        }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let matchers = matchers(&req.matchers)?;
        let answer = self
            .store
            .label_values(
                &tenant,
                &req.label_name,
                matchers,
                (req.min_time_ms, req.max_time_ms),
                &req.block_ids,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(LabelValuesResponse {
            label_values: answer.value,
            queried_blocks: answer.queried_blocks,
        }))
    }
}
