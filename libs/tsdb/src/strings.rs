//! [`SharedStrings`]: one copy of each label string for every head of a
//! process. A head keeps its own symbol table (IDs are per head), but the
//! strings it points to come from here, so ten thousand small tenants that
//! all have `http_requests_total`, `job` and `instance` hold those bytes once,
//! not ten thousand times. A string stays while any head refers to it;
//! [`SharedStrings::sweep`] forgets the others.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use parking_lot::Mutex;

/// Independent locks, so that heads creating series at the same time rarely
/// wait on each other (a string is looked up here only when a head sees it
/// for the first time).
const SHARDS: usize = 16;

/// The interned strings, sharded by hash. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct SharedStrings {
    shards: Box<[Mutex<HashSet<Arc<str>>>]>,
    hasher: RandomState,
}

impl Default for SharedStrings {
    fn default() -> Self {
        Self::new()
    }
}

impl SharedStrings {
    pub fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The shared copy of `s`, made now if no head holds one.
    pub fn get(&self, s: &str) -> Arc<str> {
        let mut shard = self.shard(s).lock();
        if let Some(found) = shard.get(s) {
            return Arc::clone(found);
        }
        let new: Arc<str> = Arc::from(s);
        shard.insert(Arc::clone(&new));
        new
    }

    /// Forgets the strings that no head refers to any more; how many.
    pub fn sweep(&self) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let before = shard.len();
            shard.retain(|s| Arc::strong_count(s) > 1);
            dropped += before - shard.len();
        }
        dropped
    }

    /// How many distinct strings are held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, s: &str) -> &Mutex<HashSet<Arc<str>>> {
        let index = (self.hasher.hash_one(s) as usize) % SHARDS;
        &self.shards[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_string_until_nobody_holds_it() {
        let strings = SharedStrings::new();
        let a = strings.get("http_requests_total");
        let b = strings.get("http_requests_total");
        assert!(Arc::ptr_eq(&a, &b));
        let other = strings.get("job");
        assert_eq!(strings.len(), 2);

        assert_eq!(strings.sweep(), 0, "both strings are still held");
        drop(other);
        assert_eq!(strings.sweep(), 1);
        assert_eq!(strings.len(), 1);
        drop((a, b));
        assert_eq!(strings.sweep(), 1);
        assert!(strings.is_empty());
    }
}
