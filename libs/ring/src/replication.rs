//! The replication strategy: which instances hold a key, and how many of
//! them may fail.
//!
//! A [`RingSnapshot`] is an immutable, pre-computed view of one
//! [`RingDesc`]: all tokens sorted with the index of their owner beside them,
//! so a lookup is a binary search plus a short walk, with no allocation but
//! the result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::desc::{now_secs, InstanceDesc, InstanceState, RingDesc};
use crate::error::RingError;

/// What the replica set is for: it decides which states are healthy and which
/// states make the walk take one more instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A write: only ACTIVE instances take it; any other state (JOINING,
    /// LEAVING, PENDING) extends the replica set by one instance, so the
    /// data also lands on the instance that will own it next.
    Write,
    /// A read: ACTIVE and LEAVING instances answer; nothing extends.
    Read,
}

impl Operation {
    /// Whether an instance in `state` may serve this operation.
    pub fn is_healthy_state(self, state: InstanceState) -> bool {
        match self {
            Operation::Write => state == InstanceState::Active,
            Operation::Read => matches!(state, InstanceState::Active | InstanceState::Leaving),
        }
    }

    /// Whether meeting an instance in `state` extends the replica set.
    pub fn extends_replica_set(self, state: InstanceState) -> bool {
        match self {
            Operation::Write => state != InstanceState::Active,
            Operation::Read => false,
        }
    }
}

/// The instances to send one request to, and how many of them may fail
/// before the request as a whole fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicationSet {
    /// The healthy instances, in ring order.
    pub instances: Vec<Arc<InstanceDesc>>,
    /// How many of `instances` may fail (or be slow) while the request still
    /// reaches its quorum.
    pub max_errors: usize,
    /// With zone awareness: how many zones may fail (or be slow) — a zone
    /// counts as answered once every one of its instances has. `None`:
    /// instances are counted, not zones.
    pub max_unavailable_zones: Option<usize>,
}

impl ReplicationSet {
    /// The quorum: successes needed before the request counts as done (with
    /// zones: an upper bound, see [`ReplicationSet::quorum`]).
    pub fn min_success(&self) -> usize {
        self.instances.len().saturating_sub(self.max_errors)
    }

    /// A tally of answers that says when they cover every key at the
    /// tolerance: `min_success` instances, or with zones every instance of
    /// all zones but `max_unavailable_zones`.
    pub fn quorum(&self) -> Quorum {
        let mut zones: std::collections::BTreeMap<String, usize> = Default::default();
        if self.max_unavailable_zones.is_some() {
            for i in &self.instances {
                *zones.entry(i.zone.clone()).or_default() += 1;
            }
        }
        Quorum {
            needed: self.min_success(),
            max_errors: self.max_errors,
            max_unavailable_zones: self.max_unavailable_zones,
            zones,
            succeeded: Default::default(),
            failed_zones: Default::default(),
            successes: 0,
            failures: 0,
        }
    }

    /// The zones of the set in the order their first instance appears.
    pub fn zones(&self) -> Vec<String> {
        let mut zones: Vec<String> = Vec::new();
        for i in &self.instances {
            if !zones.contains(&i.zone) {
                zones.push(i.zone.clone());
            }
        }
        zones
    }

    /// Whether `addr` is one of the instances.
    pub fn includes(&self, addr: &str) -> bool {
        self.instances.iter().any(|i| i.addr == addr)
    }
}

/// Answers of a [`ReplicationSet`] so far: [`Quorum::reached`] once they cover
/// every key, [`Quorum::lost`] once they no longer can.
#[derive(Debug, Clone)]
pub struct Quorum {
    needed: usize,
    max_errors: usize,
    max_unavailable_zones: Option<usize>,
    /// Instances per zone (zone mode only).
    zones: std::collections::BTreeMap<String, usize>,
    succeeded: std::collections::BTreeMap<String, usize>,
    failed_zones: std::collections::BTreeSet<String>,
    successes: usize,
    failures: usize,
}

impl Quorum {
    /// Counts an answer of `instance`.
    pub fn success(&mut self, instance: &InstanceDesc) {
        self.successes += 1;
        *self.succeeded.entry(instance.zone.clone()).or_default() += 1;
    }

