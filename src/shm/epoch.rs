//! When a freed series block or chunk may be reused: a proof by epochs, not a wait.
//!
//! An update checks a handle (one load of the series' tag word) and then adds into the
//! series' values (one atomic add). Between the two a process can be descheduled for
//! any time (SIGSTOP, a debugger, a page swapped out); if the series is deleted and its
//! block given to another series meanwhile, the add lands in that series. A render
//! walks a series' key and values the same way. So a freed block may only be reused
//! once no process can still be between reading it as the old series and using it.
//!
//! **Participants.** Every process that updates or renders the zone (each nginx worker)
//! holds a slot of this table: its pid and the last epoch it announced. A worker's
//! render threads are covered by their worker's slot (below). A thread of its own that
//! reads or updates the zone outside the event loop (the push thread) holds a *thread*
//! slot: idle (holding nothing back) between its rounds, it [enters](Epochs::enter)
//! under the zone lock before it touches the zone and goes idle again after. Slots are claimed under
//! the zone lock when a worker starts and given back when it exits; a slot whose
//! process is gone (found by the `Liveness` check, `kill(pid, 0)`: true until nginx has
//! reaped the worker) is released by the next process that finds it holding reuse back.
//!
//! **Epochs.** The table starts with the zone's epoch, a counter that each free moves
//! on by one, under the zone lock: a block freed while the epoch was `s` is stamped `s`
//! and the epoch becomes `s + 1`. A participant *announces* by reading the epoch and
//! storing it in its slot, at a point where it is *quiescent*: between two updates,
//! with no handle checked and not yet used, no render in flight. For an nginx worker
//! that is a timer of its own event loop: an update (native log phase, Lua FFI call,
//! batch) runs from start to end inside one event handler and never yields between its
//! check and its add, so a timer handler always runs between two updates. The update
//! path itself announces nothing: it stays one load and one atomic add.
//!
//! **Reuse.** A block stamped `s` is reused only when every participant's announced
//! epoch is greater than `s` (see [`Epochs::oldest`]). A participant that stops (even
//! forever, between its check and its add) keeps its announcement where it was, so no
//! block freed since then is reused: its late add lands in the freed block, which
//! nothing reads, and is zeroed away with the block's next use. The bytes so held back
//! are counted, for the zone's own metrics. Free lists are first in, first out, so
//! stamps grow along a list: a list's head is the first block to pass.
//!
//! **Renders.** A worker's render runs in a pool thread, posted by the worker and
//! handed back to it. The worker does not announce while a render of its own is in
//! flight, so the render is protected by its worker's slot: a render stalled
//! mid-series holds reuse back; it reads the series' old values or, once it is
//! reused, none of it (a reused block is marked as being written before it is
//! zeroed, and a render skips it).
//!
//! **Memory ordering.** A free stores the series' dead tag and its block's free state,
//! then stores the next epoch with release (all under the zone lock, whose release and
//! acquire chain every free before later ones). An announcement loads the epoch with
//! acquire and stores it with release. A reuser loads each slot with acquire.
//! - If a reuser sees announcement `a > s`, the participant's load of the epoch read a
//!   value stored by the free stamped `s` or by a later one (under the lock, after it):
//!   the dead tag happens-before that load, so every later check of the participant
//!   sees the dead tag (or a later series' tag, of another generation) and refuses the
//!   handle. Every update the participant made before announcing happens-before its
//!   release store, hence before the reuser's acquire load and the zeroing that
//!   follows: no earlier update can land after the zeroing.
//! - A render posted after announcement `a` reads a block freed at `s < a` after its
//!   free (the free happens-before the announcement, which happens-before the post):
//!   it sees it free, being written (skipped) or live again as a complete later series;
//!   a series it does see live was freed, if at all, at `s >= a`, and is not reused
//!   before the worker announces again, after the render is back.
//! - A participant joins, and a thread enters, under the lock with the current epoch, so
//!   it cannot be missed by a reuser (reuse decisions are made under the lock too). A
//!   thread goes idle with a release store after its last access: a reuser that sees
//!   it idle reuses only after that access.
//!
//! **Out of slots.** A process that finds no free slot (more than [`SLOTS`] processes
//! on one zone) marks the table unprotected: from then on, nothing freed is reused in
//! that zone (deleted series' memory leaks until the zone is made again), and the
//! process may update safely without a slot.
//!
//! The table is plain words of the zone (`Region`): everything here is safe code, and
//! the tests below run it on heap memory.

