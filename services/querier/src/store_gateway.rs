//! The seam between the querier and the store-gateways, the twin of
//! [`crate::IngesterQuery`]: [`StoreGatewayQuery`] is what the querier asks of
//! "the blocks in object storage"; [`StoreGatewayReplica`] is what it asks
//! one store-gateway (its own client, [`StoreGatewayClient`], remote or
//! in-process), and [`StoreGatewaySet`] asks the store-gateways of the ring
//! for the blocks each owns, checking that every block was answered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use prometheus::{IntCounter, Opts, Registry};
use strata_proto::storegateway::{LabelNamesRequest, LabelValuesRequest, SeriesRequest};
use strata_proto::types::StreamSeries;
use strata_ring::{InstanceDesc, Operation, Ring};
use strata_status::ServiceError;
use strata_store_gateway::sharding::{block_owners, block_token};
use strata_store_gateway::{BlocksAnswer, StoreGatewayClient};

use crate::blocks_finder::{BlocksFinder, WantedBlock};

/// Read access to the blocks in object storage, one tenant per call.
#[async_trait::async_trait]
pub trait StoreGatewayQuery: Send + Sync + fmt::Debug {
    /// Series matching the request with their chunks overlapping [min, max]
    /// (labels only with `skip_chunks`); a series may come several times
    /// (once per block holding it).
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError>;

    /// Label names of the series matching the request, in any order.
    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError>;

    /// Values of one label among the series matching the request.
    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError>;
}

/// One store-gateway: the blocks it read come with each answer, so that the
/// querier can tell which of those it asked for were answered. With
/// `block_ids` in a request, only those blocks are read.
#[async_trait::async_trait]
pub trait StoreGatewayReplica: Send + Sync + fmt::Debug {
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<BlocksAnswer<Vec<StreamSeries>>, ServiceError>;

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<BlocksAnswer<Vec<String>>, ServiceError>;

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<BlocksAnswer<Vec<String>>, ServiceError>;
}

/// One store-gateway, over gRPC or in-process: its own client.
#[async_trait::async_trait]
impl StoreGatewayReplica for StoreGatewayClient {
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<BlocksAnswer<Vec<StreamSeries>>, ServiceError> {
        StoreGatewayClient::series(self, tenant, request).await
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<BlocksAnswer<Vec<String>>, ServiceError> {
        StoreGatewayClient::label_names(self, tenant, request).await
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<BlocksAnswer<Vec<String>>, ServiceError> {
        StoreGatewayClient::label_values(self, tenant, request).await
    }
}

/// Makes the client for the store-gateway at an address (gRPC, or the
/// process's own store-gateway in-process).
pub type StoreGatewayClientFactory =
    strata_ring::ClientFactory<dyn StoreGatewayReplica, ServiceError>;

/// One client per store-gateway address, made on first use.
pub type StoreGatewayClientPool = strata_ring::ClientPool<dyn StoreGatewayReplica, ServiceError>;

/// The querier's counters of block reads that needed more than one try.
#[derive(Debug, Clone)]
struct ConsistencyMetrics {
    checks: IntCounter,
    checks_failed: IntCounter,
    refetches: IntCounter,
}

impl ConsistencyMetrics {
    fn new(registry: &Registry) -> prometheus::Result<Self> {
        let counter = |name: &str, help: &str| -> prometheus::Result<IntCounter> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            checks: counter(
                "strata_querier_blocks_consistency_checks_total",
                "Block reads checked for every needed block having been answered by a store-gateway.",
            )?,
            checks_failed: counter(
                "strata_querier_blocks_consistency_checks_failed_total",
                "Block reads failed because some needed block was answered by no store-gateway.",
            )?,
            refetches: counter(
                "strata_querier_storegateway_refetches_total",
                "Requests to a further store-gateway replica for blocks a first one failed, did not answer or was slow to answer.",
            )?,
        })
    }
}

