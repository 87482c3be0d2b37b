//! [`SourceFailures`]: failed authentications per source address, and the
//! back-off that refuses an address after too many of them.
//!
//! A fixed window per address: the first failure opens it; once `limit`
//! failures fall in it, every request from that address is refused until the
//! window ends, and the next failure after that opens a new one. So an
//! address gets at most `limit` guesses per `window` however fast it sends. A
//! success does not clear the count: otherwise a caller holding one valid
//! credential could interleave it with guesses at another.
//!
//! The table is bounded ([`MAX_SOURCES`]): when full, windows that ended are
//! dropped, then the oldest one. IPv6 addresses count by their /64, which is
//! what one host usually holds; IPv4-mapped IPv6 addresses as the IPv4 one.
//! The addresses never become metric labels; they appear only in log lines.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Most addresses tracked at once (about 50 bytes each).
pub const MAX_SOURCES: usize = 10_000;

/// What [`SourceFailures::record_failure`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// Failures from this source in its current window, this one included.
    pub(crate) failures: u32,
    /// Whether this failure reached the limit (the source is refused from now
    /// until the window ends).
    pub(crate) now_blocked: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Failed attempts per source, with the back-off decision.
#[derive(Debug)]
pub(crate) struct SourceFailures {
    limit: u32,
    window: Duration,
    max_sources: usize,
    windows: HashMap<IpAddr, Window>,
}

impl SourceFailures {
    /// `limit` failures per `window` per source; a `limit` of 0 turns the
    /// back-off off (failures are still counted in the metric, not here).
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self::with_capacity(limit, window, MAX_SOURCES)
    }

    pub(crate) fn with_capacity(limit: u32, window: Duration, max_sources: usize) -> Self {
        Self {
            limit,
            window,
            max_sources: max_sources.max(1),
            windows: HashMap::new(),
        }
    }

    /// `None` when `source` may try; else how long until its window ends.
    pub(crate) fn blocked_for(&self, source: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let w = self.windows.get(&source_key(source))?;
        let end = w.start + self.window;
        (w.failures >= self.limit && now < end).then(|| end - now)
    }

    /// Counts a failed attempt from `source`.
    pub(crate) fn record_failure(&mut self, source: IpAddr, now: Instant) -> Recorded {
        if self.limit == 0 {
            return Recorded {
                failures: 0,
                now_blocked: false,
            };
        }
        let key = source_key(source);
        if !self.windows.contains_key(&key) && self.windows.len() >= self.max_sources {
            self.make_room(now);
        }
        let window = self.window;
        let w = self.windows.entry(key).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now >= w.start + window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        Recorded {
            failures: w.failures,
            now_blocked: w.failures == self.limit,
        }
    }

    /// Drops the windows that ended; if none did, the oldest one.
    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.windows.retain(|_, w| now < w.start + window);
        if self.windows.len() >= self.max_sources {
            if let Some(oldest) = self
                .windows
                .iter()
                .min_by_key(|(_, w)| w.start)
                .map(|(k, _)| *k)
            {
                self.windows.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.windows.len()
    }
}

/// The key an address counts under: IPv4 as is, IPv6 by its /64.
fn source_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V4(_) => source,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut f = SourceFailures::new(10, minute);
        let attacker = ip("192.0.2.7");
        for n in 0..9 {
            let r = f.record_failure(attacker, t0 + Duration::from_secs(n));
            assert_eq!(r.failures, n as u32 + 1);
            assert!(!r.now_blocked);
            assert_eq!(f.blocked_for(attacker, t0 + Duration::from_secs(n)), None);
        }
        let r = f.record_failure(attacker, t0 + Duration::from_secs(9));
        assert!(r.now_blocked, "{r:?}");
        assert_eq!(
            f.blocked_for(attacker, t0 + Duration::from_secs(20)),
            Some(Duration::from_secs(40))
        );
        // Another address is not affected.
        assert_eq!(
            f.blocked_for(ip("192.0.2.8"), t0 + Duration::from_secs(20)),
            None
        );
        // The window ends a minute after its first failure.
        assert_eq!(f.blocked_for(attacker, t0 + minute), None);
        // And the next failure opens a new one.
        let r = f.record_failure(attacker, t0 + minute + Duration::from_secs(1));
        assert_eq!(r.failures, 1);
        assert_eq!(
            f.blocked_for(attacker, t0 + minute + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn failures_spread_over_windows_never_block() {
        let t0 = Instant::now();
        let mut f = SourceFailures::new(3, Duration::from_secs(10));
        let source = ip("198.51.100.1");
        for i in 0..20u64 {
            // Two failures per 10 s window.
            let now = t0 + Duration::from_secs(i * 5);
            f.record_failure(source, now);
            assert_eq!(f.blocked_for(source, now), None, "at {i}");
        }
    }

    #[test]
    fn a_limit_of_zero_turns_it_off() {
        let t0 = Instant::now();
        let mut f = SourceFailures::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            f.record_failure(ip("192.0.2.1"), t0);
        }
        assert_eq!(f.blocked_for(ip("192.0.2.1"), t0), None);
        assert_eq!(f.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let t0 = Instant::now();
        let mut f = SourceFailures::new(2, Duration::from_secs(60));
        f.record_failure(ip("2001:db8:1:2::1"), t0);
        f.record_failure(ip("2001:db8:1:2:ffff::9"), t0);
        assert!(f.blocked_for(ip("2001:db8:1:2::77"), t0).is_some());
        assert_eq!(f.blocked_for(ip("2001:db8:1:3::1"), t0), None);
        f.record_failure(ip("::ffff:192.0.2.5"), t0);
        f.record_failure(ip("192.0.2.5"), t0);
        assert!(f.blocked_for(ip("192.0.2.5"), t0).is_some());
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut f = SourceFailures::with_capacity(5, Duration::from_secs(60), 100);
        for i in 0..1000u32 {
            let source = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            f.record_failure(source, t0 + Duration::from_millis(u64::from(i)));
            assert!(f.tracked() <= 100);
        }
        assert_eq!(f.tracked(), 100);
        // The newest sources are the ones kept.
        let newest = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + 999));
        let r = f.record_failure(newest, t0 + Duration::from_secs(2));
        assert_eq!(r.failures, 2);
    }
}
