//! The tonic service: gRPC in, [`Ingester`] calls, gRPC out.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use strata_model::Matcher;
use strata_proto::ingester::ingester_server::{Ingester as IngesterApi, IngesterServer};
use strata_proto::ingester::{
    ExemplarQueryRequest, ExemplarQueryResponse, LabelNamesRequest, LabelNamesResponse, LabelSet,
    LabelValuesRequest, LabelValuesResponse, MatcherSet, MetricsMetadataRequest,
    MetricsMetadataResponse, PushResponse, QueryRequest, QueryStreamResponse, SeriesRequest,
    SeriesResponse,
};
use strata_proto::prometheus::WriteRequest;
use strata_proto::types::{Chunk, ChunkEncoding, LabelMatcher, StreamSeries};

use strata_service::Slot;
use strata_status::{ErrorCode, ServiceError};
use tonic::{Request, Response, Status};

use crate::ingester::Ingester;

/// The gRPC face of an [`Ingester`]. `-target=all` calls it in-process through
/// the same trait the network server uses.
#[derive(Debug, Clone)]
pub struct IngesterGrpc {
    ingester: Slot<Ingester>,
}

impl IngesterGrpc {
    pub fn new(ingester: Arc<Ingester>) -> Self {
        Self::of_slot(Slot::filled(ingester))
    }

    /// Serves the ingester the slot will hold; until its WAL is replayed,
    /// every call is refused as unavailable (callers try another replica).
    pub fn of_slot(ingester: Slot<Ingester>) -> Self {
        Self { ingester }
    }

    fn ingester(&self) -> Result<Arc<Ingester>, Status> {
        self.ingester.get().ok_or_else(|| {
            ServiceError::new(
                ErrorCode::Unavailable,
                "the ingester is starting (replaying its WAL)",
            )
            .into()
        })
    }
}

/// The service ready to add to a tonic server.
pub fn grpc_service(ingester: Slot<Ingester>) -> IngesterServer<IngesterGrpc> {
    IngesterServer::new(IngesterGrpc::of_slot(ingester))
        .max_decoding_message_size(100 << 20)
        .max_encoding_message_size(100 << 20)
}

fn tenant<T>(request: &Request<T>) -> Result<String, Status> {
    strata_proto::request_tenant(request)
}

fn matchers(ms: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    strata_proto::matchers_from_proto(ms)
        .map_err(|e| ServiceError::new(ErrorCode::BadRequest, e.to_string()).into())
}

fn matcher_sets(sets: &[MatcherSet]) -> Result<Vec<Vec<Matcher>>, Status> {
    sets.iter().map(|s| matchers(&s.matchers)).collect()
}

type QueryStream =
    Pin<Box<dyn Stream<Item = Result<QueryStreamResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl IngesterApi for IngesterGrpc {
    async fn push(&self, request: Request<WriteRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant = tenant(&request)?;
        self.ingester()?.push(&tenant, request.into_inner()).await?;
        Ok(Response::new(PushResponse {}))
    }

    type QueryStreamStream = QueryStream;

    async fn query_stream(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryStreamStream>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let matchers = matchers(&req.matchers)?;
        let found = self.ingester()?.query(
            &tenant,
            &matchers,
            req.start_timestamp_ms,
            req.end_timestamp_ms,
        )?;
        let batch = self.ingester()?.config().query_stream_batch_size.max(1);
        let mut messages = Vec::with_capacity(found.len() / batch + 1);
        let mut current = Vec::with_capacity(batch.min(found.len()));
        for s in found {
            current.push(StreamSeries {
                labels: strata_proto::labels_to_proto(&s.labels),
                chunks: s
                    .chunks
                    .into_iter()
                    .map(|c| Chunk {
                        min_time_ms: c.min_time,
                        max_time_ms: c.max_time,
                        encoding: ChunkEncoding::Xor as i32,
                        data: c.data.into(),
                    })
                    .collect(),
            });
            if current.len() == batch {
                messages.push(Ok(QueryStreamResponse {
                    series: std::mem::take(&mut current),
                }));
            }
        }
        if !current.is_empty() {
            messages.push(Ok(QueryStreamResponse { series: current }));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(messages))))
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> Result<Response<LabelNamesResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let matchers = matchers(&req.matchers)?;
        let label_names = self.ingester()?.label_names(
            &tenant,
            &matchers,
            req.start_timestamp_ms,
            req.end_timestamp_ms,
        )?;
        Ok(Response::new(LabelNamesResponse { label_names }))
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> Result<Response<LabelValuesResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let matchers = matchers(&req.matchers)?;
        let label_values = self.ingester()?.label_values(
            &tenant,
            &req.label_name,
            &matchers,
            req.start_timestamp_ms,
            req.end_timestamp_ms,
        )?;
        Ok(Response::new(LabelValuesResponse { label_values }))
    }

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> Result<Response<SeriesResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let sets = matcher_sets(&req.matcher_sets)?;
        let series = self.ingester()?.series(
            &tenant,
            &sets,
            req.start_timestamp_ms,
            req.end_timestamp_ms,
        )?;
        Ok(Response::new(SeriesResponse {
            series: series
                .iter()
                .map(|l| LabelSet {
                    labels: strata_proto::labels_to_proto(l),
                })
                .collect(),
        }))
    }

    async fn metrics_metadata(
        &self,
        request: Request<MetricsMetadataRequest>,
    ) -> Result<Response<MetricsMetadataResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let metadata = self.ingester()?.metric_metadata(
            &tenant,
            &req.metric,
            req.limit,
            req.limit_per_metric,
        )?;
        Ok(Response::new(MetricsMetadataResponse { metadata }))
    }

    async fn query_exemplars(
        &self,
        request: Request<ExemplarQueryRequest>,
    ) -> Result<Response<ExemplarQueryResponse>, Status> {
        let tenant = tenant(&request)?;
        let req = request.into_inner();
        let sets = matcher_sets(&req.matcher_sets)?;
        let found = self.ingester()?.exemplars(
            &tenant,
            &sets,
            req.start_timestamp_ms,
            req.end_timestamp_ms,
        )?;
        let timeseries = found
            .into_iter()
            .map(|(labels, list)| strata_proto::prometheus::TimeSeries {
                labels: strata_proto::labels_to_proto(&labels),
                exemplars: list
                    .into_iter()
                    .map(|e| strata_proto::prometheus::Exemplar {
                        labels: strata_proto::labels_to_proto(&e.labels),
                        value: e.value,
                        timestamp: e.timestamp_ms,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(ExemplarQueryResponse { timeseries }))
    }
}
