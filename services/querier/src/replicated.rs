//! Reading a tenant's recent data from the ingesters of the ring. Each series
//! lives on RF ingesters and a write is acknowledged by a quorum of them, so
//! the answers of all healthy ingesters but the ring's tolerance
//! ([`ReplicationSet::min_success`]: any two of three with RF=3) hold every
//! acknowledged sample: a read returns as soon as it has that many, and a hung
//! or slow ingester costs it nothing. With request minimization (Mimir's
//! `-querier.minimize-ingester-requests`, on by default) only that many are
//! asked at first; the others are asked too when one fails, or when the
//! answers are not all in after the hedging delay. The replicas' answers are
//! merged (duplicates are removed when the querier merges series by labels and
//! samples by timestamp).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use strata_model::Labels;
use strata_proto::ingester::{
    ExemplarQueryRequest, LabelNamesRequest, LabelValuesRequest, MetricsMetadataRequest,
    QueryRequest, SeriesRequest,
};
use strata_proto::prometheus::{MetricMetadata, TimeSeries};
use strata_proto::types::StreamSeries;
use strata_ring::{Operation, ReplicationSet, Ring};
use strata_status::ServiceError;

use crate::ingester::IngesterQuery;

/// Makes the client for the ingester at an address (gRPC, or in-process for
/// the process's own ingester).
pub type QueryClientFactory = strata_ring::ClientFactory<dyn IngesterQuery, ServiceError>;

/// One client per ingester address, made on first use and reused.
pub type QueryClientPool = strata_ring::ClientPool<dyn IngesterQuery, ServiceError>;

/// The ingesters of a ring, as one [`IngesterQuery`].
#[derive(Debug)]
pub struct ReplicatedQuery {
    ring: Ring,
    pool: QueryClientPool,
    /// With request minimization: how long the first ingesters asked have
    /// before the others are asked too. `None`: every ingester at once.
    hedging_delay: Option<Duration>,
    /// Where the next read starts in the ring's list, so that minimized
    /// reads spread over the ingesters.
    next_start: AtomicUsize,
}

impl ReplicatedQuery {
    /// Asks every healthy ingester at once and returns at quorum.
    pub fn new(ring: Ring, pool: QueryClientPool) -> Self {
        Self {
            ring,
            pool,
            hedging_delay: None,
            next_start: AtomicUsize::new(0),
        }
    }

    /// Asks only as many ingesters as a read needs, and the others after
    /// `hedging_delay` (or at once when one of the first fails).
    pub fn minimizing_requests(mut self, hedging_delay: Duration) -> Self {
        self.hedging_delay = Some(hedging_delay);
        self
    }

