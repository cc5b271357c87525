//! A token bucket for background write bytes.
//!
//! Compactions ask for bytes before they write them and sleep until the bucket holds
//! them; flushes take bytes without waiting (a delayed flush would stall writers), which
//! can drive the bucket negative, so compactions yield to flushes. The bucket holds at
//! most 100 ms of budget, so an idle period does not buy a burst, and owes at most one
//! second, so a large flush cannot park a compaction (and its thread) for long. Sleeps
//! come in slices that give up once the database closes.
//!
//! Trade-off: one lock per request; requests are per output block (kilobytes), so the
//! lock is taken a few thousand times a second at most.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

#[derive(Debug)]
struct Bucket {
    /// Available bytes; negative after flushes overdrew it.
    tokens: f64,
    refilled: Instant,
}

/// Limits background write bytes per second; a rate of 0 means no limit.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    bytes_per_sec: u64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// A limiter for `bytes_per_sec` (0: unlimited).
    pub(crate) fn new(bytes_per_sec: u64) -> Self {
        RateLimiter {
            bytes_per_sec,
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                refilled: Instant::now(),
            }),
        }
    }

    fn burst(&self) -> f64 {
        self.bytes_per_sec as f64 / 10.0
    }

    fn refill(&self, bucket: &mut Bucket) {
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.refilled = now;
        bucket.tokens = (bucket.tokens + elapsed * self.bytes_per_sec as f64).min(self.burst());
    }

    fn floor(&self) -> f64 {
        -(self.bytes_per_sec as f64)
    }

    /// Takes `bytes` from the bucket, sleeping until they are available or `stop`
    /// says to give up.
    pub(crate) fn acquire(&self, bytes: u64, stop: impl Fn() -> bool) {
        if self.bytes_per_sec == 0 || bytes == 0 {
            return;
        }
        let wait = {
            let mut bucket = self.bucket.lock();
            self.refill(&mut bucket);
            bucket.tokens = (bucket.tokens - bytes as f64).max(self.floor());
            if bucket.tokens >= 0.0 {
                return;
            }
            Duration::from_secs_f64(-bucket.tokens / self.bytes_per_sec as f64)
        };
        // The bytes are already taken: sleeping until the deficit is repaid keeps the
        // long-run rate at the limit.
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            if now >= deadline || stop() {
                return;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }

    /// Takes `bytes` without waiting (flushes).
    pub(crate) fn charge(&self, bytes: u64) {
        if self.bytes_per_sec == 0 || bytes == 0 {
            return;
        }
        let mut bucket = self.bucket.lock();
        self.refill(&mut bucket);
        bucket.tokens = (bucket.tokens - bytes as f64).max(self.floor());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits_and_limited_waits_for_the_deficit() {
        let free = RateLimiter::new(0);
        free.acquire(u64::MAX, || false);
        free.charge(u64::MAX);
        // 1 MB/s: taking 100 KB beyond the (empty) bucket means sleeping about 100 ms.
        let limited = RateLimiter::new(1_000_000);
        let start = Instant::now();
        limited.acquire(100_000, || false);
        assert!(start.elapsed() >= Duration::from_millis(90));
        // A flush overdraws the bucket without waiting; the next compaction pays.
        limited.charge(50_000);
        let start = Instant::now();
        limited.acquire(1, || false);
        assert!(start.elapsed() >= Duration::from_millis(40));
        // The debt is capped at one second of budget.
        limited.charge(u64::MAX);
        let tokens = limited.bucket.lock().tokens;
        assert!(tokens >= -1_000_000.0, "deficit {tokens}");
    }
}
