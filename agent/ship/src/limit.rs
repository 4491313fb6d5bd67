//! Bounds on what the shipper sends: a token bucket over bytes per second, and backoff with
//! jitter after failures.

use std::time::{Duration, Instant};

/// A token bucket over bytes: `rate` bytes per second refill it, up to `burst`. A request
/// larger than what is in the bucket goes into debt and waits until it is paid off, so the
/// average rate over any long window stays at or below `rate`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: u64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` 0 means unlimited. The bucket starts full (`burst` bytes, at least one second
    /// of `rate` capped at 1 MiB, so small segments go out at once).
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        let burst = rate.min(1 << 20) as f64;
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` bytes at `now` and returns how long the caller must wait before sending them.
    pub fn take(&mut self, n: u64, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

/// Exponential backoff with "equal jitter": the n-th delay is uniformly drawn from
/// [cap/2, cap] where cap = min(max, min·2ⁿ), so retries from many machines spread out but a
/// delay is never shorter than half its step nor longer than `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The upper bound of the next delay.
    pub fn cap(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay, with `unit` in [0, 1) as the random draw.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let cap = self.cap();
        self.attempt = self.attempt.saturating_add(1);
        let half = cap / 2;
        half + (cap - half).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The next delay, jittered from the system's random source.
    pub fn next_delay(&mut self) -> Duration {
        let mut b = [0u8; 8];
        let unit = match getrandom::fill(&mut b) {
            Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
            Err(_) => 0.5,
        };
        self.next_with(unit)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_bounds_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        // A full bucket (1000 bytes) lets the first 1000 go at once.
        assert_eq!(b.take(1000, t0), Duration::ZERO);
        // The next 500 must wait half a second.
        assert_eq!(b.take(500, t0), Duration::from_millis(500));
        // After they are paid off (0.5 s later), another 1000 wait one second more.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take(1000, t1), Duration::from_secs(1));
        // Idle time refills at most `burst`.
        let t2 = t1 + Duration::from_secs(100);
        assert_eq!(b.take(1000, t2), Duration::ZERO);
        assert!(b.take(1, t2) > Duration::ZERO);
        // Over a long run, bytes sent / time ≤ rate (+ one burst).
        let mut b = TokenBucket::new(4096, t0);
        let mut now = t0;
        let mut sent = 0u64;
        for _ in 0..100 {
            now += b.take(3000, now);
            sent += 3000;
        }
        let secs = now.duration_since(t0).as_secs_f64();
        assert!(
            sent as f64 <= 4096.0 * secs + 4096.0 + 1.0,
            "{sent} in {secs}"
        );
    }

    #[test]
    fn unlimited_never_waits() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(0, t0);
        assert_eq!(b.take(u64::MAX, t0), Duration::ZERO);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(min, max);
        let mut caps = Vec::new();
        for i in 0..40 {
            let cap = b.cap();
            let d = b.next_delay();
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {i}: {d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(d <= max);
            caps.push(cap);
        }
        assert_eq!(caps[0], min);
        assert_eq!(caps[1], min * 2);
        assert_eq!(caps[39], max);
        assert!(caps.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(b.clone().next_with(0.0), max / 2);
        assert_eq!(b.clone().next_with(1.0), max);
        b.reset();
        assert_eq!(b.cap(), min);
    }
}