    /// Runs `call` on the healthy ingesters until [`ReplicationSet::min_success`]
    /// of them answered; the answers, or an error when more than the set's
    /// `max_errors` failed (the first client error at once: a bad matcher or
    /// tenant is the same on every replica).
    async fn fan_out<T, F, Fut>(&self, call: F) -> Result<Vec<T>, ServiceError>
    where
        F: Fn(Arc<dyn IngesterQuery>) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>>,
    {
        let set = self
            .ring
            .replication_set_for_operation(Operation::Read)
            .map_err(|e| ServiceError::unavailable(format!("cannot pick ingesters: {e}")))?;
        let mut order = set.instances.clone();
        let first = match (self.hedging_delay, set.max_unavailable_zones) {
            (None, _) => order.len(),
            // All the instances of all zones but the tolerated ones, the
            // zones taken in turn.
            (Some(_), Some(tolerated)) => {
                let mut zones = set.zones();
                if !zones.is_empty() {
                    let start = self.next_start.fetch_add(1, Ordering::Relaxed) % zones.len();
                    zones.rotate_left(start);
                }
                let asked: Vec<String> = zones[..zones.len().saturating_sub(tolerated)].to_vec();
                order.sort_by_key(|i| !asked.contains(&i.zone));
                order.iter().filter(|i| asked.contains(&i.zone)).count()
            }
            (Some(_), None) => {
                if !order.is_empty() {
                    let start = self.next_start.fetch_add(1, Ordering::Relaxed) % order.len();
                    order.rotate_left(start);
                }
                set.min_success().min(order.len())
            }
        };
        let mut later = order.split_off(first);
        let call = &call;
        let ask = |instance: Arc<strata_ring::InstanceDesc>| {
            let client = self.pool.client(&instance.addr);
            async move {
                let outcome = match client {
                    Ok(client) => call(client).await,
                    Err(e) => Err(e),
                };
                (instance, outcome)
            }
        };
        let mut pending: FuturesUnordered<_> = order.into_iter().map(ask).collect();
        let hedge = tokio::time::sleep(self.hedging_delay.unwrap_or_default());
        tokio::pin!(hedge);
        let mut quorum = set.quorum();
        let mut answers = Vec::with_capacity(set.min_success());
        let mut errors = Vec::new();
        loop {
            tokio::select! {
                outcome = pending.next(), if !pending.is_empty() => {
                    match outcome {
                        Some((instance, Ok(answer))) => {
                            answers.push(answer);
                            quorum.success(&instance);
                            if quorum.reached() {
                                return Ok(answers);
                            }
                        }
                        Some((_, Err(e))) if e.code.is_client_error() => return Err(e),
                        Some((instance, Err(e))) => {
                            errors.push(e);
                            quorum.failure(&instance);
                            if quorum.lost() {
                                return Err(too_many_failed(errors, &set));
                            }
                            // One of the first failed: the others are needed now.
                            pending.extend(later.drain(..).map(ask));
                        }
                        None => {}
                    }
                }
                () = &mut hedge, if !later.is_empty() => {
                    tracing::debug!(
                        asked = first,
                        more = later.len(),
                        "ingesters slow to answer a read: asking the others too"
                    );
                    pending.extend(later.drain(..).map(ask));
                }
                else => break,
            }
        }
        // Every ingester answered or failed, within the tolerance: only an
        // empty ring ends here.
        Ok(answers)
    }
}

/// The error of a read that lost more ingesters than the ring tolerates.
fn too_many_failed(mut errors: Vec<ServiceError>, set: &ReplicationSet) -> ServiceError {
    let failed = errors.len();
    let first = errors.swap_remove(0);
    let tolerance = match set.max_unavailable_zones {
        Some(zones) => format!("all but {zones} zone(s) must answer"),
        None => format!("at most {} may", set.max_errors),
    };
    ServiceError::new(
        first.code,
        format!(
            "{failed} of {} ingesters failed ({tolerance}): {}",
            set.instances.len(),
            first.message
        ),
    )
}

