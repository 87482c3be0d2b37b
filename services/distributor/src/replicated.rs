//! Sharding and replication on the write path: each series goes to the
//! replication-factor ingesters the ring names for hash(tenant, labels), all
//! replicas are written in parallel, and a push succeeds once every series is
//! stored on a quorum of its replicas.
//!
//! Requests to replicas run as their own tasks, so a push answers as soon as
//! each series has its quorum while the slower replica still receives its copy
//! (bounded by the client timeout); a dead or slow ingester costs neither
//! correctness nor more than that timeout. At most a set number of pushes are
//! in flight to one ingester: beyond it, that replica counts as failed at
//! once, so a hung ingester cannot make the distributor hold an unbounded
//! number of requests (and their bodies) until they time out.

use std::collections::HashMap;
use std::sync::Arc;

use strata_model::shard_token_of;
use strata_proto::prometheus::WriteRequest;
use strata_ring::{InstanceDesc, Operation, Ring, RingError};
use strata_status::{ErrorCode, ServiceError};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::push::IngesterPush;

/// Makes the client for the ingester at an address (gRPC, or in-process for
/// the process's own ingester).
pub type PushClientFactory = strata_ring::ClientFactory<dyn IngesterPush, ServiceError>;

/// One client per ingester address, made on first use and reused.
pub type PushClientPool = strata_ring::ClientPool<dyn IngesterPush, ServiceError>;

