//! Processes and threads as participants of the zone's epochs.

use super::*;

impl<'a> Store<'a> {
    /// Makes process `me` a participant of the zone's epochs (see
    /// [`crate::shm::epoch`]): from now on nothing it could still be using is reused
    /// until it [announces](Self::announce) a quiescent point. `None`: no slot was
    /// free, and the zone stops reusing freed memory instead.
    pub fn join_epochs(&self, me: u32, alive: Liveness<'_>) -> Option<Slot> {
        let g = self.lock(me, alive);
        self.arena.epochs().join(&g, u64::from(me), alive)
    }

    /// Makes a thread of process `me` that reads or updates the zone outside the event
    /// loop a participant, idle until it [enters](Self::enter_epochs).
    pub fn join_thread_epochs(&self, me: u32, alive: Liveness<'_>) -> Option<Slot> {
        let g = self.lock(me, alive);
        let slot =
            self.arena
                .epochs()
                .join(&g, crate::shm::epoch::THREAD | u64::from(me), alive)?;
        self.arena.epochs().idle(slot);
        Some(slot)
    }

    /// The thread holding `slot` is about to read or update the zone.
    pub fn enter_epochs(&self, slot: Slot, me: u32, alive: Liveness<'_>) {
        let g = self.lock(me, alive);
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
    pub fn waiting_bytes(&self, me: u32, alive: Liveness<'_>) -> u64 {
        let g = self.lock(me, alive);
        self.arena.count_waiting(&g, alive)
    }
}