use super::lock::{Guard, Liveness};
use super::region::{Offset, Region};
use std::sync::atomic::Ordering::*;

/// Participants per zone: nginx workers on one zone (nginx runs one per core).
pub const SLOTS: usize = 256;
/// Words of the table: the epoch, the unprotected flag, the bytes last found waiting,
/// then two words per slot (the owner's pid, 0 when free; the epoch it announced last).
pub const WORDS: usize = 3 + 2 * SLOTS;
const E_EPOCH: Offset = 0;
const E_UNPROTECTED: Offset = 1;
const E_WAITING: Offset = 2;
const E_SLOTS: Offset = 3;

/// A claimed slot of the table, as its holder keeps it: the slot's index and its owner
/// word (the pid, with [`THREAD`] for a thread slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub index: u32,
    pub owner: u64,
}

/// Marks a thread slot's owner word (the rest is the pid).
pub const THREAD: u64 = 1 << 32;
/// A thread slot's announcement while it is idle: it holds nothing back.
const IDLE: u64 = u64::MAX;

#[derive(Clone, Copy)]
pub struct Epochs<'a> {
    r: Region<'a>,
    at: Offset,
}

impl<'a> Epochs<'a> {
    /// The table at word `at` of `r` (zeroed when the zone was made).
    pub fn new(r: Region<'a>, at: Offset) -> Self {
        Epochs { r, at }
    }

    fn owner_word(&self, i: usize) -> Offset {
        self.at + E_SLOTS + 2 * i as Offset
    }

    fn announced_word(&self, i: usize) -> Offset {
        self.owner_word(i) + 1
    }

    /// The zone's current epoch.
    pub fn epoch(&self) -> u64 {
        self.r.word(self.at + E_EPOCH).load(Acquire)
    }

    /// Stamps a block freed now: returns the epoch it was freed in and moves the
    /// epoch on. The caller has made the block unreachable (its series' tag dead, its
    /// state free) before.
    pub fn stamp_free(&self, _held: &Guard<'_>) -> u64 {
        let w = self.r.word(self.at + E_EPOCH);
        let s = w.load(Relaxed);
        w.store(s + 1, Release);
        s
    }

    /// Claims a slot for `owner` (a pid, with [`THREAD`] for a thread of it) and
    /// announces the current epoch in it. A slot that still names `owner` belonged to
    /// an earlier process of that pid, now gone: it is taken over. With no slot free,
    /// slots of dead processes are freed; with none of those either, the table is
    /// marked unprotected and `None` returned.
    pub fn join(&self, _held: &Guard<'_>, owner: u64, alive: Liveness<'_>) -> Option<Slot> {
        debug_assert_ne!(owner as u32, 0);
        let me = owner;
        let mut free = None;
        for i in 0..SLOTS {
            let owner = self.r.load(self.owner_word(i));
            if owner == me {
                free = Some(i);
                break;
            }
            if owner == 0 && free.is_none() {
                free = Some(i);
            }
        }
        if free.is_none() {
            free = (0..SLOTS).find(|&i| {
                let owner = self.r.load(self.owner_word(i)) as u32;
                !alive(owner)
            });
        }
        let Some(i) = free else {
            self.r.word(self.at + E_UNPROTECTED).store(1, Release);
            return None;
        };
        self.r.store(self.announced_word(i), self.epoch());
        self.r.word(self.owner_word(i)).store(me, Release);
        Some(Slot {
            index: i as u32,
            owner: me,
        })
    }