    /// Counts a failure of `instance`.
    pub fn failure(&mut self, instance: &InstanceDesc) {
        self.failures += 1;
        self.failed_zones.insert(instance.zone.clone());
    }

    /// Whether the answers cover every key at the set's tolerance.
    pub fn reached(&self) -> bool {
        match self.max_unavailable_zones {
            None => self.successes >= self.needed,
            Some(tolerated) => {
                let complete = self
                    .zones
                    .iter()
                    .filter(|(zone, n)| self.succeeded.get(*zone) == Some(n))
                    .count();
                complete + tolerated >= self.zones.len()
            }
        }
    }

    /// Whether too many failed for the answers ever to cover every key.
    pub fn lost(&self) -> bool {
        match self.max_unavailable_zones {
            None => self.failures > self.max_errors,
            Some(tolerated) => self.failed_zones.len() > tolerated,
        }
    }
}

/// The parameters of the strategy (the parts of the ring config it needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicationOptions {
    /// How many instances hold each key.
    pub replication_factor: usize,
    /// Place the replicas of a key in distinct zones.
    pub zone_awareness_enabled: bool,
    /// An instance whose last heartbeat is older is unhealthy (zero: never).
    pub heartbeat_timeout: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        Self {
            replication_factor: 3,
            zone_awareness_enabled: false,
            heartbeat_timeout: Duration::from_secs(60),
        }
    }
}

/// Counts for metrics and the `/ring` page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingSummary {
    /// Instances per state (every state present, zero if none).
    pub by_state: BTreeMap<InstanceState, usize>,
    /// Instances whose heartbeat is older than the timeout.
    pub unhealthy: usize,
    /// Tokens owned, over all instances.
    pub tokens: usize,
    /// Distinct non-empty zones.
    pub zones: usize,
}

/// Zone index meaning "no zone".
const NO_ZONE: u32 = u32::MAX;

/// An immutable, pre-computed view of a ring for lookups.
#[derive(Debug, Clone)]
pub struct RingSnapshot {
    options: ReplicationOptions,
    /// The instances, sorted by ID.
    instances: Vec<Arc<InstanceDesc>>,
    /// Zone index of each instance (into `zone_names`), or `NO_ZONE`.
    instance_zone: Vec<u32>,
    zone_names: Vec<String>,
    /// All tokens, sorted ascending; a token claimed twice keeps its first owner.
    tokens: Vec<u32>,
    /// Index into `instances` of each token's owner.
    owners: Vec<u32>,
    /// KV revision the snapshot was built from (0 if unknown).
    revision: i64,
    /// The newest heartbeat of any instance (`i64::MIN` without instances):
    /// health is judged against it when the whole ring's heartbeats stopped
    /// together ([`RingSnapshot::clock`]).
    newest_heartbeat: i64,
}

impl RingSnapshot {
    /// Builds the lookup tables from a ring description.
    pub fn new(desc: &RingDesc, options: ReplicationOptions, revision: i64) -> Self {
        let mut zone_names: Vec<String> = desc
            .instances
            .values()
            .filter(|i| !i.zone.is_empty())
            .map(|i| i.zone.clone())
            .collect();
        zone_names.sort_unstable();
        zone_names.dedup();

        let mut instances = Vec::with_capacity(desc.instances.len());
        let mut instance_zone = Vec::with_capacity(desc.instances.len());
        let mut pairs: Vec<(u32, u32)> = Vec::new();
        for (index, instance) in desc.instances.values().enumerate() {
            let index = index as u32;
            instance_zone.push(
                zone_names
                    .binary_search(&instance.zone)
                    .map(|z| z as u32)
                    .unwrap_or(NO_ZONE),
            );
            pairs.extend(instance.tokens.iter().map(|&t| (t, index)));
            instances.push(Arc::new(instance.clone()));
        }
        pairs.sort_unstable();
        pairs.dedup_by_key(|(token, _)| *token);
        let (tokens, owners) = pairs.into_iter().unzip();
        let newest_heartbeat = instances
            .iter()
            .map(|i| i.heartbeat_timestamp)
            .max()
            .unwrap_or(i64::MIN);
        Self {
            options,
            instances,
            instance_zone,
            zone_names,
            tokens,
            owners,
            revision,
            newest_heartbeat,
        }
    }

