//! The metric store kept in a zone: families and their series, over the shared-memory
//! arena. Registration, series creation and deletion take the zone lock; recording
//! never does. A series handle carries the series' generation: once the series is
//! deleted the handle is refused as stale (see [`value::check`]), even after its block
//! holds another series.

//!
//! One job per file: [`error`] (reasons and refusals), [`key`] (series keys and blob
//! encodings), [`register`] (families: registration, shape checks, options),
//! [`series`] (finding and making series), [`delete`] (deletion and recount),
//! [`sweep`] (expiry), [`read`] (what a render reads), [`participant`] (epochs).
//! The words of a family's and a series' body are laid out in [`super::layout`].

mod delete;
pub mod error;
pub mod key;
mod participant;
mod read;
mod register;
pub mod series;
mod sweep;
#[cfg(test)]
pub(crate) mod tests;

pub use error::{Reason, RegisterError, SeriesError};
use key::{bytes_to_f64s, f64s_to_bytes};
pub use key::{decode_key, encode_key};
pub use participant::Participant;
pub use series::{observe, Found, SeriesOptions};

use super::family::{
    check_buckets, exposition_names, possible_owners, FamilySpec, HistogramSpec, MetricType,
    QuantileMode, MAX_LABEL_VALUE,
};
use super::value::UpdateError;
use super::{histogram, value};
use crate::shm::{Arena, AttachError, Guard, Kind, Liveness, Offset, Region, Slot};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::layout::*;

/// Milliseconds since the Unix epoch, for series creation times.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A family as seen from a process: where it lives and what its series look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Family {
    pub id: Offset,
    body: Offset,
    pub metric_type: MetricType,
    pub label_count: usize,
}

#[derive(Clone, Copy)]
pub struct Store<'a> {
    arena: Arena<'a>,
}

impl<'a> Store<'a> {
    pub fn format(r: Region<'a>, now_unix: u64) -> Result<Store<'a>, AttachError> {
        Ok(Store {
            arena: Arena::format(r, now_unix)?,
        })
    }

    pub fn attach(r: Region<'a>) -> Result<Store<'a>, AttachError> {
        Ok(Store {
            arena: Arena::attach(r)?,
        })
    }

    pub fn arena(&self) -> &Arena<'a> {
        &self.arena
    }

    pub fn region(&self) -> Region<'a> {
        self.arena.region()
    }

    pub fn count_error(&self, reason: Reason) {
        self.arena.count_error(reason as usize);
    }

    pub fn errors(&self, reason: Reason) -> u64 {
        self.arena.errors(reason as usize)
    }

    /// Takes the zone lock. After a takeover, first finishes the delete the dead owner
    /// may have left half done (the arena has already finished or dropped a record it
    /// was making), and counts the series again.
    fn lock(&self, p: Participant<'_>) -> Guard<'a> {
        let g = self.arena.lock(p.me, p.alive);
        if g.taken_over_from.is_some() {
            let rec = self.arena.deleting();
            if rec != 0 {
                self.delete_locked(&g, rec);
            }
            self.recount(&g);
        }
        g
    }

    fn family_at(&self, rec: Offset) -> Family {
        let body = self.arena.body(rec);
        let meta = self.region().load(body + F_META);
        Family {
            id: rec,
            body,
            metric_type: MetricType::from_u8(meta as u8).unwrap_or(MetricType::Gauge),
            label_count: (meta >> 8) as u8 as usize,
        }
    }

    pub fn family_by_name(&self, name: &str) -> Option<Family> {
        self.arena
            .lookup(0, name.as_bytes())
            .map(|rec| self.family_at(rec))
    }

    /// The family with id `id`, if `id` names one (ids come back from Lua).
    pub fn family(&self, id: u64) -> Option<Family> {
        // A stale or forged id may point anywhere in the arena; `is_live` accepts only
        // the first word of a live family record.
        self.arena
            .is_live(id, Kind::Family)
            .then(|| self.family_at(id as Offset))
    }
}