/// One block of a read, and who may still be asked for it.
#[derive(Debug)]
struct BlockAttempts {
    id: String,
    required: bool,
    /// Owners not asked yet, healthy ones first.
    untried: VecDeque<Arc<InstanceDesc>>,
    in_flight: usize,
    answered: bool,
    /// A block not required, given up on after the hedging delay.
    abandoned: bool,
}

impl BlockAttempts {
    fn settled(&self) -> bool {
        self.answered
            || (!self.required
                && (self.abandoned || (self.in_flight == 0 && self.untried.is_empty())))
    }

    fn lost(&self) -> bool {
        self.required && !self.answered && self.in_flight == 0 && self.untried.is_empty()
    }
}

/// Takes the next owner of every block `pick` chooses and groups the blocks
/// by that owner: one request per store-gateway.
fn next_requests(
    blocks: &mut [BlockAttempts],
    pick: impl Fn(&BlockAttempts) -> bool,
) -> Vec<(Arc<InstanceDesc>, Vec<usize>)> {
    let mut by_owner: HashMap<String, (Arc<InstanceDesc>, Vec<usize>)> = HashMap::new();
    for (i, block) in blocks.iter_mut().enumerate() {
        if !pick(block) {
            continue;
        }
        let Some(owner) = block.untried.pop_front() else {
            continue;
        };
        block.in_flight += 1;
        by_owner
            .entry(owner.id.clone())
            .or_insert_with(|| (owner, Vec::new()))
            .1
            .push(i);
    }
    let mut requests: Vec<_> = by_owner.into_values().collect();
    requests.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    requests
}

/// The store-gateways of the ring, as one [`StoreGatewayQuery`]. A read
/// learns the tenant's blocks in its range ([`BlocksFinder`]), asks each
/// block's first owner (healthy ones first) for it — one request per
/// store-gateway, naming its blocks — and checks the blocks each answer says
/// it read. A block an owner failed, did not read, or has not answered
/// within the hedging delay is asked of its next owner (with
/// `store_gateway.sharding_ring.replication_factor` > 1 there is one); the
/// read fails, naming the blocks, only when a required block is left with
/// no owner to ask. A block answered twice (a hedge) is merged away by the
/// querier like any series seen twice.
#[derive(Debug)]
pub struct StoreGatewaySet {
    ring: Ring,
    pool: StoreGatewayClientPool,
    finder: Arc<BlocksFinder>,
    hedging_delay: Option<Duration>,
    metrics: ConsistencyMetrics,
}

impl StoreGatewaySet {
    /// The store-gateways of `ring`, reached through `pool`, reading the
    /// blocks `finder` names; counters registered in `registry`.
    pub fn new(
        ring: Ring,
        pool: StoreGatewayClientPool,
        finder: Arc<BlocksFinder>,
        registry: &Registry,
    ) -> prometheus::Result<Self> {
        Ok(Self {
            ring,
            pool,
            finder,
            hedging_delay: None,
            metrics: ConsistencyMetrics::new(registry)?,
        })
    }

    /// Also asks a block's next owner when the first has not answered
    /// within `delay` (none: only when it fails).
    pub fn hedging(mut self, delay: Option<Duration>) -> Self {
        self.hedging_delay = delay.filter(|d| !d.is_zero());
        self
    }

    /// The ring the store-gateways are found in.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Each wanted block with its owners, healthy ones first.
    fn attempts(&self, wanted: Vec<WantedBlock>) -> Result<Vec<BlockAttempts>, ServiceError> {
        let snapshot = self.ring.snapshot();
        if snapshot.instances().is_empty() {
            return Err(ServiceError::unavailable(
                "no store-gateway in the ring: blocks in object storage cannot be read",
            ));
        }
        let healthy: HashSet<String> = self
            .ring
            .all_healthy(Operation::Read)
            .map(|set| set.instances.iter().map(|i| i.id.clone()).collect())
            .unwrap_or_default();
        let rf = self.ring.replication_factor();
        Ok(wanted
            .into_iter()
            .map(|block| {
                let ids = block_owners(snapshot.instances(), block_token(&block.id), rf);
                let mut owners: Vec<Arc<InstanceDesc>> = ids
                    .iter()
                    .filter_map(|id| snapshot.instance(id).cloned())
                    .collect();
                owners.sort_by_key(|owner| !healthy.contains(&owner.id));
                BlockAttempts {
                    id: block.id,
                    required: block.required,
                    untried: owners.into(),
                    in_flight: 0,
                    answered: false,
                    abandoned: false,
                }
            })
            .collect())
    }