    /// An empty ring.
    pub fn empty(options: ReplicationOptions) -> Self {
        Self::new(&RingDesc::default(), options, 0)
    }

    /// The strategy's parameters.
    pub fn options(&self) -> &ReplicationOptions {
        &self.options
    }

    /// The KV revision this snapshot reflects (0 if unknown).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// All instances, sorted by ID.
    pub fn instances(&self) -> &[Arc<InstanceDesc>] {
        &self.instances
    }

    /// The instance with this ID.
    pub fn instance(&self, id: &str) -> Option<&Arc<InstanceDesc>> {
        self.instances
            .binary_search_by(|i| i.id.as_str().cmp(id))
            .ok()
            .map(|index| &self.instances[index])
    }

    /// Number of tokens in the ring.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The time health is judged at: the local clock, but no later than
    /// half a heartbeat timeout after the ring's newest heartbeat. When every
    /// heartbeat stops at once, the KV store is away (or this copy cannot
    /// read it), not every instance: the ring is then judged as it was when
    /// last read, so pushes and queries go on by the cached copy for as long
    /// as the KV store is away. One instance whose heartbeat lags the others
    /// still times out as before.
    pub fn clock(&self) -> i64 {
        self.clock_at(now_secs())
    }

    /// [`RingSnapshot::clock`] when the local clock says `now`.
    pub fn clock_at(&self, now: i64) -> i64 {
        let grace = i64::try_from(self.options.heartbeat_timeout.as_secs() / 2).unwrap_or(i64::MAX);
        if self.newest_heartbeat == i64::MIN || grace == 0 {
            return now;
        }
        now.min(self.newest_heartbeat.saturating_add(grace))
    }

    fn healthy(&self, instance: &InstanceDesc, op: Operation, now: i64) -> bool {
        op.is_healthy_state(instance.state)
            && instance.heartbeat_fresh(now, self.options.heartbeat_timeout.as_secs())
    }

    /// The replica set for `key`, by the local clock. See [`RingSnapshot::get_at`].
    pub fn get(&self, key: u32, op: Operation) -> Result<ReplicationSet, RingError> {
        self.get_at(key, op, self.clock())
    }

    /// The replica set for `key` at time `now` (seconds since the epoch).
    ///
    /// Walks clockwise from the first token ≥ `key` (wrapping past the
    /// largest), taking each new instance (in a zone not taken yet, when zone
    /// awareness is on) until it has `replication_factor` of them; an
    /// instance whose state extends the set for `op` makes it take one more
    /// (in the same zone). Unhealthy instances are then dropped: the quorum
    /// is `max(replication_factor, taken)/2 + 1`, and fewer healthy
    /// instances than that is [`RingError::TooManyUnhealthy`].
    pub fn get_at(&self, key: u32, op: Operation, now: i64) -> Result<ReplicationSet, RingError> {
        if self.tokens.is_empty() {
            return Err(RingError::EmptyRing);
        }
        let zone_aware = self.options.zone_awareness_enabled;
        let mut wanted = self.options.replication_factor.max(1);
        let mut taken: SmallVec<[u32; 8]> = SmallVec::new();
        let mut taken_zones: SmallVec<[u32; 8]> = SmallVec::new();
        let len = self.tokens.len();
        let start = self.tokens.partition_point(|&t| t < key) % len;
        for step in 0..len {
            if taken.len() >= wanted || taken.len() == self.instances.len() {
                break;
            }
            let owner = self.owners[(start + step) % len];
            if taken.contains(&owner) {
                continue;
            }
            let zone = self.instance_zone[owner as usize];
            if zone_aware && zone != NO_ZONE && taken_zones.contains(&zone) {
                continue;
            }
            taken.push(owner);
            if op.extends_replica_set(self.instances[owner as usize].state) {
                wanted += 1;
            } else if zone_aware && zone != NO_ZONE {
                taken_zones.push(zone);
            }
        }

        let quorum = self.options.replication_factor.max(taken.len()) / 2 + 1;
        let healthy_count = taken
            .iter()
            .filter(|&&i| self.healthy(&self.instances[i as usize], op, now))
            .count();
        if healthy_count < quorum {
            return Err(RingError::TooManyUnhealthy {
                required: quorum,
                healthy: healthy_count,
                unhealthy: taken
                    .iter()
                    .map(|&i| &self.instances[i as usize])
                    .filter(|i| !self.healthy(i, op, now))
                    .map(|i| i.addr.clone())
                    .collect(),
            });
        }
        let mut instances = Vec::with_capacity(healthy_count);
        instances.extend(
            taken
                .iter()
                .map(|&i| &self.instances[i as usize])
                .filter(|i| self.healthy(i, op, now))
                .cloned(),
        );
        Ok(ReplicationSet {
            instances,
            max_errors: healthy_count - quorum,
            max_unavailable_zones: None,
        })
    }

