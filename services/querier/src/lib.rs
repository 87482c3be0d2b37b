//! The querier: the Prometheus HTTP API (`/api/v1/query`, `query_range`, `series`,
//! `labels`, `label/<name>/values`, `metadata`, `query_exemplars` and the small status endpoints, also under
//! `/prometheus/api/v1/`) over the PromQL engine, and Prometheus remote read
//! (`/api/v1/read`, both response types) over the same series, reading each tenant's recent
//! series from the ingesters and older ones from the store-gateways
//! (`query_ingesters_within`, `query_store_after`). It owns request parsing and validation as Prometheus
//! does them, the JSON shapes of Prometheus's responses, the mapping of engine and
//! storage errors to Prometheus's error types and statuses, the decoding of
//! streamed chunks into samples within the queried range, and the merging of
//! series that several sources return.
//!
//! It deliberately does not own PromQL evaluation (`strata-promql`), chunk
//! encoding (`strata-tsdb`), who the tenant is (a resolver passed to [`router`]),
//! which ingesters hold a tenant (the ring; [`ReplicatedQuery`] asks them
//! all and tolerates RF/2 failures) or which store-gateway serves which block
//! (their ring; [`StoreGatewaySet`] asks each block's owners and checks that
//! every block the bucket shows was answered, [`BlocksFinder`] reading which
//! blocks those are), nor the clients that reach
//! them: those are the ingester's and the store-gateway's own
//! (`strata_ingester::IngesterClient`, `strata_store_gateway::StoreGatewayClient`),
//! for which [`IngesterQuery`] and [`StoreGatewayQuery`] are implemented here.
//! It keeps no state between requests.

mod api;
mod blocks_finder;
mod config;
mod engine;
mod error;
mod exemplars;
mod ingester;
mod json;
mod metadata;
mod params;
mod querier;
mod remote_read;
mod replicated;
mod service;
mod status;
mod storage;
mod store_gateway;

pub use api::{router, TenantResolver};
pub use blocks_finder::{BlocksFinder, WantedBlock};
pub use config::{ConfigError, QuerierConfig, QueryClientConfig};
pub use engine::{EngineError, QueryOutput};
pub use error::{ApiError, StartError};
pub use ingester::IngesterQuery;
pub use json::{InstantSample, ResultData};
pub use params::{RangeParams, MAX_TIME_MS, MIN_TIME_MS};
pub use querier::Querier;
pub use replicated::{QueryClientFactory, QueryClientPool, ReplicatedQuery};
pub use service::QuerierService;
pub use status::ProcessStatus;
pub use storage::{
    decode_stream_series, merge_samples, merge_series, SourceSplit, TenantQueryable,
};
pub use store_gateway::{
    StoreGatewayClientFactory, StoreGatewayClientPool, StoreGatewayQuery, StoreGatewayReplica,
    StoreGatewaySet,
};
