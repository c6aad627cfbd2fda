//! Finding and making series (and their overflow series), and the histogram chunks
//! made on a value's first miss.

use super::*;
use crate::metrics::exemplar;
use crate::metrics::hdr::HdrLayout;

/// How [`Store::find_or_make`] makes a missing series.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeriesOptions {
    /// The creation time (ms since the epoch) a new series records; `None`: now.
    pub created_ms: Option<u64>,
}

/// The words a new series of a family takes: its values, then its exemplar area.
pub(super) struct Shape {
    values: u64,
    exemplar_slots: u64,
    hist: Option<(HistogramSpec, HdrLayout)>,
}

/// A new series of one family as [`Store::find_or_make`] makes it: the family, the
/// words it takes, its creation time, and who makes it (a freed block is reused only
/// once every participant has moved on).
pub(super) struct NewSeries<'p> {
    family: Family,
    shape: &'p Shape,
    created_ms: u64,
    p: Participant<'p>,
}

/// A series [`Store::find_or_make`] found or made.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub handle: u64,
    /// Why the label set was refused, when `handle` is the family's overflow series'.
    pub overflowed: Option<SeriesError>,
}

impl<'a> Store<'a> {
    /// What [`histogram::observe`] calls on a value's first chunk miss: makes the chunk
    /// under the zone lock (once, however many processes miss at once), unless series
    /// `handle` was deleted since the caller checked it (its chunk would never be freed).
    /// Kept out of line: the hot path's caller only reaches it a few times per series.
    #[cold]
    #[inline(never)]
    pub fn make_chunk(
        &self,
        handle: u64,
        pointer: Offset,
        slots: u32,
        p: Participant<'_>,
    ) -> Result<Offset, UpdateError> {
        let held = self.lock(p);
        if value::check(&self.region(), handle, MetricType::Histogram, 1).is_err() {
            return Err(UpdateError::Stale);
        }
        self.arena
            .chunk(&held, pointer, slots as usize, p.alive)
            .map_err(|_| UpdateError::ZoneFull)
    }

