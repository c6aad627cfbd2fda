//! Deleting series (one, by a predicate, a whole family), finishing a delete a dead
//! process left half done, and counting the series again after a takeover.

use super::*;

impl<'a> Store<'a> {
    /// Sets every family's series count, and the zone's, from a walk over the arena.
    pub(super) fn recount(&self, g: &Guard<'_>) {
        let mut per_family: std::collections::HashMap<Offset, u64> = Default::default();
        let mut overflow_keys: std::collections::HashMap<Offset, Vec<u8>> = Default::default();
        let mut total = 0;
        for (kind, rec) in self.arena.live_any() {
            if kind == Kind::Family as u8 {
                per_family.entry(rec).or_insert(0);
            } else if kind == Kind::Series as u8 {
                total += 1;
                let owner = self.arena.owner(rec);
                let family = self.family_at(owner);
                let overflow = overflow_keys
                    .entry(owner)
                    .or_insert_with(|| self.overflow_key(family));
                // A family's overflow series does not count towards its max_series.
                if family.label_count == 0 || !self.arena.key_is(rec, owner, overflow) {
                    *per_family.entry(owner).or_insert(0) += 1;
                }
            }
        }
        let r = self.region();
        for (f, n) in per_family {
            if self.arena.is_live(u64::from(f), Kind::Family) {
                r.store(self.arena.body(f) + F_SERIES, n);
            }
        }
        self.arena.set_series_count(g, total);
    }

    /// Deletes the series of `f` with these label values; false when there is none.
    /// Its memory is reused by later series; its handles are refused from now on.
    pub fn delete_series<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        p: Participant<'_>,
    ) -> bool {
        if values.len() != f.label_count {
            return false;
        }
        let key = encode_key(values);
        let g = self.lock(p);
        match self.arena.lookup(f.id, &key) {
            Some(rec) => {
                self.delete_locked(&g, rec);
                true
            }
            None => false,
        }
    }

    /// Deletes every series of `f` whose label values `doomed` says so (given them as
    /// the encoded key, see [`decode_key`]); returns how many.
    pub fn delete_where(
        &self,
        f: Family,
        p: Participant<'_>,
        doomed: impl Fn(&[u8]) -> bool,
    ) -> u64 {
        self.delete_matching(&[f.id], p, |_, key| doomed(key))
    }

    /// Deletes the series of the families named `names` (those the zone has) that
    /// carry every `(label, value)` of `wanted`; returns how many. A family without one
    /// of the labels has no such series. One walk over the zone, however many families.
    pub fn delete_labelled<N: AsRef<str>, L: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        names: &[N],
        wanted: &[(L, V)],
        p: Participant<'_>,
    ) -> u64 {
        // Per family: the positions of the wanted labels, with the values wanted there.
        let mut positions: std::collections::HashMap<Offset, Vec<(usize, &[u8])>> =
            Default::default();
        for name in names {
            let Some(f) = self.family_by_name(name.as_ref()) else {
                continue;
            };
            let labels = self.spec(f).label_names;
            let at: Option<Vec<(usize, &[u8])>> = wanted
                .iter()
                .map(|(label, value)| {
                    let i = labels.iter().position(|l| l == label.as_ref())?;
                    Some((i, value.as_ref()))
                })
                .collect();
            if let Some(at) = at {
                positions.insert(f.id, at);
            }
        }
        if positions.is_empty() {
            return 0;
        }
        let ids: Vec<Offset> = positions.keys().copied().collect();
        self.delete_matching(&ids, p, |owner, key| {
            let values: Vec<&[u8]> = decode_key(key).collect();
            positions[&owner]
                .iter()
                .all(|(i, v)| values.get(*i) == Some(v))
        })
    }

    /// Deletes every series of the families `ids` for which `doomed(family id, encoded
    /// key)` holds; returns how many. One walk over the zone, under the lock, however
    /// many families.
    fn delete_matching(
        &self,
        ids: &[Offset],
        p: Participant<'_>,
        doomed: impl Fn(Offset, &[u8]) -> bool,
    ) -> u64 {
        let g = self.lock(p);
        let mut key = Vec::new();
        let recs: Vec<Offset> = self
            .arena
            .live(Kind::Series)
            .filter(|&rec| {
                let owner = self.arena.owner(rec);
                if !ids.contains(&owner) {
                    return false;
                }
                key.clear();
                self.arena.read_key(rec, &mut key);
                doomed(owner, &key)
            })
            .collect();
        for &rec in &recs {
            self.delete_locked(&g, rec);
        }
        recs.len() as u64
    }

    /// For failure drills: starts deleting the series of `handle` (its handles dead,
    /// marked as the delete in progress, unlinked) and keeps the zone lock, as a
    /// process killed in the middle of a delete leaves it. The caller must die next.
    #[cfg(any(test, feature = "debug-hooks"))]
    pub fn begin_delete_and_keep_lock(&self, handle: u64, p: Participant<'_>) -> bool {
        let g = self.lock(p);
        let r = self.region();
        let Some(rec) = [
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
        ]
        .into_iter()
        .find_map(|t| value::check(&r, handle, t, 1).ok())
        .map(|values| self.arena.record_of_body(values - S_VALUES)) else {
            return false;
        };
        self.begin_delete(&g, rec);
        std::mem::forget(g);
        true
    }

    /// Deletes every series of `f`.
    pub fn reset(&self, f: Family, p: Participant<'_>) -> u64 {
        self.delete_where(f, p, |_| true)
    }

    /// The first half of a delete: the series' handles dead, the record marked as the
    /// delete in progress (for a takeover), then unlinked.
    pub(super) fn begin_delete(&self, g: &Guard<'_>, rec: Offset) {
        let tag_word = self.region().word(self.arena.body(rec) + S_TAG);
        let tag = tag_word.load(Relaxed);
        if value::is_live_tag(tag) {
            tag_word.store(value::dead_tag(tag), Release);
        }
        self.arena.set_deleting(g, rec);
        self.arena.unlink(g, rec);
    }

    /// Deletes series record `rec`, or finishes its delete after a takeover: every step
    /// can be done again. The order keeps a process that dies on the way harmless: its
    /// handles are dead first; then it is marked as the delete in progress, unlinked,
    /// its chunks and its block freed (a step cut short leaks, never frees twice).
    pub(super) fn delete_locked(&self, g: &Guard<'_>, rec: Offset) {
        let r = self.region();
        let body = self.arena.body(rec);
        let family = self.family_at(self.arena.owner(rec));
        let was_live = self.arena.is_published(rec);
        self.begin_delete(g, rec);
        if family.metric_type == MetricType::Histogram {
            let (pointers, slots) = histogram::chunk_words(&r, body + S_VALUES);
            for pointer in pointers {
                let at = r.load(pointer) as Offset;
                if at != 0 {
                    r.store(pointer, 0);
                    self.arena.release_chunk(g, at, slots as usize);
                }
            }
        }
        // A series of a block's last generation leaves its block retired.
        let reuse = value::next_generation(self.series_tag(rec)).is_some();
        self.arena.release(g, rec, reuse);
        #[cfg(feature = "debug-hooks")]
        crate::shm::faults::reached(crate::shm::faults::KillPoint::Delete);
        if was_live && !self.is_overflow(family, rec) {
            r.word(family.body + F_SERIES).fetch_sub(1, Relaxed);
        }
        self.arena.set_deleting(g, 0);
    }
}