    /// Every instance healthy for `op`, with `max_errors = 0` (Cortex's
    /// `GetAllHealthy`). An empty ring is [`RingError::EmptyRing`].
    pub fn all_healthy(&self, op: Operation) -> Result<ReplicationSet, RingError> {
        self.all_healthy_at(op, self.clock())
    }

    /// [`RingSnapshot::all_healthy`] at time `now`.
    pub fn all_healthy_at(&self, op: Operation, now: i64) -> Result<ReplicationSet, RingError> {
        if self.instances.is_empty() {
            return Err(RingError::EmptyRing);
        }
        let instances = self
            .instances
            .iter()
            .filter(|i| self.healthy(i, op, now))
            .cloned()
            .collect();
        Ok(ReplicationSet {
            instances,
            max_errors: 0,
            max_unavailable_zones: None,
        })
    }

    /// The set for an operation that must reach every instance, e.g. a
    /// querier reading a tenant's recent data from all ingesters: every
    /// healthy instance, tolerating `replication_factor / 2` failures in all
    /// (each series lives on `replication_factor` instances, so a quorum of
    /// any key's replicas still answers). Too many unhealthy instances is
    /// [`RingError::TooManyUnhealthy`].
    pub fn replication_set_for_operation(
        &self,
        op: Operation,
    ) -> Result<ReplicationSet, RingError> {
        self.replication_set_for_operation_at(op, self.clock())
    }

    /// [`RingSnapshot::replication_set_for_operation`] at time `now`.
    pub fn replication_set_for_operation_at(
        &self,
        op: Operation,
        now: i64,
    ) -> Result<ReplicationSet, RingError> {
        if self.instances.is_empty() {
            return Err(RingError::EmptyRing);
        }
        let rf = self.options.replication_factor.max(1);
        if self.options.zone_awareness_enabled {
            return self.zone_set_at(op, now, rf);
        }
        let required = self.instances.len().max(rf) - rf / 2;
        let set = self.all_healthy_at(op, now)?;
        if set.instances.len() < required {
            return Err(RingError::TooManyUnhealthy {
                required,
                healthy: set.instances.len(),
                unhealthy: self
                    .instances
                    .iter()
                    .filter(|i| !self.healthy(i, op, now))
                    .map(|i| i.addr.clone())
                    .collect(),
            });
        }
        let max_errors = set.instances.len() - required;
        Ok(ReplicationSet {
            instances: set.instances,
            max_errors,
            max_unavailable_zones: None,
        })
    }

