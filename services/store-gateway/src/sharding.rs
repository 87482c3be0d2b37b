//! Which store-gateways serve which blocks: each block ID hashes to a token on
//! the store-gateway ring, and the first `replication_factor` distinct
//! instances clockwise from it own the block (Mimir's shuffle-free default
//! strategy). A JOINING or LEAVING instance makes the walk take one more, so
//! the block is already loaded by its next owner when ownership changes
//! hands. Health is not considered: a store-gateway that stops heartbeating
//! keeps its blocks (the other replicas serve them with RF > 1) until it is
//! forgotten from the ring, so blocks do not move around on a short hiccup.

use std::sync::Arc;

use strata_ring::{InstanceDesc, InstanceState, Ring};

/// The ring token of a block: xxh3 of its ID folded to 32 bits.
pub fn block_token(block_id: &str) -> u32 {
    let h = xxhash_rust::xxh3::xxh3_64(block_id.as_bytes());
    (h ^ (h >> 32)) as u32
}

/// IDs of the instances owning the block with `token`, in ring order.
pub fn block_owners(instances: &[Arc<InstanceDesc>], token: u32, rf: usize) -> Vec<String> {
    let mut tokens: Vec<(u32, usize)> = Vec::new();
    for (i, instance) in instances.iter().enumerate() {
        if instance.state == InstanceState::Pending {
            continue;
        }
        tokens.extend(instance.tokens.iter().map(|&t| (t, i)));
    }
    if tokens.is_empty() {
        return Vec::new();
    }
    tokens.sort_unstable();
    let start = tokens.partition_point(|&(t, _)| t < token);
    let mut wanted = rf.max(1);
    let mut taken: Vec<usize> = Vec::new();
    for step in 0..tokens.len() {
        if taken.len() >= wanted {
            break;
        }
        let owner = tokens[(start + step) % tokens.len()].1;
        if taken.contains(&owner) {
            continue;
        }
        taken.push(owner);
        if instances[owner].state != InstanceState::Active {
            wanted += 1;
        }
    }
    taken.into_iter().map(|i| instances[i].id.clone()).collect()
}

/// This store-gateway's share of the blocks.
#[derive(Debug, Clone)]
pub struct ShardingStrategy {
    ring: Ring,
    instance_id: String,
    replication_factor: usize,
}

impl ShardingStrategy {
    pub fn new(ring: Ring, instance_id: impl Into<String>, replication_factor: usize) -> Self {
        Self {
            ring,
            instance_id: instance_id.into(),
            replication_factor,
        }
    }

    /// Whether this instance owns the block; `None` when the ring does not
    /// know this instance (yet), in which case the caller keeps what it has.
    pub fn owns(&self, block_id: &str) -> Option<bool> {
        let snapshot = self.ring.snapshot();
        snapshot.instance(&self.instance_id)?;
        let owners = block_owners(
            snapshot.instances(),
            block_token(block_id),
            self.replication_factor,
        );
        Some(owners.contains(&self.instance_id))
    }

    /// The ring, to follow its changes.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn instance(id: &str, state: InstanceState, seed: u32) -> Arc<InstanceDesc> {
        // Spread tokens deterministically: 64 per instance.
        let tokens: Vec<u32> = (0..64u32)
            .map(|i| block_token(&format!("{id}-{seed}-{i}")))
            .collect();
        Arc::new(InstanceDesc {
            id: id.into(),
            addr: format!("{id}:9095"),
            zone: String::new(),
            state,
            tokens,
            registered_timestamp: 0,
            heartbeat_timestamp: 0,
        })
    }

    fn blocks(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("01HBLOCK{i:018}")).collect()
    }

    #[test]
    fn every_block_has_rf_distinct_owners_spread_evenly() {
        let ring: Vec<_> = ["sg-a", "sg-b", "sg-c"]
            .iter()
            .enumerate()
            .map(|(i, id)| instance(id, InstanceState::Active, i as u32))
            .collect();
        for rf in [1, 2, 3] {
            let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
            for b in blocks(3000) {
                let owners = block_owners(&ring, block_token(&b), rf);
                assert_eq!(owners.len(), rf, "{b}");
                let mut distinct = owners.clone();
                distinct.sort();
                distinct.dedup();
                assert_eq!(distinct.len(), rf);
                for o in owners {
                    *per_instance.entry(o).or_default() += 1;
                }
            }
            // 3000 × rf owner slots over 3 instances: each within ±25 % of fair.
            let fair = 3000 * rf / 3;
            for (id, n) in &per_instance {
                assert!(
                    *n > fair * 3 / 4 && *n < fair * 5 / 4,
                    "rf {rf}: {id} owns {n}, fair share {fair}"
                );
            }
        }
        // More replicas than instances: every instance, once.
        assert_eq!(block_owners(&ring, 42, 5).len(), 3);
        assert!(block_owners(&[], 42, 1).is_empty());
    }

    #[test]
    fn ownership_is_stable_and_a_new_instance_takes_a_share() {
        let three: Vec<_> = ["sg-a", "sg-b", "sg-c"]
            .iter()
            .enumerate()
            .map(|(i, id)| instance(id, InstanceState::Active, i as u32))
            .collect();
        let mut four = three.clone();
        four.push(instance("sg-d", InstanceState::Active, 3));
        let mut moved = 0;
        for b in blocks(2000) {
            let t = block_token(&b);
            assert_eq!(block_owners(&three, t, 1), block_owners(&three, t, 1));
            let before = block_owners(&three, t, 1);
            let after = block_owners(&four, t, 1);
            if before != after {
                // Only to the new instance, never between old ones.
                assert_eq!(after, vec!["sg-d".to_string()]);
                moved += 1;
            }
        }
        assert!(moved > 300 && moved < 700, "{moved} of 2000 moved");
    }

    #[test]
    fn joining_and_leaving_instances_extend_the_owners() {
        let ring = vec![
            instance("sg-a", InstanceState::Joining, 0),
            instance("sg-b", InstanceState::Active, 1),
            instance("sg-c", InstanceState::Pending, 2),
        ];
        for b in blocks(200) {
            let owners = block_owners(&ring, block_token(&b), 1);
            // PENDING never owns; whenever the JOINING one is first, the
            // ACTIVE one loads the block too.
            assert!(!owners.contains(&"sg-c".to_string()));
            if owners[0] == "sg-a" {
                assert_eq!(owners, vec!["sg-a".to_string(), "sg-b".to_string()]);
            } else {
                assert_eq!(owners, vec!["sg-b".to_string()]);
            }
        }
    }
}