/// The ingesters of a ring, as one [`IngesterPush`].
#[derive(Debug)]
pub struct ReplicatedPush {
    ring: Ring,
    pool: PushClientPool,
    /// Pushes allowed in flight to one ingester (0: no limit).
    inflight_limit: usize,
    /// The permits of each ingester address.
    inflight: parking_lot::Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl ReplicatedPush {
    pub fn new(ring: Ring, pool: PushClientPool) -> Self {
        Self {
            ring,
            pool,
            inflight_limit: 0,
            inflight: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// At most `limit` pushes in flight to one ingester (0: no limit).
    pub fn with_inflight_limit(mut self, limit: usize) -> Self {
        self.inflight_limit = limit;
        self
    }

    /// A permit for one more push to `addr`: `Ok(None)` without a limit,
    /// the error the replica counts as when its limit is reached.
    fn permit(&self, addr: &str) -> Result<Option<OwnedSemaphorePermit>, ServiceError> {
        if self.inflight_limit == 0 {
            return Ok(None);
        }
        let semaphore = self
            .inflight
            .lock()
            .entry(addr.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inflight_limit)))
            .clone();
        semaphore.try_acquire_owned().map(Some).map_err(|_| {
            crate::metrics::inflight_limit_reached().inc();
            ServiceError::unavailable(format!(
                "{} pushes already in flight to ingester {addr} \
                 (distributor.max_inflight_push_requests_per_ingester): it is slow or hung",
                self.inflight_limit
            ))
        })
    }
}

/// How one series is doing across its replicas.
#[derive(Debug, Clone, Copy)]
struct Progress {
    needed: usize,
    max_errors: usize,
    succeeded: usize,
    failed: usize,
}

impl Progress {
    fn done(&self) -> bool {
        self.succeeded >= self.needed || self.failed > self.max_errors
    }
}

pub(crate) fn ring_error(e: RingError) -> ServiceError {
    ServiceError::from_coded(&crate::error::DistributorError::PickIngesters(e))
}

#[async_trait::async_trait]
impl IngesterPush for ReplicatedPush {
    async fn push(&self, tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
        let snapshot = self.ring.snapshot();
        let series_count = request.timeseries.len();
        // Items are the series, then the metadata entries (index
        // series_count + i): each goes to the replicas of its token and
        // needs its quorum. A metadata entry's token is that of a series
        // named by its metric family alone, as Mimir shards metadata by
        // metric name, so one family's metadata stays on one replica set.
        let items = series_count + request.metadata.len();
        let mut progress = Vec::with_capacity(items);
        // Item indices per instance; a handful of instances, so a vector
        // searched by pointer beats hashing an address per item.
        let mut per_instance: Vec<(Arc<InstanceDesc>, Vec<usize>)> = Vec::new();
        let mut replicas_left: Vec<u8> = Vec::with_capacity(items);
        let series_tokens = request.timeseries.iter().map(|series| {
            shard_token_of(
                tenant,
                series
                    .labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
            )
        });
        let metadata_tokens = request.metadata.iter().map(|entry| {
            shard_token_of(
                tenant,
                std::iter::once((strata_model::METRIC_NAME, entry.metric_family_name.as_str())),
            )
        });
        for (index, token) in series_tokens.chain(metadata_tokens).enumerate() {
            let set = snapshot.get(token, Operation::Write).map_err(ring_error)?;
            for instance in &set.instances {
                match per_instance
                    .iter_mut()
                    .find(|(known, _)| Arc::ptr_eq(known, instance))
                {
                    Some((_, indices)) => indices.push(index),
                    None => per_instance.push((instance.clone(), vec![index])),
                }
            }
            replicas_left.push(u8::try_from(set.instances.len()).unwrap_or(u8::MAX));
            progress.push(Progress {
                needed: set.min_success(),
                max_errors: set.max_errors,
                succeeded: 0,
                failed: 0,
            });
        }

        // Each replica gets its own copy of an item, except the last one,
        // which takes the original: with RF=1 nothing is copied at all.
        let mut series = request.timeseries;
        let mut metadata = request.metadata;
        let (results, mut receiver) = mpsc::unbounded_channel();
        for (instance, indices) in per_instance {
            let mut request = WriteRequest::default();
            for &i in &indices {
                replicas_left[i] = replicas_left[i].saturating_sub(1);
                let last = replicas_left[i] == 0;
                if let Some(m) = i.checked_sub(series_count) {
                    let entry = &mut metadata[m];
                    request.metadata.push(if last {
                        std::mem::take(entry)
                    } else {
                        entry.clone()
                    });
                } else {
                    let one = &mut series[i];
                    request.timeseries.push(if last {
                        std::mem::take(one)
                    } else {
                        one.clone()
                    });
                }
            }
            let client = self
                .permit(&instance.addr)
                .and_then(|permit| Ok((permit, self.pool.client(&instance.addr)?)));
            let results = results.clone();
            let tenant = tenant.to_string();
            // In the push's span, so the ingester calls join its trace.
            let span = tracing::Span::current();
            tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let started = std::time::Instant::now();
                    // The permit is held until the call ends.
                    let outcome = match client {
                        Ok((_permit, client)) => client.push(&tenant, request).await,
                        Err(e) => Err(e),
                    };
                    let status = match &outcome {
                        Ok(()) => "OK".to_string(),
                        Err(e) => format!("{:?}", e.code),
                    };
                    crate::metrics::ingester_client_duration()
                        .with_label_values(&["Push", &status])
                        .observe(started.elapsed().as_secs_f64());
                    let _ = results.send((indices, outcome));
                },
                span,
            ));
        }
        drop(results);

        let mut pending = progress.iter().filter(|p| !p.done()).count();
        let mut client_error: Option<ServiceError> = None;
        let mut server_error: Option<ServiceError> = None;
        while pending > 0 {
            let Some((indices, outcome)) = receiver.recv().await else {
                break;
            };
            // An ingester that answered with a client error (say, one
            // out-of-order series, or a series over a limit) has stored every
            // other series of the request, so those count towards their
            // quorum. A limit (429) is what the client hears over a 400: the
            // client may retry it, and it must not look like bad data.
            let stored = match outcome {
                Ok(()) => true,
                Err(e) if e.code.is_client_error() => {
                    let replace = client_error.as_ref().is_none_or(|first| {
                        first.code != ErrorCode::TooManyRequests
                            && e.code == ErrorCode::TooManyRequests
                    });
                    if replace {
                        client_error = Some(e);
                    }
                    true
                }
                Err(e) => {
                    server_error.get_or_insert(e);
                    false
                }
            };
            for i in indices {
                let Some(p) = progress.get_mut(i) else {
                    continue;
                };
                if p.done() {
                    continue;
                }
                if stored {
                    p.succeeded += 1;
                } else {
                    p.failed += 1;
                }
                if p.done() {
                    pending -= 1;
                }
            }
        }

        let quorum_failed = progress.iter().any(|p| p.succeeded < p.needed);
        if quorum_failed {
            let cause = server_error
                .map(|e| e.message)
                .unwrap_or_else(|| "no answer".to_string());
            return Err(ServiceError::new(
                ErrorCode::Unavailable,
                format!("failed to store samples on a quorum of ingesters: {cause}"),
            ));
        }
        match client_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::time::Duration;
    use strata_proto::prometheus::{Label, Sample, TimeSeries};
    use strata_ring::{Lifecycler, MemoryKv, RingConfig};

    #[derive(Debug, Default)]
    struct FakeIngester {
        received: Mutex<Vec<WriteRequest>>,
        behaviour: Behaviour,
        /// Calls that reached it (hung ones too).
        entered: std::sync::atomic::AtomicUsize,
    }

    #[derive(Debug, Default, Clone, Copy, PartialEq)]
    enum Behaviour {
        #[default]
        Store,
        Down,
        Hang,
        RejectAsBadRequest,
        RejectAsOverLimit,
    }

    #[async_trait::async_trait]
    impl IngesterPush for FakeIngester {
        async fn push(&self, _tenant: &str, request: WriteRequest) -> Result<(), ServiceError> {
            self.entered
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match self.behaviour {
                Behaviour::Store => {
                    self.received.lock().push(request);
                    Ok(())
                }
                Behaviour::Down => Err(ServiceError::unavailable("connection refused")),
                Behaviour::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                }
                Behaviour::RejectAsBadRequest => {
                    self.received.lock().push(request);
                    Err(ServiceError::bad_request("out-of-order sample"))
                }
                Behaviour::RejectAsOverLimit => {
                    self.received.lock().push(request);
                    Err(ServiceError::new(
                        ErrorCode::TooManyRequests,
                        "per-tenant series limit of 10 exceeded",
                    ))
                }
            }
        }
    }

    async fn cluster(
        behaviours: &[Behaviour],
    ) -> (ReplicatedPush, Vec<Arc<FakeIngester>>, Vec<Lifecycler>) {
        let kv: Arc<dyn strata_ring::KvStore> = Arc::new(MemoryKv::new());
        let mut fakes = Vec::new();
        let mut lifecyclers = Vec::new();
        for (i, behaviour) in behaviours.iter().enumerate() {
            let config = RingConfig {
                instance_id: format!("ingester-{i}"),
                instance_addr: format!("addr-{i}"),
                num_tokens: 16,
                ..Default::default()
            };
            let lifecycler = Lifecycler::start(&config, kv.clone(), "ring")
                .await
                .unwrap();
            lifecycler.activate().await.unwrap();
            lifecyclers.push(lifecycler);
            fakes.push(Arc::new(FakeIngester {
                behaviour: *behaviour,
                ..Default::default()
            }));
        }
        let ring = Ring::new(&RingConfig::default(), kv, "ring").await.unwrap();
        let by_addr = fakes.clone();
        let pool = PushClientPool::new(Arc::new(move |addr: &str| {
            let i: usize = addr.trim_start_matches("addr-").parse().unwrap();
            Ok(by_addr[i].clone() as Arc<dyn IngesterPush>)
        }));
        (ReplicatedPush::new(ring, pool), fakes, lifecyclers)
    }

    fn request(n: usize) -> WriteRequest {
        WriteRequest {
            timeseries: (0..n)
                .map(|i| TimeSeries {
                    labels: vec![Label {
                        name: "__name__".into(),
                        value: format!("m{i}"),
                    }],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn stored_series(fakes: &[Arc<FakeIngester>]) -> usize {
        fakes
            .iter()
            .map(|f| {
                f.received
                    .lock()
                    .iter()
                    .map(|r| r.timeseries.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Waits (up to 10 s) until `done`: the calls to replicas beyond the
    /// quorum go on in their own tasks after a push returns.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_hung_ingester_holds_no_more_pushes_than_the_limit() {
        use Behaviour::{Hang, Store};
        let (push, fakes, _l) = cluster(&[Store, Store, Hang]).await;
        let push = push.with_inflight_limit(3);
        let before = crate::metrics::inflight_limit_reached().get();
        for _ in 0..10 {
            // Each push reaches its quorum on the other two.
            push.push("t", request(5)).await.unwrap();
        }
        // The replica calls run as their own tasks: wait until every one
        // started or was refused.
        let entered = |i: usize| fakes[i].entered.load(std::sync::atomic::Ordering::SeqCst);
        let refused = || crate::metrics::inflight_limit_reached().get() - before;
        until("the replica calls to start", || {
            entered(0) == 10 && entered(1) == 10 && entered(2) + refused() as usize >= 10
        })
        .await;
        assert_eq!(entered(2), 3, "in flight to the hung ingester");
        assert_eq!((entered(0), entered(1)), (10, 10));
        assert!(crate::metrics::inflight_limit_reached().get() >= before + 7);
    }

    #[tokio::test]
    async fn metadata_reaches_the_replicas_of_its_metric_name() {
        use Behaviour::Store;
        let (push, fakes, _l) = cluster(&[Store, Store, Store, Store, Store]).await;
        let mut request = request(1);
        request.metadata = (0..20)
            .map(|i| strata_proto::prometheus::MetricMetadata {
                r#type: 1,
                metric_family_name: format!("m{i}"),
                help: "h".into(),
                unit: String::new(),
            })
            .collect();
        push.push("t", request).await.unwrap();
        let replicas = || {
            fakes
                .iter()
                .map(|f| {
                    f.received
                        .lock()
                        .iter()
                        .map(|r| r.metadata.len())
                        .sum::<usize>()
                })
                .sum::<usize>()
        };
        until("every entry to reach three replicas", || replicas() >= 60).await;
        // Every entry on three of the five ingesters, and on the same three
        // as a series named by that metric alone (m0 is both).
        let holders = |name: &str| -> Vec<usize> {
            (0..fakes.len())
                .filter(|&i| {
                    fakes[i]
                        .received
                        .lock()
                        .iter()
                        .any(|r| r.metadata.iter().any(|m| m.metric_family_name == name))
                })
                .collect()
        };
        for i in 0..20 {
            assert_eq!(holders(&format!("m{i}")).len(), 3, "m{i}");
        }
        let series_holders: Vec<usize> = (0..fakes.len())
            .filter(|&i| {
                fakes[i]
                    .received
                    .lock()
                    .iter()
                    .any(|r| !r.timeseries.is_empty())
            })
            .collect();
        assert_eq!(holders("m0"), series_holders);
    }

    #[tokio::test]
    async fn every_series_reaches_three_replicas() {
        use Behaviour::Store;
        let (push, fakes, _l) = cluster(&[Store, Store, Store, Store]).await;
        push.push("t", request(50)).await.unwrap();
        until("every series on three replicas", || {
            stored_series(&fakes) >= 150
        })
        .await;
        assert_eq!(stored_series(&fakes), 150);
    }

    #[tokio::test]
    async fn one_dead_ingester_is_tolerated_two_are_not() {
        use Behaviour::{Down, Store};
        let (push, _f, _l) = cluster(&[Store, Store, Down]).await;
        push.push("t", request(20)).await.unwrap();
        let (push, _f, _l) = cluster(&[Store, Down, Down]).await;
        let err = push.push("t", request(20)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(err.message.contains("quorum"), "{}", err.message);
    }

    #[tokio::test]
    async fn a_hanging_ingester_does_not_stall_the_push() {
        use Behaviour::{Hang, Store};
        let (push, _f, _l) = cluster(&[Store, Hang, Store]).await;
        tokio::time::timeout(Duration::from_secs(5), push.push("t", request(20)))
            .await
            .expect("push must not wait for the hanging replica")
            .unwrap();
    }

    #[tokio::test]
    async fn client_errors_are_reported_without_failing_the_quorum() {
        use Behaviour::{RejectAsBadRequest, Store};
        // The push answers at quorum (any 2 of 3), so two replicas reject:
        // whichever two answer first include a rejection.
        let (push, _f, _l) = cluster(&[Store, RejectAsBadRequest, RejectAsBadRequest]).await;
        let err = push.push("t", request(20)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[tokio::test]
    async fn a_limit_from_the_ingesters_reaches_the_client_as_429() {
        use Behaviour::{RejectAsBadRequest, RejectAsOverLimit, Store};
        // The push answers at quorum (any 2 of 3): each case is such that
        // whichever two replicas answer first decide the same way.
        let (push, _f, _l) = cluster(&[RejectAsOverLimit, RejectAsOverLimit, Store]).await;
        let err = push.push("t", request(20)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
        assert!(
            err.message.contains("series limit of 10"),
            "{}",
            err.message
        );
        // A limit wins over bad data.
        let (push, _f, _l) =
            cluster(&[RejectAsBadRequest, RejectAsOverLimit, RejectAsOverLimit]).await;
        let err = push.push("t", request(20)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyRequests);
    }
}