    /// The series of `f` with these label values, made if missing. Refusals are counted
    /// in the zone's error counters before they are returned; a label set the family's
    /// `max_series` or a full zone refuses gets the family's overflow series, and
    /// [`Found::overflowed`] says why.
    pub fn find_or_make<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        p: Participant<'_>,
        options: SeriesOptions,
    ) -> Result<Found, SeriesError> {
        let created_ms = options.created_ms.unwrap_or_else(now_ms);
        self.locate(f, values, p, created_ms)
            .map(|(handle, overflowed)| Found { handle, overflowed })
            .inspect_err(|e| self.count_error(e.reason()))
    }

    /// The handle of an existing series, without making it.
    pub fn find_series<V: AsRef<[u8]>>(&self, f: Family, values: &[V]) -> Option<u64> {
        self.live_handle(f, &encode_key(values))
    }

    /// [`find_series`](Self::find_series) for label values already encoded as a series
    /// key ([`encode_key`]): callers on the request path keep the key in a buffer they
    /// reuse, so finding an existing series allocates nothing.
    pub fn find_series_key(&self, f: Family, key: &[u8]) -> Option<u64> {
        self.live_handle(f, key)
    }

    /// The handle of the live series of `f` with `key`, found without the lock.
    pub(super) fn live_handle(&self, f: Family, key: &[u8]) -> Option<u64> {
        let rec = self.arena.lookup(f.id, key)?;
        let tag_word = self.region().word(self.arena.body(rec) + S_TAG);
        let tag = tag_word.load(Acquire);
        if !value::is_live_tag(tag) || !self.arena.is_published(rec) {
            return None;
        }
        // The block may have been freed and reused since the lookup: it is this series
        // only if it still has this key and the tag did not change while it was read.
        if !self.arena.key_is(rec, f.id, key) || tag_word.load(Acquire) != tag {
            return None;
        }
        Some(value::handle(self.series_values(rec), tag))
    }

    /// The handle of series record `rec` (under the lock, where it cannot change).
    pub(super) fn handle_of(&self, rec: Offset) -> u64 {
        let tag = self.region().load(self.arena.body(rec) + S_TAG);
        value::handle(self.series_values(rec), tag)
    }

    /// [`find_or_make`](Self::find_or_make)'s work, refusals not counted: the series
    /// found without the lock; else, under it, found or made; else (over `max_series`,
    /// or a full zone) the family's overflow series, found or made in the reserve.
    pub(super) fn locate<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        p: Participant<'_>,
        created_ms: u64,
    ) -> Result<(u64, Option<SeriesError>), SeriesError> {
        if values.len() != f.label_count {
            return Err(SeriesError::LabelCount {
                family: self.family_name(f),
                expected: f.label_count,
                got: values.len(),
            });
        }
        let key = encode_key(values);
        if let Some(handle) = self.live_handle(f, &key) {
            return Ok((handle, None));
        }
        self.check_label_values(f, values)?;
        let shape = self.value_words(f);
        let new = NewSeries {
            family: f,
            shape: &shape,
            created_ms,
            p,
        };
        let g = self.lock(p);
        if let Some(rec) = self.arena.lookup(f.id, &key) {
            return Ok((self.handle_of(rec), None));
        }
        let make = |key: &[u8], overflow: bool| self.make_series(&g, &new, key, overflow);
        let zone_full = || SeriesError::ZoneFull {
            family: self.family_name(f),
        };
        // The overflow series' own label set: made as the overflow series, in the
        // reserve and outside max_series (a delete does not count it either).
        if f.label_count > 0 && key == self.overflow_key(f) {
            return make(&key, true)
                .map(|handle| (handle, None))
                .map_err(|_| zone_full());
        }
        let limit = self.region().load(f.body + F_LIMIT);
        let refused = if limit > 0 && self.region().load(f.body + F_SERIES) >= limit {
            SeriesError::SeriesLimit {
                family: self.family_name(f),
                limit,
            }
        } else {
            match make(&key, false) {
                Ok(handle) => return Ok((handle, None)),
                Err(_) => zone_full(),
            }
        };
        self.overflow_instead(f, refused, make)
    }

    /// A label set `refused` goes, in a family with labels, to the family's overflow
    /// series (every label value the family's overflow value), found or made (`make`)
    /// in the zone's reserve, outside the limit: sums over the family stay exact. The
    /// refusal is still counted.
    fn overflow_instead(
        &self,
        f: Family,
        refused: SeriesError,
        make: impl Fn(&[u8], bool) -> Result<u64, crate::shm::Full>,
    ) -> Result<(u64, Option<SeriesError>), SeriesError> {
        if f.label_count == 0 {
            return Err(refused);
        }
        let overflow = self.overflow_key(f);
        let handle = match self.arena.lookup(f.id, &overflow) {
            Some(rec) => self.handle_of(rec),
            None => match make(&overflow, true) {
                Ok(handle) => handle,
                Err(_) => return Err(refused),
            },
        };
        self.count_error(refused.reason());
        Ok((handle, Some(refused)))
    }

    /// The name of family `f`, for messages.
    fn family_name(&self, f: Family) -> String {
        let mut n = Vec::new();
        self.arena.read_key(f.id, &mut n);
        String::from_utf8_lossy(&n).into_owned()
    }

    /// Refuses the first label value a series cannot have: too long, or not UTF-8.
    fn check_label_values<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
    ) -> Result<(), SeriesError> {
        for (i, v) in values.iter().enumerate() {
            let why = if v.as_ref().len() > MAX_LABEL_VALUE {
                "is longer than 4096 bytes"
            } else if std::str::from_utf8(v.as_ref()).is_err() {
                "is not valid UTF-8"
            } else {
                continue;
            };
            return Err(SeriesError::InvalidLabelValue {
                family: self.family_name(f),
                label: self.spec(f).label_names[i].clone(),
                why,
            });
        }
        Ok(())
    }

    /// The value words a new series of `f` takes and, for a histogram, the spec and
    /// layout its chunks are made from.
    fn value_words(&self, f: Family) -> Shape {
        let keeps = self.region().load(f.body + F_META) & register::META_EXEMPLARS != 0;
        match f.metric_type {
            MetricType::Counter => Shape {
                values: COUNTER_WORDS,
                exemplar_slots: u64::from(keeps),
                hist: None,
            },
            MetricType::Gauge => Shape {
                values: GAUGE_WORDS,
                exemplar_slots: 0,
                hist: None,
            },
            MetricType::Histogram => {
                let spec = self.spec(f).histogram.expect("histogram family has a spec");
                let layout = spec.layout().expect("validated at registration");
                Shape {
                    values: histogram::value_words(layout),
                    // One per bucket and `+Inf` (at most MAX_BUCKETS + 1 = 129).
                    exemplar_slots: if keeps {
                        spec.buckets.len() as u64 + 1
                    } else {
                        0
                    },
                    hist: Some((spec, layout)),
                }
            }
        }
    }

    /// The handle of `f`'s overflow series, made if missing (nothing is counted: no
    /// label set was refused), with the overflow label value; None for a family
    /// without labels, or when not even the zone's reserve has room.
    pub fn overflow_series(&self, f: Family, p: Participant<'_>) -> Option<(u64, Vec<u8>)> {
        if f.label_count == 0 {
            return None;
        }
        let key = self.overflow_key(f);
        let value = decode_key(&key).next().unwrap_or_default().to_vec();
        let values = vec![value.clone(); f.label_count];
        self.locate(f, &values, p, now_ms())
            .ok()
            .map(|(handle, _)| (handle, value))
    }

    /// Whether series record `rec` is the overflow series of `f` (families with labels
    /// only have one).
    pub(super) fn is_overflow(&self, f: Family, rec: Offset) -> bool {
        f.label_count > 0 && self.arena.key_is(rec, f.id, &self.overflow_key(f))
    }

    /// The key of `f`'s overflow series.
    pub(super) fn overflow_key(&self, f: Family) -> Vec<u8> {
        let mut value = Vec::new();
        self.arena.read_blob(
            self.region().load(f.body + F_OVERFLOW) as Offset,
            &mut value,
        );
        if value.is_empty() {
            value.extend_from_slice(crate::metrics::family::DEFAULT_OVERFLOW.as_bytes());
        }
        encode_key(&vec![value; f.label_count])
    }

    /// Makes a series of `new.family` with `key` (under the lock, once looked for); `overflow`:
    /// the family's overflow series, made in the zone's reserve and not counted towards
    /// `max_series`.
    pub(super) fn make_series(
        &self,
        g: &Guard<'_>,
        new: &NewSeries<'_>,
        key: &[u8],
        overflow: bool,
    ) -> Result<u64, crate::shm::Full> {
        let NewSeries {
            family: f,
            shape,
            created_ms,
            p,
        } = *new;
        let r = self.region();
        let (rec, body, generation, _reused) = loop {
            let (rec, body) = self.arena.make_keyed(
                g,
                Kind::Series,
                f.id,
                key,
                S_VALUES as usize
                    + (shape.values + exemplar::area_words(shape.exemplar_slots)) as usize,
                p.alive,
                overflow,
            )?;
            // A reused block's tag word holds the generation its deleted series left;
            // a block that has used up its generations is retired (handles never alias).
            let previous = r.load(body + S_TAG);
            match value::next_generation(previous) {
                Some(generation) => break (rec, body, generation, previous != 0),
                None => self.arena.release(g, rec, false),
            }
        };
        let tag = value::tag(f.metric_type, generation);
        r.store(
            body + S_CREATED,
            exemplar::created_word(created_ms, shape.exemplar_slots),
        );
        r.store(body + S_TAG, tag);
        if let Some((spec, layout)) = &shape.hist {
            histogram::init(&r, body + S_VALUES, spec, *layout);
        }
        if shape.exemplar_slots > 0 {
            exemplar::init(&r, body + S_VALUES + shape.values as Offset, f.body);
        }
        let since = self.zone_tenths(created_ms);
        r.store(
            body + S_SEEN,
            u64::from(self.fingerprint(rec, f.metric_type)) << 32 | since,
        );
        #[cfg(feature = "debug-hooks")]
        if _reused {
            crate::shm::faults::reached(crate::shm::faults::KillPoint::Reuse);
        }
        if !overflow {
            r.word(f.body + F_SERIES).fetch_add(1, Relaxed);
        }
        self.arena.publish(g, rec);
        Ok(value::handle(body + S_VALUES, tag))
    }
}

/// Counts `v` in histogram series `handle` of the zone `r` holds: how every caller
/// observes (the FFI, the recorder, the tests). A value's first miss in a chunk of its
/// range makes the chunk under the zone lock (see [`Store::make_chunk`]); only then is
/// the store attached and `participant` asked for, so the hot path pays for neither (an
/// attach checks the zone's header; the glue's participant reads the pid).
#[inline(always)]
pub fn observe<'p>(
    r: &Region<'_>,
    handle: u64,
    v: f64,
    participant: impl FnOnce() -> Participant<'p>,
) -> Result<(), UpdateError> {
    histogram::observe(r, handle, v, |pointer, slots| {
        Store::attach(*r)
            .map_err(|_| UpdateError::BadHandle)?
            .make_chunk(handle, pointer, slots, participant())
    })
}
