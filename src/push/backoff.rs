//! The delays between pushes: the interval, or a capped doubling while they fail.

use std::time::Duration;

/// Delays between pushes: the configured interval while they succeed, and a doubling
/// delay from one second, capped, while they fail.
#[derive(Debug, Clone)]
pub struct Backoff {
    interval: Duration,
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A schedule for pushes every `interval`.
    ///
    /// The cap is at least a minute so that a short interval does not hammer a gateway
    /// that is down, and at least the interval so that failing never pushes more often
    /// than succeeding would.
    pub fn new(interval: Duration) -> Self {
        Backoff {
            interval,
            base: Duration::from_secs(1),
            max: interval.max(Duration::from_secs(60)),
            failures: 0,
        }
    }

    /// Records a successful push, ending any run of failures.
    pub fn success(&mut self) {
        self.failures = 0;
    }

    /// Records a failed push and returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let factor = 1u32.checked_shl(self.failures - 1).unwrap_or(u32::MAX);
        self.base
            .saturating_mul(factor)
            .min(self.max)
            .max(Duration::from_secs(1))
    }

    /// The wait after a successful push: the configured interval.
    pub fn next_delay_ok(&self) -> Duration {
        self.interval
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_sequence() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(15));
        assert_eq!(b.next_delay_ok(), s(15));
        let seq: Vec<_> = (0..8).map(|_| b.fail()).collect();
        assert_eq!(seq, [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60)]);
        assert_eq!(b.failures(), 8);
        b.success();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.fail(), s(1));
        assert_eq!(b.next_delay_ok(), s(15));

        let mut b = Backoff::new(s(300));
        let seq: Vec<_> = (0..10).map(|_| b.fail()).collect();
        assert_eq!(seq[8], s(256));
        assert_eq!(seq[9], s(300));
        for _ in 0..100 {
            assert_eq!(b.fail(), s(300));
        }

        let mut b = Backoff::new(Duration::from_millis(100));
        assert_eq!(b.fail(), s(1));
        assert_eq!(b.next_delay_ok(), Duration::from_millis(100));
    }
}