    /// The zone-aware form (Mimir's): each key has a replica in each of
    /// `rf` zones, so the answers of every instance of all zones but
    /// `rf / 2` cover every key. A zone with an unhealthy instance is left
    /// out and counts as one of those; more such zones than that is
    /// [`RingError::TooManyUnhealthy`].
    fn zone_set_at(&self, op: Operation, now: i64, rf: usize) -> Result<ReplicationSet, RingError> {
        let mut zones: Vec<&str> = self.instances.iter().map(|i| i.zone.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let tolerated = (rf / 2).min(zones.len().saturating_sub(1));
        let unhealthy: Vec<&InstanceDesc> = self
            .instances
            .iter()
            .filter(|i| !self.healthy(i, op, now))
            .map(|i| i.as_ref())
            .collect();
        let mut unhealthy_zones: Vec<&str> = unhealthy.iter().map(|i| i.zone.as_str()).collect();
        unhealthy_zones.sort_unstable();
        unhealthy_zones.dedup();
        if unhealthy_zones.len() > tolerated {
            let required = self
                .instances
                .iter()
                .filter(|i| !unhealthy_zones[..tolerated].contains(&i.zone.as_str()))
                .count();
            return Err(RingError::TooManyUnhealthy {
                required,
                healthy: self.instances.len() - unhealthy.len(),
                unhealthy: unhealthy.iter().map(|i| i.addr.clone()).collect(),
            });
        }
        let instances = self
            .instances
            .iter()
            .filter(|i| !unhealthy_zones.contains(&i.zone.as_str()))
            .cloned()
            .collect();
        Ok(ReplicationSet {
            instances,
            max_errors: 0,
            max_unavailable_zones: Some(tolerated - unhealthy_zones.len()),
        })
    }

    /// Counts per state, unhealthy instances, tokens and zones.
    pub fn summary(&self) -> RingSummary {
        self.summary_at(self.clock())
    }

    /// [`RingSnapshot::summary`] at time `now`.
    pub fn summary_at(&self, now: i64) -> RingSummary {
        let mut by_state: BTreeMap<InstanceState, usize> =
            InstanceState::ALL.iter().map(|&s| (s, 0)).collect();
        let mut unhealthy = 0;
        for instance in &self.instances {
            *by_state.entry(instance.state).or_default() += 1;
            if !instance.heartbeat_fresh(now, self.options.heartbeat_timeout.as_secs()) {
                unhealthy += 1;
            }
        }
        RingSummary {
            by_state,
            unhealthy,
            tokens: self.tokens.len(),
            zones: self.zone_names.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn instance(id: &str, zone: &str, state: InstanceState, tokens: &[u32]) -> InstanceDesc {
        InstanceDesc {
            id: id.into(),
            addr: format!("{id}:9095"),
            zone: zone.into(),
            state,
            tokens: tokens.to_vec(),
            registered_timestamp: NOW - 100,
            heartbeat_timestamp: NOW,
        }
    }

    fn ring(instances: Vec<InstanceDesc>, rf: usize, zones: bool) -> RingSnapshot {
        let mut desc = RingDesc::new();
        for i in instances {
            desc.instances.insert(i.id.clone(), i);
        }
        RingSnapshot::new(
            &desc,
            ReplicationOptions {
                replication_factor: rf,
                zone_awareness_enabled: zones,
                heartbeat_timeout: Duration::from_secs(60),
            },
            1,
        )
    }

    fn ids(set: &ReplicationSet) -> Vec<&str> {
        set.instances.iter().map(|i| i.id.as_str()).collect()
    }

    use InstanceState::{Active, Joining, Leaving, Pending};

    /// Five instances with interleaved tokens: a owns 10, 60; b 20, 70; ...
    fn five(states: [InstanceState; 5]) -> Vec<InstanceDesc> {
        ["a", "b", "c", "d", "e"]
            .iter()
            .zip(states)
            .enumerate()
            .map(|(n, (id, state))| {
                let t = 10 * (n as u32 + 1);
                instance(id, "", state, &[t, t + 50])
            })
            .collect()
    }

    #[test]
    fn walks_clockwise_from_first_token_at_or_after_key() {
        let r = ring(five([Active; 5]), 3, false);
        assert_eq!(
            ids(&r.get_at(10, Operation::Write, NOW).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(&r.get_at(11, Operation::Write, NOW).unwrap()),
            ["b", "c", "d"]
        );
        // Wraps: after 100 (e's second token) comes 10 (a).
        assert_eq!(
            ids(&r.get_at(95, Operation::Write, NOW).unwrap()),
            ["e", "a", "b"]
        );
        assert_eq!(
            ids(&r.get_at(101, Operation::Write, NOW).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(&r.get_at(u32::MAX, Operation::Read, NOW).unwrap()),
            ["a", "b", "c"]
        );
        let set = r.get_at(0, Operation::Write, NOW).unwrap();
        assert_eq!(set.max_errors, 1);
        assert_eq!(set.min_success(), 2);
    }

    #[test]
    fn replicas_are_distinct_instances() {
        // One instance owns many adjacent tokens.
        let r = ring(
            vec![
                instance("a", "", Active, &[1, 2, 3, 4, 5]),
                instance("b", "", Active, &[6]),
                instance("c", "", Active, &[7, 8]),
                instance("d", "", Active, &[100]),
            ],
            3,
            false,
        );
        assert_eq!(
            ids(&r.get_at(0, Operation::Write, NOW).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            ids(&r.get_at(7, Operation::Write, NOW).unwrap()),
            ["c", "d", "a"]
        );
    }

    #[test]
    fn random_rings_give_rf_distinct_instances() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut taken = std::collections::HashSet::new();
        let mut instances = Vec::new();
        for n in 0..9 {
            let tokens = crate::tokens::generate_tokens(128, &taken, &mut rng);
            taken.extend(tokens.iter().copied());
            let zone = ["z1", "z2", "z3"][n % 3];
            instances.push(instance(&format!("i{n}"), zone, Active, &tokens));
        }
        let plain = ring(instances.clone(), 3, false);
        let zoned = ring(instances, 3, true);
        for _ in 0..2000 {
            let key = rng.next_u32();
            let set = plain.get_at(key, Operation::Write, NOW).unwrap();
            let mut seen: Vec<_> = ids(&set);
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 3);

            let set = zoned.get_at(key, Operation::Write, NOW).unwrap();
            let mut zones: Vec<_> = set.instances.iter().map(|i| i.zone.as_str()).collect();
            zones.sort_unstable();
            assert_eq!(zones, ["z1", "z2", "z3"]);
        }
    }

    #[test]
    fn zone_awareness_picks_distinct_zones() {
        let r = ring(
            vec![
                instance("a1", "a", Active, &[10]),
                instance("a2", "a", Active, &[20]),
                instance("b1", "b", Active, &[30]),
                instance("b2", "b", Active, &[40]),
                instance("c1", "c", Active, &[50]),
            ],
            3,
            true,
        );
        assert_eq!(
            ids(&r.get_at(0, Operation::Write, NOW).unwrap()),
            ["a1", "b1", "c1"]
        );
        assert_eq!(
            ids(&r.get_at(35, Operation::Write, NOW).unwrap()),
            ["b2", "c1", "a1"]
        );
        // Without zones the walk takes neighbours.
        let plain = ring(
            r.instances().iter().map(|i| (**i).clone()).collect(),
            3,
            false,
        );
        assert_eq!(
            ids(&plain.get_at(0, Operation::Write, NOW).unwrap()),
            ["a1", "a2", "b1"]
        );
    }

    #[test]
    fn unhealthy_instances_are_dropped_and_quorum_enforced() {
        let mut instances = five([Active; 5]);
        instances[1].heartbeat_timestamp = NOW - 61; // b is stale
        let r = ring(instances.clone(), 3, false);
        let set = r.get_at(0, Operation::Write, NOW).unwrap();
        assert_eq!(ids(&set), ["a", "c"]);
        assert_eq!(set.max_errors, 0);
        // Stale heartbeats fail reads too.
        assert_eq!(ids(&r.get_at(0, Operation::Read, NOW).unwrap()), ["a", "c"]);

        instances[2].heartbeat_timestamp = NOW - 600; // and c
        let r = ring(instances, 3, false);
        match r.get_at(0, Operation::Write, NOW) {
            Err(RingError::TooManyUnhealthy {
                required,
                healthy,
                unhealthy,
            }) => {
                assert_eq!((required, healthy), (2, 1));
                assert_eq!(unhealthy, ["b:9095", "c:9095"]);
            }
            other => panic!("expected TooManyUnhealthy, got {other:?}"),
        }
    }

    #[test]
    fn leaving_and_joining_extend_writes() {
        let r = ring(five([Active, Leaving, Active, Active, Active]), 3, false);
        let set = r.get_at(0, Operation::Write, NOW).unwrap();
        // b extends the set to four; it is not healthy for writes, so the
        // three ACTIVE ones must all succeed (quorum 4/2+1 = 3).
        assert_eq!(ids(&set), ["a", "c", "d"]);
        assert_eq!(set.max_errors, 0);

        let r = ring(five([Joining, Active, Pending, Active, Active]), 3, false);
        let set = r.get_at(0, Operation::Write, NOW).unwrap();
        assert_eq!(ids(&set), ["b", "d", "e"]);
        assert_eq!(set.max_errors, 0);
    }

    #[test]
    fn reads_use_leaving_but_not_joining() {
        let r = ring(five([Active, Leaving, Active, Active, Active]), 3, false);
        let set = r.get_at(0, Operation::Read, NOW).unwrap();
        assert_eq!(ids(&set), ["a", "b", "c"]);
        assert_eq!(set.max_errors, 1);

        let r = ring(five([Active, Joining, Active, Active, Active]), 3, false);
        let set = r.get_at(0, Operation::Read, NOW).unwrap();
        assert_eq!(ids(&set), ["a", "c"]);
        assert_eq!(set.max_errors, 0);
    }

    #[test]
    fn leaving_in_a_zone_extends_within_the_zone() {
        let r = ring(
            vec![
                instance("a1", "a", Leaving, &[10]),
                instance("a2", "a", Active, &[20]),
                instance("b1", "b", Active, &[30]),
                instance("c1", "c", Active, &[40]),
            ],
            3,
            true,
        );
        let set = r.get_at(0, Operation::Write, NOW).unwrap();
        assert_eq!(ids(&set), ["a2", "b1", "c1"]);
    }

    #[test]
    fn small_and_empty_rings() {
        let empty = RingSnapshot::empty(ReplicationOptions::default());
        assert!(matches!(
            empty.get_at(1, Operation::Write, NOW),
            Err(RingError::EmptyRing)
        ));
        assert!(matches!(
            empty.all_healthy(Operation::Read),
            Err(RingError::EmptyRing)
        ));

        let one = ring(vec![instance("a", "", Active, &[5])], 1, false);
        let set = one.get_at(99, Operation::Write, NOW).unwrap();
        assert_eq!((ids(&set), set.max_errors), (vec!["a"], 0));

        // RF 3 with two instances: quorum 2, no slack.
        let two = ring(five([Active; 5])[..2].to_vec(), 3, false);
        let set = two.get_at(99, Operation::Write, NOW).unwrap();
        assert_eq!((set.instances.len(), set.max_errors), (2, 0));
    }

    #[test]
    fn when_every_heartbeat_stops_the_ring_is_judged_as_last_read() {
        // Every heartbeat at NOW, read five minutes later (the KV store
        // away all that time): judged at NOW + 30 s, every instance healthy.
        let r = ring(five([Active; 5]), 3, false);
        let later = NOW + 300;
        assert_eq!(r.clock_at(later), NOW + 30);
        let set = r
            .replication_set_for_operation_at(Operation::Read, r.clock_at(later))
            .unwrap();
        assert_eq!(set.instances.len(), 5);
        // One that stopped 50 s before the others still times out.
        let mut instances = five([Active; 5]);
        instances[4].heartbeat_timestamp = NOW - 50;
        let r = ring(instances, 3, false);
        let set = r
            .all_healthy_at(Operation::Read, r.clock_at(later))
            .unwrap();
        assert_eq!(ids(&set), ["a", "b", "c", "d"]);
        // While heartbeats come, the clock is the local one.
        assert_eq!(r.clock_at(NOW + 10), NOW + 10);
        assert_eq!(ring(Vec::new(), 3, false).clock_at(later), later);
    }

    #[test]
    fn all_healthy_and_operation_wide_sets() {
        let mut instances = five([Active, Active, Joining, Leaving, Active]);
        instances[4].heartbeat_timestamp = NOW - 1000;
        let r = ring(instances, 3, false);
        let set = r.all_healthy_at(Operation::Read, NOW).unwrap();
        assert_eq!((ids(&set), set.max_errors), (vec!["a", "b", "d"], 0));
        let set = r.all_healthy_at(Operation::Write, NOW).unwrap();
        assert_eq!(ids(&set), ["a", "b"]);

        // 5 instances, RF 3: 4 must answer; only 3 are healthy for reads.
        assert!(matches!(
            r.replication_set_for_operation_at(Operation::Read, NOW),
            Err(RingError::TooManyUnhealthy {
                required: 4,
                healthy: 3,
                ..
            })
        ));
        let r = ring(five([Active; 5]), 3, false);
        let set = r
            .replication_set_for_operation_at(Operation::Read, NOW)
            .unwrap();
        assert_eq!((set.instances.len(), set.max_errors), (5, 1));
    }

    #[test]
    fn summary_counts_states_and_unhealthy() {
        let mut instances = five([Active, Active, Joining, Leaving, Pending]);
        instances[0].heartbeat_timestamp = NOW - 61;
        instances[1].zone = "z".into();
        let s = ring(instances, 3, false).summary_at(NOW);
        assert_eq!(s.by_state[&Active], 2);
        assert_eq!(s.by_state[&Pending], 1);
        assert_eq!(s.unhealthy, 1);
        assert_eq!(s.tokens, 10);
        assert_eq!(s.zones, 1);
    }

    #[test]
    fn duplicate_tokens_in_the_kv_do_not_break_lookups() {
        let r = ring(
            vec![
                instance("a", "", Active, &[5, 9]),
                instance("b", "", Active, &[5]),
            ],
            1,
            false,
        );
        assert_eq!(r.token_count(), 2);
        let set = r.get_at(0, Operation::Write, NOW).unwrap();
        // Token 5 went to a (the first owner); b owns nothing, so only a is found.
        assert_eq!(ids(&set), ["a"]);
    }

    #[test]
    fn zone_aware_reads_tolerate_a_whole_zone_and_count_zones() {
        // Two instances in each of three zones, RF 3.
        let six = |unhealthy: &[&str]| {
            let instances = ["a1", "a2", "b1", "b2", "c1", "c2"]
                .iter()
                .enumerate()
                .map(|(n, id)| {
                    let mut i = instance(id, &id[..1], Active, &[10 * (n as u32 + 1)]);
                    if unhealthy.contains(id) {
                        i.heartbeat_timestamp = NOW - 3600;
                    }
                    i
                })
                .collect();
            ring(instances, 3, true)
        };
        let all = six(&[]);
        let set = all
            .replication_set_for_operation_at(Operation::Read, NOW)
            .unwrap();
        assert_eq!(
            (set.instances.len(), set.max_unavailable_zones),
            (6, Some(1))
        );
        // Zones count, not instances: a zone with every instance answered,
        // and another: done; one instance of each of two zones: not yet.
        let by_id = |id: &str| set.instances.iter().find(|i| i.id == id).unwrap().clone();
        let mut q = set.quorum();
        for id in ["a1", "b1", "c1"] {
            q.success(&by_id(id));
        }
        assert!(
            !q.reached(),
            "three instances of three zones, no zone whole"
        );
        q.success(&by_id("a2"));
        assert!(!q.reached());
        q.success(&by_id("b2"));
        assert!(q.reached(), "zones a and b whole");
        let mut q = set.quorum();
        q.failure(&by_id("a1"));
        q.failure(&by_id("a2"));
        assert!(!q.lost(), "one zone failing is tolerated");
        q.failure(&by_id("b1"));
        assert!(q.lost(), "a second zone failing is not");

        // A whole zone down (what the instance count, 5 of 6 needed, refused):
        // the other two zones, all of them needed.
        let zone_down = six(&["a1", "a2"]);
        let set = zone_down
            .replication_set_for_operation_at(Operation::Read, NOW)
            .unwrap();
        assert_eq!(ids(&set), ["b1", "b2", "c1", "c2"]);
        assert_eq!(set.max_unavailable_zones, Some(0));
        // One instance down in each of two zones: no read can cover every key.
        let two_zones = six(&["a1", "b2"]);
        let err = two_zones.replication_set_for_operation_at(Operation::Read, NOW);
        assert!(
            matches!(err, Err(RingError::TooManyUnhealthy { .. })),
            "{err:?}"
        );
    }
}