    /// Runs `call` (given a store-gateway and the blocks to read) until
    /// every block of the tenant in `[mint, maxt]` is answered; the answers.
    async fn read_blocks<T, F, Fut>(
        &self,
        tenant: &str,
        (mint, maxt): (i64, i64),
        call: F,
    ) -> Result<Vec<T>, ServiceError>
    where
        F: Fn(Arc<dyn StoreGatewayReplica>, Vec<String>) -> Fut,
        Fut: Future<Output = Result<BlocksAnswer<T>, ServiceError>>,
    {
        let wanted = self.finder.blocks(tenant, mint, maxt).await?;
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut blocks = self.attempts(wanted)?;
        self.metrics.checks.inc();
        let call = &call;
        let ask = |(owner, indexes): (Arc<InstanceDesc>, Vec<usize>), blocks: &[BlockAttempts]| {
            let ids: Vec<String> = indexes.iter().map(|&i| blocks[i].id.clone()).collect();
            let client = self.pool.client(&owner.addr);
            async move {
                let outcome = match client {
                    Ok(client) => call(client, ids).await,
                    Err(e) => Err(e),
                };
                (owner, indexes, outcome)
            }
        };
        let mut pending = FuturesUnordered::new();
        for request in next_requests(&mut blocks, |_| true) {
            pending.push(ask(request, &blocks));
        }
        let hedging = self.hedging_delay;
        let mut hedge =
            hedging.map(|d| tokio::time::interval_at(tokio::time::Instant::now() + d, d));
        let mut answers = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        loop {
            if blocks.iter().all(BlockAttempts::settled) {
                return Ok(answers);
            }
            if blocks.iter().any(BlockAttempts::lost) {
                self.metrics.checks_failed.inc();
                return Err(unanswered(&blocks, &failures));
            }
            tokio::select! {
                Some((owner, indexes, outcome)) = pending.next(), if !pending.is_empty() => {
                    match outcome {
                        Ok(answer) => {
                            let read: HashSet<&str> =
                                answer.queried_blocks.iter().map(String::as_str).collect();
                            for &i in &indexes {
                                blocks[i].in_flight -= 1;
                                blocks[i].answered |= read.contains(blocks[i].id.as_str());
                            }
                            answers.push(answer.value);
                        }
                        Err(e) if e.code.is_client_error() => return Err(e),
                        Err(e) => {
                            for &i in &indexes {
                                blocks[i].in_flight -= 1;
                            }
                            failures.push(format!("store-gateway {}: {}", owner.id, e.message));
                        }
                    }
                    let retries = next_requests(&mut blocks, |b| {
                        !b.answered && !b.abandoned && b.in_flight == 0
                    });
                    for request in retries {
                        self.metrics.refetches.inc();
                        pending.push(ask(request, &blocks));
                    }
                }
                _ = async { hedge.as_mut()?.tick().await; Some(()) }, if hedge.is_some() => {
                    // A block not required whose every owner was asked a
                    // delay ago or more is not waited for any longer.
                    for block in blocks.iter_mut() {
                        if !block.required && !block.answered && block.untried.is_empty() {
                            block.abandoned = true;
                        }
                    }
                    let hedges = next_requests(&mut blocks, |b| !b.answered && b.in_flight > 0);
                    for request in hedges {
                        self.metrics.refetches.inc();
                        pending.push(ask(request, &blocks));
                    }
                }
                else => {
                    self.metrics.checks_failed.inc();
                    return Err(unanswered(&blocks, &failures));
                }
            }
        }
    }
}

