//! The zone's one lock, taken only to create families and series.
//!
//! The lock word holds the owner's pid (0 when free). nginx can lose a worker at any
//! moment (a crash, `kill -9`), so a waiter that has spun for a while asks whether the
//! owner still lives and, if not, takes the lock over. The arena then repairs the one
//! record the dead owner may have left half-made (see `Arena::recover`).

use std::sync::atomic::{AtomicU64, Ordering::*};

/// Tells whether a process id still runs. nginx glue passes `kill(pid, 0)`; tests pass
/// closures that simulate crashed owners.
pub type Liveness<'a> = &'a dyn Fn(u32) -> bool;

/// Attempts between two liveness checks of the owner.
const CHECK_EVERY: u32 = 1 << 10;

pub struct ZoneLock<'a> {
    word: &'a AtomicU64,
}

#[must_use]
pub struct Guard<'a> {
    word: &'a AtomicU64,
    /// The pid of a dead owner this guard took the lock from, if any.
    pub taken_over_from: Option<u32>,
}

impl<'a> ZoneLock<'a> {
    pub fn new(word: &'a AtomicU64) -> Self {
        ZoneLock { word }
    }

    pub fn acquire(&self, me: u32, alive: Liveness<'_>) -> Guard<'a> {
        debug_assert_ne!(me, 0, "0 marks a free lock");
        let mut attempts: u32 = 0;
        loop {
            let owner = match self
                .word
                .compare_exchange_weak(0, u64::from(me), Acquire, Relaxed)
            {
                Ok(_) => {
                    return Guard {
                        word: self.word,
                        taken_over_from: None,
                    }
                }
                Err(owner) => owner,
            };
            attempts = attempts.wrapping_add(1);
            if owner != 0 && attempts % CHECK_EVERY == 0 && !alive(owner as u32) {
                // Only one waiter wins the takeover; the others keep waiting on the winner.
                if self
                    .word
                    .compare_exchange(owner, u64::from(me), Acquire, Relaxed)
                    .is_ok()
                {
                    return Guard {
                        word: self.word,
                        taken_over_from: Some(owner as u32),
                    };
                }
            }
            if attempts % 64 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Current owner pid, 0 when free.
    pub fn owner(&self) -> u32 {
        self.word.load(Relaxed) as u32
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.word.store(0, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_and_releases() {
        let w = AtomicU64::new(0);
        let lock = ZoneLock::new(&w);
        {
            let g = lock.acquire(7, &|_| true);
            assert_eq!(lock.owner(), 7);
            assert!(g.taken_over_from.is_none());
        }
        assert_eq!(lock.owner(), 0);
    }

    #[test]
    fn dead_owner_is_taken_over() {
        let w = AtomicU64::new(41); // pid 41 died holding the lock
        let lock = ZoneLock::new(&w);
        let g = lock.acquire(7, &|pid| pid != 41);
        assert_eq!(g.taken_over_from, Some(41));
        assert_eq!(lock.owner(), 7);
    }

    #[test]
    fn counts_stay_exact_under_contention() {
        let w = Arc::new(AtomicU64::new(0));
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (1..=4u32)
            .map(|id| {
                let (w, counter) = (w.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let _g = ZoneLock::new(&w).acquire(id, &|_| true);
                        // A non-atomic read-modify-write: only correct under mutual exclusion.
                        let v = counter.load(Relaxed);
                        counter.store(v + 1, Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Relaxed), 8000);
    }
}
