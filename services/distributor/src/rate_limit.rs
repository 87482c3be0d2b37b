//! The per-tenant ingestion rate limit: a token bucket per tenant holding up to
//! `ingestion_burst_size` samples and refilled at `ingestion_rate` samples per
//! second, like Mimir's (golang.org/x/time/rate) limiter.
//!
//! Strategy: "local". Each distributor enforces the full rate on its own, so with
//! N distributors a tenant may reach N times `ingestion_rate`. Mimir's "global"
//! strategy (rate / number of healthy distributors) needs a distributor ring,
//! which Strata does not have yet.

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// Token buckets by tenant.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<Buckets>,
}

/// How often buckets that have refilled are forgotten.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Default)]
struct Buckets {
    by_tenant: HashMap<String, Bucket>,
    last_prune: Option<Instant>,
}

impl Buckets {
    /// Drops the buckets that are full again at `now`: a full bucket is what a
    /// tenant without one gets, so forgetting it changes no answer, and tenants
    /// that stopped pushing no longer hold memory.
    fn prune(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|last| now.saturating_duration_since(last) < PRUNE_EVERY)
        {
            return;
        }
        self.last_prune = Some(now);
        self.by_tenant.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * b.rate < b.burst as f64
        });
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: f64,
    burst: usize,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// Takes `n` tokens from `tenant`'s bucket if it holds that many at `now`.
    /// A changed `rate` or `burst` (a reloaded override) replaces the bucket
    /// with a full one, as Mimir does.
    pub(crate) fn allow_n(
        &self,
        tenant: &str,
        now: Instant,
        n: usize,
        rate: f64,
        burst: usize,
    ) -> bool {
        if n == 0 {
            return true;
        }
        let mut all = self.buckets.lock();
        all.prune(now);
        let buckets = &mut all.by_tenant;
        let current = matches!(buckets.get(tenant), Some(b) if b.rate == rate && b.burst == burst);
        if !current {
            buckets.insert(
                tenant.to_string(),
                Bucket {
                    rate,
                    burst,
                    tokens: burst as f64,
                    last: now,
                },
            );
        }
        let Some(bucket) = buckets.get_mut(tenant) else {
            return false;
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst as f64);
        bucket.last = bucket.last.max(now);
        if bucket.tokens >= n as f64 {
            bucket.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        // A full bucket allows the whole burst at once, then nothing.
        assert!(limiter.allow_n("a", t0, 60, 10.0, 100));
        assert!(limiter.allow_n("a", t0, 40, 10.0, 100));
        assert!(!limiter.allow_n("a", t0, 1, 10.0, 100));
        // 10 tokens/s: after 1.5 s there are 15.
        let t1 = t0 + Duration::from_millis(1500);
        assert!(!limiter.allow_n("a", t1, 16, 10.0, 100));
        assert!(limiter.allow_n("a", t1, 15, 10.0, 100));
        assert!(!limiter.allow_n("a", t1, 1, 10.0, 100));
        // The bucket never holds more than the burst.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(!limiter.allow_n("a", t2, 101, 10.0, 100));
        assert!(limiter.allow_n("a", t2, 100, 10.0, 100));
    }

    #[test]
    fn tenants_have_their_own_buckets() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.allow_n("a", t0, 10, 1.0, 10));
        assert!(!limiter.allow_n("a", t0, 1, 1.0, 10));
        assert!(limiter.allow_n("b", t0, 10, 1.0, 10));
    }

    #[test]
    fn a_changed_limit_starts_a_new_full_bucket() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.allow_n("a", t0, 10, 1.0, 10));
        assert!(!limiter.allow_n("a", t0, 1, 1.0, 10));
        assert!(limiter.allow_n("a", t0, 50, 1.0, 50));
        // Empty requests always pass; time going backwards does not refill.
        assert!(limiter.allow_n("a", t0, 0, 1.0, 50));
        assert!(!limiter.allow_n("a", t0 - Duration::from_secs(1), 1, 1.0, 50));
    }

    #[test]
    fn refilled_buckets_are_forgotten_without_changing_answers() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        assert!(limiter.allow_n("idle", t0, 10, 10.0, 10));
        assert!(limiter.allow_n("busy", t0, 10, 10.0, 10));
        // Over a minute later "idle" has long refilled (1 s would do) and is
        // dropped at the next prune; "busy" keeps pushing, so after its last
        // push it holds a bucket with its tokens spent.
        let t1 = t0 + Duration::from_secs(61);
        assert!(limiter.allow_n("busy", t1, 10, 10.0, 10));
        assert!(limiter.allow_n("busy", t1 + Duration::from_secs(61), 10, 10.0, 10));
        let buckets = limiter.buckets.lock();
        assert!(!buckets.by_tenant.contains_key("idle"));
        assert!(buckets.by_tenant.contains_key("busy"));
        drop(buckets);
        // A forgotten tenant starts from a full bucket, as it would have.
        let t2 = t1 + Duration::from_secs(62);
        assert!(limiter.allow_n("idle", t2, 10, 10.0, 10));
        assert!(!limiter.allow_n("idle", t2, 1, 10.0, 10));
    }
}