/// The error of a read that could not get every required block answered,
/// naming the blocks no owner is left to ask for.
fn unanswered(blocks: &[BlockAttempts], failures: &[String]) -> ServiceError {
    let missing: Vec<&str> = blocks
        .iter()
        .filter(|b| b.lost())
        .map(|b| b.id.as_str())
        .collect();
    let shown = missing
        .iter()
        .take(5)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    let more = missing.len().saturating_sub(5);
    let mut message = format!(
        "{} block(s) this query needs were answered by no store-gateway: {shown}{}",
        missing.len(),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        },
    );
    if !failures.is_empty() {
        message.push_str(&format!(" ({})", failures.join("; ")));
    }
    ServiceError::unavailable(message)
}

#[async_trait::async_trait]
impl StoreGatewayQuery for StoreGatewaySet {
    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let range = (request.min_time_ms, request.max_time_ms);
        let answers = self
            .read_blocks(tenant, range, |client, block_ids| {
                let request = SeriesRequest {
                    block_ids,
                    ..request.clone()
                };
                async move { client.series(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let range = (request.min_time_ms, request.max_time_ms);
        let answers = self
            .read_blocks(tenant, range, |client, block_ids| {
                let request = LabelNamesRequest {
                    block_ids,
                    ..request.clone()
                };
                async move { client.label_names(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let range = (request.min_time_ms, request.max_time_ms);
        let answers = self
            .read_blocks(tenant, range, |client, block_ids| {
                let request = LabelValuesRequest {
                    block_ids,
                    ..request.clone()
                };
                async move { client.label_values(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use object_store::{ObjectStoreExt, PutPayload};
    use strata_proto::prometheus::Label;
    use strata_ring::{Lifecycler, MemoryKv, RingConfig};

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Health {
        Up,
        Down,
        /// Never answers (a SIGSTOPped process, a black-holed network).
        Hung,
    }
    use Health::{Down, Hung, Up};

    /// A store-gateway holding the blocks of `loaded` it owns; each series
    /// it returns is named after the block it came from.
    #[derive(Debug)]
    struct FakeStoreGateway {
        id: String,
        index: usize,
        health: Arc<parking_lot::Mutex<Vec<Health>>>,
        owned: Vec<String>,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl StoreGatewayReplica for FakeStoreGateway {
        async fn series(
            &self,
            _: &str,
            request: SeriesRequest,
        ) -> Result<BlocksAnswer<Vec<StreamSeries>>, ServiceError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let health = self.health.lock()[self.index];
            match health {
                Up => {}
                Down => return Err(ServiceError::unavailable("connection refused")),
                Hung => std::future::pending().await,
            }
            let read: Vec<String> = request
                .block_ids
                .into_iter()
                .filter(|id| self.owned.contains(id))
                .collect();
            let series = read
                .iter()
                .map(|id| StreamSeries {
                    labels: vec![Label {
                        name: "block".into(),
                        value: format!("{id}@{}", self.id),
                    }],
                    chunks: Vec::new(),
                })
                .collect();
            Ok(BlocksAnswer {
                value: series,
                queried_blocks: read,
            })
        }
        async fn label_names(
            &self,
            _: &str,
            _: LabelNamesRequest,
        ) -> Result<BlocksAnswer<Vec<String>>, ServiceError> {
            Ok(BlocksAnswer::default())
        }
        async fn label_values(
            &self,
            _: &str,
            _: LabelValuesRequest,
        ) -> Result<BlocksAnswer<Vec<String>>, ServiceError> {
            Ok(BlocksAnswer::default())
        }
    }

    const BLOCKS: usize = 12;

    fn block_id(i: usize) -> String {
        format!("01HQ{i:022}")
    }

    struct Cluster {
        set: StoreGatewaySet,
        calls: Arc<AtomicUsize>,
        /// Each store-gateway's health, changeable.
        health: Arc<parking_lot::Mutex<Vec<Health>>>,
        _lifecyclers: Vec<Lifecycler>,
    }

    /// Store-gateways of the given health with replication factor `rf`,
    /// over a bucket of [`BLOCKS`] blocks; `unloaded` names a block its
    /// first owner has not loaded.
    async fn cluster(health: &[Health], rf: usize, unloaded: Option<usize>) -> Cluster {
        cluster_with_grace(health, rf, unloaded, Duration::ZERO).await
    }

    /// [`cluster`], its blocks required only once `grace` after their upload.
    async fn cluster_with_grace(
        health: &[Health],
        rf: usize,
        unloaded: Option<usize>,
        grace: Duration,
    ) -> Cluster {
        let kv: Arc<dyn strata_ring::KvStore> = Arc::new(MemoryKv::new());
        let mut lifecyclers = Vec::new();
        for i in 0..health.len() {
            let config = RingConfig {
                instance_id: format!("sg-{i}"),
                instance_addr: format!("addr-{i}"),
                num_tokens: 16,
                ..Default::default()
            };
            let lifecycler = Lifecycler::start(&config, kv.clone(), "ring")
                .await
                .unwrap();
            lifecycler.activate().await.unwrap();
            lifecyclers.push(lifecycler);
        }
        let ring_config = RingConfig {
            replication_factor: rf,
            ..Default::default()
        };
        let ring = Ring::new(&ring_config, kv, "ring").await.unwrap();
        let bucket = strata_storage::Bucket::new(Arc::new(object_store::memory::InMemory::new()));
        for i in 0..BLOCKS {
            let id = block_id(i);
            let meta = format!(
                r#"{{"ulid":"{id}","minTime":0,"maxTime":1000,"version":1,"stats":{{}},"compaction":{{"level":1,"sources":["{id}"]}}}}"#
            );
            let path = strata_storage::Bucket::block_object("t", &id, "meta.json");
            bucket
                .store()
                .put(&path, PutPayload::from(meta.into_bytes()))
                .await
                .unwrap();
        }
        let finder = BlocksFinder::new(bucket, Duration::from_secs(60), Duration::ZERO)
            .with_upload_grace(grace);
        let snapshot = ring.snapshot();
        let health = Arc::new(parking_lot::Mutex::new(health.to_vec()));
        let shared_health = health.clone();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let pool = StoreGatewayClientPool::new(Arc::new(move |addr: &str| {
            let i: usize = addr.trim_start_matches("addr-").parse().unwrap();
            let id = format!("sg-{i}");
            let owned = (0..BLOCKS)
                .filter(|&b| {
                    let owners = block_owners(snapshot.instances(), block_token(&block_id(b)), rf);
                    owners.contains(&id) && (unloaded != Some(b) || owners[0] != id)
                })
                .map(block_id)
                .collect();
            Ok(Arc::new(FakeStoreGateway {
                id,
                index: i,
                health: shared_health.clone(),
                owned,
                calls: counted.clone(),
            }) as Arc<dyn StoreGatewayReplica>)
        }));
        let set = StoreGatewaySet::new(ring, pool, Arc::new(finder), &Registry::new()).unwrap();
        Cluster {
            set,
            calls,
            health,
            _lifecyclers: lifecyclers,
        }
    }

    /// The blocks the series came from, each once.
    async fn blocks_read(set: &StoreGatewaySet) -> Result<Vec<String>, ServiceError> {
        let request = SeriesRequest {
            min_time_ms: 0,
            max_time_ms: 500,
            ..Default::default()
        };
        let series = set.series("t", request).await?;
        let mut blocks: Vec<String> = series
            .iter()
            .map(|s| s.labels[0].value.split('@').next().unwrap().to_string())
            .collect();
        blocks.sort();
        blocks.dedup();
        Ok(blocks)
    }

    fn all_blocks() -> Vec<String> {
        (0..BLOCKS).map(block_id).collect()
    }

    /// The ID of the store-gateway asked first for block `b`.
    fn first_owner(set: &StoreGatewaySet, b: usize) -> String {
        let snapshot = set.ring.snapshot();
        let owners = block_owners(
            snapshot.instances(),
            block_token(&block_id(b)),
            set.ring.replication_factor(),
        );
        owners[0].clone()
    }

    #[tokio::test]
    async fn every_block_is_read_once_from_one_of_its_owners() {
        let c = cluster(&[Up, Up, Up], 2, None).await;
        let request = SeriesRequest {
            max_time_ms: 500,
            ..Default::default()
        };
        let series = c.set.series("t", request).await.unwrap();
        assert_eq!(series.len(), BLOCKS, "each block from one replica only");
        assert!(c.calls.load(Ordering::SeqCst) <= 3);
        assert_eq!(c.set.metrics.refetches.get(), 0);
        // Outside every block's range: nobody is asked.
        let request = SeriesRequest {
            min_time_ms: 2000,
            max_time_ms: 3000,
            ..Default::default()
        };
        assert!(c.set.series("t", request).await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_store_gateway_s_blocks_are_read_from_their_other_owner_at_once() {
        for down in 0..3 {
            let mut health = [Up, Up, Up];
            health[down] = Down;
            let c = cluster(&health, 2, None).await;
            let started = tokio::time::Instant::now();
            assert_eq!(blocks_read(&c.set).await.unwrap(), all_blocks());
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
        // A block its first owner has not loaded is read from the other.
        let c = cluster(&[Up, Up, Up], 2, Some(3)).await;
        assert_eq!(blocks_read(&c.set).await.unwrap(), all_blocks());
        assert_eq!(c.set.metrics.refetches.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_store_gateway_s_blocks_are_asked_elsewhere_after_the_hedging_delay() {
        let delay = Duration::from_secs(5);
        for hung in 0..3 {
            let mut health = [Up, Up, Up];
            health[hung] = Hung;
            let c = cluster(&health, 2, None).await;
            let set = c.set.hedging(Some(delay));
            let started = tokio::time::Instant::now();
            assert_eq!(blocks_read(&set).await.unwrap(), all_blocks());
            let asked_first = (0..BLOCKS).any(|b| first_owner(&set, b) == format!("sg-{hung}"));
            let waited = if asked_first { delay } else { Duration::ZERO };
            assert_eq!(started.elapsed(), waited, "hung {hung}");
            assert_eq!(set.metrics.refetches.get() > 0, asked_first);
        }
        // Blocks not required yet (just uploaded) are waited for as long.
        for hung in 0..3 {
            let mut health = [Up, Up, Up];
            health[hung] = Hung;
            let fresh = cluster_with_grace(&health, 2, None, Duration::from_secs(3600)).await;
            let set = fresh.set.hedging(Some(delay));
            assert_eq!(
                blocks_read(&set).await.unwrap(),
                all_blocks(),
                "hung {hung}"
            );
        }
        // Without hedging the read waits for the hung one (its call's
        // deadline ends it in a real client).
        let c = cluster(&[Up, Hung, Up], 2, None).await;
        let waited = tokio::time::timeout(Duration::from_secs(600), blocks_read(&c.set)).await;
        assert!(waited.is_err(), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_no_owner_answered_fails_the_read_naming_it() {
        let c = cluster(&[Up, Up, Up], 1, None).await;
        let down: usize = first_owner(&c.set, 0)[3..].parse().unwrap();
        c.health.lock()[down] = Down;
        let err = blocks_read(&c.set).await.unwrap_err();
        assert_eq!(err.code, strata_status::ErrorCode::Unavailable);
        assert!(
            err.message.contains("answered by no store-gateway: 01HQ")
                && err
                    .message
                    .contains(&format!("store-gateway sg-{down}: connection refused")),
            "{}",
            err.message
        );
        assert_eq!(c.set.metrics.checks_failed.get(), 1);
        // RF 1, a block its only owner has not loaded.
        let c = cluster(&[Up, Up, Up], 1, Some(5)).await;
        let err = blocks_read(&c.set).await.unwrap_err();
        assert!(err.message.starts_with("1 block(s)"), "{}", err.message);
    }
}