    /// Gives `slot` back (its process or thread ends, or tests). Lock-free: a free slot
    /// holds nothing back, and a reuser that still sees it taken only waits longer.
    pub fn leave(&self, slot: Slot) {
        let _ = self
            .r
            .word(self.owner_word(slot.index as usize))
            .compare_exchange(slot.owner, 0, Release, Relaxed);
    }

    /// A thread slot's holder is about to read or update the zone: from now on nothing
    /// it can reach is reused until it goes [idle](Self::idle). Under the lock, so that
    /// no reuse decision misses it.
    pub fn enter(&self, _held: &Guard<'_>, slot: Slot) {
        self.r
            .word(self.announced_word(slot.index as usize))
            .store(self.epoch(), Release);
    }

    /// A thread slot's holder is done with the zone for now (everything it read or
    /// updated before this store is ordered before any reuse that sees it idle).
    pub fn idle(&self, slot: Slot) {
        self.r
            .word(self.announced_word(slot.index as usize))
            .store(IDLE, Release);
    }

    /// Announces that the caller, holder of `slot`, is quiescent: no handle it checked
    /// before is still to be used, no render of its own is in flight. Lock-free: one
    /// load and one store (none when the epoch has not moved).
    #[inline]
    pub fn announce(&self, slot: Slot) {
        let e = self.epoch();
        let w = self.r.word(self.announced_word(slot.index as usize));
        if w.load(Relaxed) != e {
            w.store(e, Release);
        }
    }

    /// Records how many freed bytes were found waiting for a participant (see
    /// `Arena::count_waiting`), for renders to read without the lock.
    pub fn set_waiting(&self, _held: &Guard<'_>, bytes: u64) {
        self.r.word(self.at + E_WAITING).store(bytes, Relaxed);
    }

    /// The freed bytes found waiting last time they were counted.
    pub fn waiting(&self) -> u64 {
        self.r.word(self.at + E_WAITING).load(Relaxed)
    }

    /// Whether the table was marked unprotected (a process found no slot).
    pub fn unprotected(&self) -> bool {
        self.r.word(self.at + E_UNPROTECTED).load(Acquire) != 0
    }

    /// The oldest epoch a participant may still be in: a block stamped `s` may be
    /// reused when `s < oldest`. Slots of dead processes that hold reuse back are freed
    /// on the way. 0 (nothing reusable) when the table is unprotected.
    pub fn oldest(&self, _held: &Guard<'_>, alive: Liveness<'_>) -> u64 {
        if self.unprotected() {
            return 0;
        }
        let mut oldest = self.epoch();
        for i in 0..SLOTS {
            let owner = self.r.word(self.owner_word(i)).load(Acquire);
            if owner == 0 {
                continue;
            }
            let announced = self.r.word(self.announced_word(i)).load(Acquire);
            if announced >= oldest {
                continue;
            }
            if !alive(owner as u32) {
                // Gone (reaped, or its pid not found): it holds nothing any more.
                self.leave(Slot {
                    index: i as u32,
                    owner,
                });
                continue;
            }
            oldest = announced;
        }
        oldest
    }

