//! The store-gateway's metrics: object-storage requests and bytes (counted by
//! the ranged reader, so a benchmark can read them per query), the caches'
//! hits and misses, and what is loaded.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every metric of one store-gateway.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Object-storage requests by operation (`get_range`, `get`, `head`, `list`).
    pub(crate) requests: IntCounterVec,
    /// Bytes received from object storage by operation.
    pub(crate) request_bytes: IntCounterVec,
    pub(crate) request_failures: IntCounterVec,
    pub(crate) cache_requests: IntCounterVec,
    pub(crate) cache_hits: IntCounterVec,
    pub(crate) cache_evictions: IntCounterVec,
    pub(crate) cache_bytes: IntGaugeVec,
    pub(crate) cache_items: IntGaugeVec,
    pub(crate) blocks_loaded: IntGauge,
    pub(crate) block_loads: IntCounter,
    pub(crate) block_load_failures: IntCounter,
    pub(crate) block_drops: IntCounter,
    pub(crate) syncs: IntCounter,
    pub(crate) sync_failures: IntCounter,
    pub(crate) series_returned: IntCounter,
    pub(crate) chunks_returned: IntCounter,
}

impl StoreMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge_vec = |name: &str, help: &str, label: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let metrics = Self {
            requests: counter_vec(
                "strata_storegateway_bucket_requests_total",
                "Requests the store-gateway sent to object storage, by operation.",
                "operation",
            )?,
            request_bytes: counter_vec(
                "strata_storegateway_bucket_received_bytes_total",
                "Bytes the store-gateway received from object storage, by operation.",
                "operation",
            )?,
            request_failures: counter_vec(
                "strata_storegateway_bucket_request_failures_total",
                "Object-storage requests of the store-gateway that failed, by operation.",
                "operation",
            )?,
            cache_requests: counter_vec(
                "strata_storegateway_cache_requests_total",
                "Lookups in the store-gateway's in-memory caches (postings, series, chunks).",
                "cache",
            )?,
            cache_hits: counter_vec(
                "strata_storegateway_cache_hits_total",
                "Lookups in the store-gateway's in-memory caches that found the data.",
                "cache",
            )?,
            cache_evictions: counter_vec(
                "strata_storegateway_cache_evictions_total",
                "Entries evicted from the store-gateway's caches to stay within their byte budget.",
                "cache",
            )?,
            cache_bytes: gauge_vec(
                "strata_storegateway_cache_memory_bytes",
                "Bytes held by each of the store-gateway's caches.",
                "cache",
            )?,
            cache_items: gauge_vec(
                "strata_storegateway_cache_items",
                "Entries held by each of the store-gateway's caches.",
                "cache",
            )?,
            blocks_loaded: gauge(
                "strata_storegateway_blocks_loaded",
                "Blocks the store-gateway serves (index-header loaded).",
            )?,
            block_loads: counter(
                "strata_storegateway_block_loads_total",
                "Blocks loaded (index-header read from local disk or built from the bucket).",
            )?,
            block_load_failures: counter(
                "strata_storegateway_block_load_failures_total",
                "Blocks that could not be loaded; retried at the next sync.",
            )?,
            block_drops: counter(
                "strata_storegateway_block_drops_total",
                "Blocks no longer served: deleted, marked for deletion, or now owned by another store-gateway.",
            )?,
            syncs: counter(
                "strata_storegateway_bucket_syncs_total",
                "Scans of the bucket for new and deleted blocks.",
            )?,
            sync_failures: counter(
                "strata_storegateway_bucket_sync_failures_total",
                "Scans of the bucket that failed (for at least one tenant).",
            )?,
            series_returned: counter(
                "strata_storegateway_series_returned_total",
                "Series sent to queriers (once per block holding them).",
            )?,
            chunks_returned: counter(
                "strata_storegateway_chunks_returned_total",
                "Chunks sent to queriers.",
            )?,
        };
        for cache in ["postings", "series", "chunks"] {
            metrics.cache_requests.with_label_values(&[cache]);
            metrics.cache_hits.with_label_values(&[cache]);
            metrics.cache_evictions.with_label_values(&[cache]);
            metrics.cache_bytes.with_label_values(&[cache]);
            metrics.cache_items.with_label_values(&[cache]);
        }
        for op in ["get_range", "get", "head", "list"] {
            metrics.requests.with_label_values(&[op]);
            metrics.request_bytes.with_label_values(&[op]);
            metrics.request_failures.with_label_values(&[op]);
        }
        Ok(metrics)
    }

    /// Requests and bytes of the `get_range` operation so far: what a query
    /// cost in object storage is the difference before and after it.
    pub fn ranged_reads(&self) -> (u64, u64) {
        (
            self.requests.with_label_values(&["get_range"]).get(),
            self.request_bytes.with_label_values(&["get_range"]).get(),
        )
    }

    /// (lookups, hits) of one cache so far.
    pub fn cache_stats(&self, cache: &str) -> (u64, u64) {
        (
            self.cache_requests.with_label_values(&[cache]).get(),
            self.cache_hits.with_label_values(&[cache]).get(),
        )
    }
}