#[async_trait::async_trait]
impl IngesterQuery for ReplicatedQuery {
    async fn query_stream(
        &self,
        tenant: &str,
        request: QueryRequest,
    ) -> Result<Vec<StreamSeries>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.query_stream(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_names(
        &self,
        tenant: &str,
        request: LabelNamesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.label_names(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn label_values(
        &self,
        tenant: &str,
        request: LabelValuesRequest,
    ) -> Result<Vec<String>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.label_values(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn series(
        &self,
        tenant: &str,
        request: SeriesRequest,
    ) -> Result<Vec<Labels>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.series(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn metrics_metadata(
        &self,
        tenant: &str,
        request: MetricsMetadataRequest,
    ) -> Result<Vec<MetricMetadata>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.metrics_metadata(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }

    async fn query_exemplars(
        &self,
        tenant: &str,
        request: ExemplarQueryRequest,
    ) -> Result<Vec<TimeSeries>, ServiceError> {
        let answers = self
            .fan_out(|c| {
                let request = request.clone();
                async move { c.query_exemplars(tenant, request).await }
            })
            .await?;
        Ok(answers.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ring::{Lifecycler, MemoryKv, RingConfig};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Health {
        Up,
        Down,
        /// Never answers (a SIGSTOPped process, a black-holed network).
        Hung,
    }
    use Health::{Down, Hung, Up};

    #[derive(Debug)]
    struct FakeIngester {
        names: Vec<String>,
        health: Health,
        calls: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl IngesterQuery for FakeIngester {
        async fn query_stream(
            &self,
            _: &str,
            _: QueryRequest,
        ) -> Result<Vec<StreamSeries>, ServiceError> {
            Ok(Vec::new())
        }
        async fn label_names(
            &self,
            _: &str,
            _: LabelNamesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            match self.health {
                Up => Ok(self.names.clone()),
                Down => Err(ServiceError::unavailable("connection refused")),
                Hung => std::future::pending().await,
            }
        }
        async fn label_values(
            &self,
            _: &str,
            _: LabelValuesRequest,
        ) -> Result<Vec<String>, ServiceError> {
            Ok(Vec::new())
        }
        async fn series(&self, _: &str, _: SeriesRequest) -> Result<Vec<Labels>, ServiceError> {
            Ok(Vec::new())
        }
        async fn metrics_metadata(
            &self,
            _: &str,
            _: MetricsMetadataRequest,
        ) -> Result<Vec<MetricMetadata>, ServiceError> {
            Ok(Vec::new())
        }
    }

    struct Cluster {
        query: ReplicatedQuery,
        calls: Arc<AtomicUsize>,
        _lifecyclers: Vec<Lifecycler>,
    }

    async fn cluster(health: &[Health]) -> Cluster {
        cluster_in_zones(health, 0).await
    }

    /// [`cluster`] with zone awareness over `zones` zones (instance `i` in
    /// zone `i % zones`; 0: no zones).
    async fn cluster_in_zones(health: &[Health], zones: usize) -> Cluster {
        let kv: Arc<dyn strata_ring::KvStore> = Arc::new(MemoryKv::new());
        let mut lifecyclers = Vec::new();
        for i in 0..health.len() {
            let config = RingConfig {
                instance_id: format!("ingester-{i}"),
                instance_addr: format!("addr-{i}"),
                num_tokens: 8,
                instance_availability_zone: if zones > 0 {
                    format!("zone-{}", i % zones)
                } else {
                    String::new()
                },
                zone_awareness_enabled: zones > 0,
                ..Default::default()
            };
            let lifecycler = Lifecycler::start(&config, kv.clone(), "ring")
                .await
                .unwrap();
            lifecycler.activate().await.unwrap();
            lifecyclers.push(lifecycler);
        }
        let ring_config = RingConfig {
            zone_awareness_enabled: zones > 0,
            instance_availability_zone: if zones > 0 {
                "zone-0".into()
            } else {
                String::new()
            },
            ..Default::default()
        };
        let ring = Ring::new(&ring_config, kv, "ring").await.unwrap();
        let health = health.to_vec();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let pool = QueryClientPool::new(Arc::new(move |addr: &str| {
            let i: usize = addr.trim_start_matches("addr-").parse().unwrap();
            Ok(Arc::new(FakeIngester {
                names: vec![format!("label{i}")],
                health: health[i],
                calls: counted.clone(),
            }) as Arc<dyn IngesterQuery>)
        }));
        Cluster {
            query: ReplicatedQuery::new(ring, pool),
            calls,
            _lifecyclers: lifecyclers,
        }
    }

    async fn names(query: &ReplicatedQuery) -> Result<Vec<String>, ServiceError> {
        let mut names = query.label_names("t", LabelNamesRequest::default()).await?;
        names.sort();
        Ok(names)
    }

    #[tokio::test]
    async fn asks_every_ingester_and_tolerates_one_failure_of_three() {
        let c = cluster(&[Up, Up, Down]).await;
        assert_eq!(names(&c.query).await.unwrap(), ["label0", "label1"]);

        let c = cluster(&[Up, Down, Down]).await;
        let err = names(&c.query).await.unwrap_err();
        assert!(
            err.message.contains("2 of 3 ingesters failed"),
            "{}",
            err.message
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_ingester_costs_a_read_nothing_once_a_quorum_answered() {
        let c = cluster(&[Up, Hung, Up]).await;
        let started = tokio::time::Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(60), names(&c.query)).await;
        assert_eq!(got.expect("no answer").unwrap(), ["label0", "label2"]);
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(c.calls.load(Ordering::SeqCst), 3);
        // Two hung of three: no quorum, and the read waits (the call's own
        // deadline ends it in a real client).
        let c = cluster(&[Up, Hung, Hung]).await;
        let waited = tokio::time::timeout(Duration::from_secs(600), names(&c.query)).await;
        assert!(waited.is_err(), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn minimized_reads_ask_a_quorum_first_and_hedge_after_the_delay() {
        let delay = Duration::from_secs(3);
        // All up: each read asks two of the three, and they answer.
        let c = cluster(&[Up, Up, Up]).await;
        let query = c.query.minimizing_requests(delay);
        for _ in 0..3 {
            assert_eq!(names(&query).await.unwrap().len(), 2);
        }
        assert_eq!(c.calls.load(Ordering::SeqCst), 6);

        // One hung among the first asked: the third is asked after the
        // delay, and the read completes then.
        for hung in 0..3 {
            let mut health = [Up, Up, Up];
            health[hung] = Hung;
            let c = cluster(&health).await;
            let query = c.query.minimizing_requests(delay);
            let mut slowest = Duration::ZERO;
            for _ in 0..3 {
                let started = tokio::time::Instant::now();
                let got = names(&query).await.unwrap();
                assert_eq!(got.len(), 2, "{got:?}");
                assert!(!got.contains(&format!("label{hung}")), "{got:?}");
                slowest = slowest.max(started.elapsed());
            }
            // The reads rotate over the ring: some asked the hung one first.
            assert_eq!(slowest, delay, "hung {hung}");
        }

        // One failing among the first: the third is asked at once.
        let c = cluster(&[Down, Up, Up]).await;
        let query = c.query.minimizing_requests(delay);
        for _ in 0..3 {
            let started = tokio::time::Instant::now();
            assert_eq!(names(&query).await.unwrap(), ["label1", "label2"]);
            assert_eq!(started.elapsed(), Duration::ZERO);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zone_aware_reads_need_every_instance_of_all_zones_but_one() {
        // Six ingesters in three zones (0, 3 in zone-0; 1, 4 in zone-1; 2, 5
        // in zone-2): a whole zone failing is tolerated, as the instance
        // count (5 of 6) would not.
        let c = cluster_in_zones(&[Down, Up, Up, Down, Up, Up], 3).await;
        assert_eq!(
            names(&c.query).await.unwrap(),
            ["label1", "label2", "label4", "label5"]
        );
        // One instance failing in each of two zones: no read covers every series.
        let c = cluster_in_zones(&[Down, Down, Up, Up, Up, Up], 3).await;
        let err = names(&c.query).await.unwrap_err();
        assert!(
            err.message.contains("all but 1 zone(s) must answer"),
            "{}",
            err.message
        );
        // A hung zone costs a minimized read the hedging delay at most.
        let delay = Duration::from_secs(3);
        let c = cluster_in_zones(&[Hung, Up, Up, Hung, Up, Up], 3).await;
        let query = c.query.minimizing_requests(delay);
        for _ in 0..3 {
            let started = tokio::time::Instant::now();
            assert_eq!(names(&query).await.unwrap().len(), 4);
            assert!(started.elapsed() <= delay);
        }
        // Each minimized read asks the four instances of two zones first.
        let c = cluster_in_zones(&[Up; 6], 3).await;
        let query = c.query.minimizing_requests(delay);
        assert_eq!(names(&query).await.unwrap().len(), 4);
        assert_eq!(c.calls.load(Ordering::SeqCst), 4);
    }
}