    /// Pids of the participants that hold back a block stamped `s` (for diagnostics
    /// and tests).
    pub fn holding_back(&self, s: u64) -> Vec<u32> {
        (0..SLOTS)
            .filter_map(|i| {
                let owner = self.r.word(self.owner_word(i)).load(Acquire) as u32;
                let announced = self.r.word(self.announced_word(i)).load(Acquire);
                (owner != 0 && announced <= s).then_some(owner)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::lock::ZoneLock;
    use crate::shm::region::heap_words;
    use std::sync::atomic::AtomicU64;

    fn table(mem: &[AtomicU64]) -> (Epochs<'_>, ZoneLock<'_>) {
        let r = Region::new(mem);
        (Epochs::new(r, 1), ZoneLock::new(r.word(0)))
    }

    const ALIVE: &dyn Fn(u32) -> bool = &|_| true;

    #[test]
    fn a_block_is_reusable_once_every_participant_announced_after_its_free() {
        let mem = heap_words(1 + WORDS);
        let (e, lock) = table(&mem);
        let g = lock.acquire(1, ALIVE);
        let a = e.join(&g, 10, ALIVE).unwrap();
        let b = e.join(&g, 11, ALIVE).unwrap();
        assert_ne!(a, b);
        let s = e.stamp_free(&g);
        assert!(s >= e.oldest(&g, ALIVE), "nobody announced since the free");
        e.announce(a);
        assert!(s >= e.oldest(&g, ALIVE), "b has not announced yet");
        assert_eq!(e.holding_back(s), vec![11]);
        e.announce(b);
        assert!(s < e.oldest(&g, ALIVE));
        assert!(e.holding_back(s).is_empty());
    }

    #[test]
    fn a_stalled_participant_holds_reuse_back_until_it_announces() {
        let mem = heap_words(1 + WORDS);
        let (e, lock) = table(&mem);
        let g = lock.acquire(1, ALIVE);
        let busy = e.join(&g, 10, ALIVE).unwrap();
        let stalled = e.join(&g, 11, ALIVE).unwrap();
        // The stalled one checked a handle and stopped; meanwhile many blocks are freed
        // and the busy one announces after each.
        let first = e.stamp_free(&g);
        for _ in 0..10_000 {
            e.stamp_free(&g);
            e.announce(busy);
            assert!(
                first >= e.oldest(&g, ALIVE),
                "reused under a stalled participant"
            );
        }
        let last = e.stamp_free(&g);
        assert_eq!(e.holding_back(last), vec![10, 11]);
        // It moves on: everything freed before its announcement is reusable, what is
        // freed after waits for the next round.
        e.announce(stalled);
        e.announce(busy);
        assert!(last < e.oldest(&g, ALIVE));
        let later = e.stamp_free(&g);
        assert!(later >= e.oldest(&g, ALIVE));
    }

    #[test]
    fn a_dead_participant_is_released_a_left_one_holds_nothing() {
        let mem = heap_words(1 + WORDS);
        let (e, lock) = table(&mem);
        let g = lock.acquire(1, ALIVE);
        let dead = e.join(&g, 41, ALIVE).unwrap();
        let left = e.join(&g, 42, ALIVE).unwrap();
        let s = e.stamp_free(&g);
        e.leave(left);
        assert!(s >= e.oldest(&g, ALIVE), "41 still runs");
        let gone = |pid| pid != 41;
        assert!(s < e.oldest(&g, &gone));
        assert!(e.holding_back(s).is_empty());
        // Its slot is free again; a process of the same pid takes its old slot back.
        assert_eq!(e.join(&g, 41, ALIVE), Some(dead));
    }

    #[test]
    fn a_thread_holds_reuse_back_only_while_it_is_in_the_zone() {
        let mem = heap_words(1 + WORDS);
        let (e, lock) = table(&mem);
        let g = lock.acquire(1, ALIVE);
        let worker = e.join(&g, 10, ALIVE).unwrap();
        let thread = e.join(&g, 10 | THREAD, ALIVE).unwrap();
        assert_ne!(worker, thread, "a thread has a slot of its own");
        e.idle(thread);
        let s = e.stamp_free(&g);
        e.announce(worker);
        assert!(s < e.oldest(&g, ALIVE), "an idle thread holds nothing back");
        e.enter(&g, thread);
        let t = e.stamp_free(&g);
        e.announce(worker);
        assert!(
            t >= e.oldest(&g, ALIVE),
            "freed while the thread is in the zone"
        );
        assert_eq!(e.holding_back(t), vec![10]);
        e.idle(thread);
        assert!(t < e.oldest(&g, ALIVE));
        e.leave(thread);
        assert_eq!(e.join(&g, 10, ALIVE), Some(worker), "the worker's own slot");
    }

    #[test]
    fn with_no_slot_left_nothing_is_reused() {
        let mem = heap_words(1 + WORDS);
        let (e, lock) = table(&mem);
        let g = lock.acquire(1, ALIVE);
        for pid in 1..=SLOTS as u32 {
            assert!(e.join(&g, u64::from(pid) + 100, ALIVE).is_some());
        }
        // Only a dead participant's slot can be taken...
        let one_dead = |pid| pid != 105;
        assert_eq!(e.join(&g, 9999, &one_dead).map(|s| s.index), Some(4));
        assert!(!e.unprotected());
        // ...and once none is free, the zone stops reusing anything.
        assert_eq!(e.join(&g, 10_000, ALIVE), None);
        assert!(e.unprotected());
        let s = e.stamp_free(&g);
        for i in 0..SLOTS as u32 {
            e.announce(Slot {
                index: i,
                owner: u64::from(i) + 101,
            });
        }
        assert_eq!(e.oldest(&g, ALIVE), 0);
        assert!(s >= e.oldest(&g, ALIVE));
    }

    #[test]
    fn concurrent_updates_never_land_after_reuse() {
        // Threads check a "tag" and add to a "value" with announcements in between;
        // a reuser frees and reuses the block (bumping the tag, zeroing the value)
        // only once the epochs allow it. A late add after the zeroing would show up as
        // a value that the new tag's owner never put there.
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let mem: Arc<Vec<AtomicU64>> = Arc::new(heap_words(1 + WORDS + 2));
        let stop = Arc::new(AtomicBool::new(false));
        let (tag_at, value_at) = (1 + WORDS as Offset, 2 + WORDS as Offset);
        let slots: Vec<Slot> = {
            let (e, lock) = table(&mem);
            let g = lock.acquire(1, ALIVE);
            (0..3u64)
                .map(|i| e.join(&g, 10 + i, ALIVE).unwrap())
                .collect()
        };
        let workers: Vec<_> = slots
            .into_iter()
            .map(|slot| {
                let (mem, stop) = (mem.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (e, _) = table(&mem);
                    let r = Region::new(&mem);
                    let mine = 7; // the only generation these threads add to
                    while !stop.load(Relaxed) {
                        for _ in 0..100 {
                            if r.word(tag_at).load(Relaxed) == mine {
                                std::hint::spin_loop();
                                r.word(value_at).fetch_add(1, Relaxed);
                            }
                        }
                        e.announce(slot);
                    }
                })
            })
            .collect();
        let (e, lock) = table(&mem);
        let r = Region::new(&mem);
        let mut reused = 0;
        for round in 0..200u64 {
            let g = lock.acquire(1, ALIVE);
            // Generation 7 lives; delete it (dead tag), wait for the epochs, reuse
            // the block as generation 8 (zeroed), then check nothing of 7 lands in it.
            r.word(value_at).store(0, Relaxed);
            r.word(tag_at).store(7, Release);
            drop(g);
            let g = lock.acquire(1, ALIVE);
            r.word(tag_at).store(0, Release);
            let s = e.stamp_free(&g);
            drop(g);
            loop {
                let g = lock.acquire(1, ALIVE);
                if s < e.oldest(&g, ALIVE) {
                    r.word(tag_at).store(8 + round, Relaxed);
                    r.word(value_at).store(0, Relaxed);
                    reused += 1;
                    break;
                }
                drop(g);
                std::thread::yield_now();
            }
            for _ in 0..50 {
                assert_eq!(r.word(value_at).load(Relaxed), 0, "late add after reuse");
            }
        }
        stop.store(true, Relaxed);
        workers.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(reused, 200);
    }
}
