//! The intake rate limit: `rate_limit_per_minute` requests per client IP, as a GCRA.
//!
//! On a store several gateways share (PostgreSQL), the limit is shared too ([`shared_key`] and
//! [`crate::store::Outbox::admit`]), so N replicas do not allow N times the limit; elsewhere each
//! gateway keeps its own table, below.
//!
//! Each address keeps one instant (its "theoretical arrival time"); a request is allowed while
//! that instant is less than a minute's worth of burst ahead of now. The limit allows a burst of
//! the whole per-minute allowance, then one request per `60 s / limit`. Addresses whose instant
//! has passed hold nothing worth keeping and are pruned, so the table stays bounded by the
//! addresses active in the last minute.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Entries past which a request first prunes idle addresses.
const PRUNE_AT: usize = 100_000;

/// Per-IP request budget.
#[derive(Default)]
pub struct RateLimiter {
    arrivals: DashMap<IpAddr, Instant>,
}

impl RateLimiter {
    /// Counts a request from `ip` at `now`; `Err(wait)` when it is over `per_minute`.
    pub fn check(&self, ip: IpAddr, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if self.arrivals.len() >= PRUNE_AT {
            self.arrivals.retain(|_, tat| *tat > now);
        }
        let interval = Duration::from_secs(60) / per_minute.max(1);
        let burst = interval * per_minute.saturating_sub(1);
        let mut tat = self.arrivals.entry(ip).or_insert(now);
        let start = (*tat).max(now);
        let ahead = start - now;
        if ahead > burst {
            return Err(ahead - burst);
        }
        *tat = start + interval;
        Ok(())
    }
}

/// The shared limiter's key for `ip`: an HMAC under the tag key of the address and the UTC day.
/// A client address is personal data: the store never sees it, and a day's keys cannot be linked
/// to the next day's.
pub fn shared_key(tag_key: &[u8], ip: IpAddr, unix_secs: u64) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(tag_key).expect("HMAC takes any key length");
    mac.update(b"intake-rate\0");
    mac.update(&(unix_secs / 86_400).to_be_bytes());
    mac.update(ip.to_string().as_bytes());
    mac.finalize().into_bytes().into()
}

/// The GCRA's cost of one request and its burst, in seconds, for `per_minute`.
pub fn shared_budget(per_minute: u32) -> (f64, f64) {
    let interval = 60.0 / f64::from(per_minute.max(1));
    (interval, interval * f64::from(per_minute.saturating_sub(1)))
}

/// `Retry-After` in whole seconds, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs_f64().ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_burst_then_one_per_interval_per_address() {
        let limiter = RateLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(a, 3, t0), Ok(()));
        }
        let wait = limiter.check(a, 3, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(retry_after_secs(wait), 20);
        assert_eq!(
            limiter.check(b, 3, t0),
            Ok(()),
            "addresses have separate budgets"
        );
        // Refused requests cost nothing; after one interval one more is allowed.
        assert!(limiter.check(a, 3, t0 + Duration::from_secs(19)).is_err());
        assert_eq!(limiter.check(a, 3, t0 + Duration::from_secs(20)), Ok(()));
        assert!(limiter.check(a, 3, t0 + Duration::from_secs(20)).is_err());
        // A quiet minute restores the whole burst.
        let later = t0 + Duration::from_secs(120);
        for _ in 0..3 {
            assert_eq!(limiter.check(a, 3, later), Ok(()));
        }
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
