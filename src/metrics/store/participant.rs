//! Processes and threads as participants of the zone's epochs.

use super::*;

/// A process (or one of its threads) that takes the zone lock: its pid, which the lock
/// records as its owner, and how to tell whether another owner still runs (a dead
/// owner's lock is taken over). Made once by the glue, passed to every call that may
/// lock.
#[derive(Clone, Copy)]
pub struct Participant<'a> {
    pub me: u32,
    pub alive: Liveness<'a>,
}

impl<'a> Store<'a> {
    /// Makes process `p.me` a participant of the zone's epochs (see
    /// [`crate::shm::epoch`]): from now on nothing it could still be using is reused
    /// until it [announces](Self::announce) a quiescent point. `None`: no slot was
    /// free, and the zone stops reusing freed memory instead.
    pub fn join_epochs(&self, p: Participant<'_>) -> Option<Slot> {
        let g = self.lock(p);
        self.arena.epochs().join(&g, u64::from(p.me), p.alive)
    }

    /// Makes a thread of process `p.me` that reads or updates the zone outside the event
    /// loop a participant, idle until it [enters](Self::enter_epochs).
    pub fn join_thread_epochs(&self, p: Participant<'_>) -> Option<Slot> {
        let g = self.lock(p);
        let slot =
            self.arena
                .epochs()
                .join(&g, crate::shm::epoch::THREAD | u64::from(p.me), p.alive)?;
        self.arena.epochs().idle(slot);
        Some(slot)
    }

    /// The thread holding `slot` is about to read or update the zone.
    pub fn enter_epochs(&self, slot: Slot, p: Participant<'_>) {
        let g = self.lock(p);
        self.arena.epochs().enter(&g, slot);
    }

    /// The thread holding `slot` is done with the zone until it enters again.
    pub fn idle_epochs(&self, slot: Slot) {
        self.arena.epochs().idle(slot);
    }

    /// Announces that the holder of `slot` is between updates, with no render in flight.
    pub fn announce(&self, slot: Slot) {
        self.arena.epochs().announce(slot);
    }

    /// Gives `slot` back (its process or thread ends).
    pub fn leave_epochs(&self, slot: Slot) {
        self.arena.epochs().leave(slot);
    }

    /// Counts the bytes of deleted series and their chunks that wait for a participant
    /// to move on before they can be reused (renders show the last count).
    pub fn waiting_bytes(&self, p: Participant<'_>) -> u64 {
        let g = self.lock(p);
        self.arena.count_waiting(&g, p.alive)
    }
}
