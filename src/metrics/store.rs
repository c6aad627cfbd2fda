//! The metric store kept in a zone: families and their series, over the shared-memory
//! arena. Registration, series creation and deletion take the zone lock; recording
//! never does. A series handle carries the series' generation: once the series is
//! deleted the handle is refused as stale (see [`value::check`]), even after its block
//! holds another series.

use super::family::{
    check_buckets, exposition_names, possible_owners, FamilySpec, HistogramSpec, MetricType,
    QuantileMode, SpecError, MAX_LABEL_VALUE,
};
use super::{counter, gauge, histogram, value};
use crate::shm::{Arena, AttachError, Guard, Kind, Liveness, Offset, Region, Slot};
use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Why something was refused or failed; each has a slot in the zone's error counters,
/// exposed as `nginx_metric_errors_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    ZoneFull = 0,
    SeriesLimit = 1,
    LabelCount = 2,
    InvalidLabelValue = 3,
    InvalidValue = 4,
    BadHandle = 5,
    Lua = 6,
    /// An update through the handle of a deleted series: dropped.
    StaleHandle = 7,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::ZoneFull,
        Reason::SeriesLimit,
        Reason::LabelCount,
        Reason::InvalidLabelValue,
        Reason::InvalidValue,
        Reason::BadHandle,
        Reason::Lua,
        Reason::StaleHandle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ZoneFull => "zone_full",
            Reason::SeriesLimit => "series_limit",
            Reason::LabelCount => "label_count",
            Reason::InvalidLabelValue => "invalid_label_value",
            Reason::InvalidValue => "invalid_value",
            Reason::BadHandle => "bad_handle",
            Reason::Lua => "lua",
            Reason::StaleHandle => "stale_handle",
        }
    }

    pub fn from_u32(v: u32) -> Option<Reason> {
        Reason::ALL.get(v as usize).copied()
    }
}

// Family body words.
const F_META: Offset = 0;
const F_HELP: Offset = 1;
const F_LABELS: Offset = 2;
const F_SERIES: Offset = 3;
const F_LIMIT: Offset = 4;
const F_LAYOUT: Offset = 5;
const F_LOWEST: Offset = 6;
const F_HIGHEST: Offset = 7;
const F_PRECISION: Offset = 8;
const F_BUCKETS: Offset = 9;
const F_UNIT: Offset = 10;
const F_GROUP: Offset = 11;
const F_EXPIRE: Offset = 12;
const F_OVERFLOW: Offset = 13;
const FAMILY_WORDS: usize = 14;

// Family meta word: type in bits 0..8, label count 8..16, quantile mode 16..24.
fn meta_word(spec: &FamilySpec) -> u64 {
    spec.metric_type as u64 | (spec.label_names.len() as u64) << 8 | (spec.quantiles as u64) << 16
}

// Series body words: the tag word that handles are checked against (first: a reused
// block keeps it, with the generation the deleted series left), what the sweep saw
// (see `sweep`), the creation time, then the values (a handle is the offset of the
// first value word).
const S_TAG: Offset = 0;
const S_SEEN: Offset = 1;
const S_CREATED: Offset = 2;
const S_VALUES: Offset = 3;
const _: () = assert!(S_VALUES as u64 - S_TAG as u64 == value::TAG_DISTANCE);

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

#[derive(Debug, Clone, PartialEq)]
pub enum RegisterError {
    Spec(SpecError),
    /// The name exists in the zone (perhaps from before a reload) with another shape.
    Conflict {
        family: String,
        what: String,
    },
    ZoneFull {
        family: String,
    },
    /// The family's sample names would clash with another family's in an exposition.
    Clash {
        family: String,
        other: String,
        names: Vec<String>,
    },
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Spec(e) => e.fmt(f),
            RegisterError::Clash {
                family,
                other,
                names,
            } => write!(
                f,
                "metric \"{family}\" clashes with metric \"{other}\": both would expose {} \
                 (text format or OpenMetrics); use another name",
                names.join(", ")
            ),
            RegisterError::Conflict { family, what } => write!(
                f,
                "metric \"{family}\" is already registered in this zone with {what}; \
                 use another name or a new zone"
            ),
            RegisterError::ZoneFull { family } => write!(f, "metric \"{family}\": zone is full"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SeriesError {
    LabelCount {
        family: String,
        expected: usize,
        got: usize,
    },
    InvalidLabelValue {
        family: String,
        label: String,
        why: &'static str,
    },
    SeriesLimit {
        family: String,
        limit: u64,
    },
    ZoneFull {
        family: String,
    },
}

impl SeriesError {
    pub fn reason(&self) -> Reason {
        match self {
            SeriesError::LabelCount { .. } => Reason::LabelCount,
            SeriesError::InvalidLabelValue { .. } => Reason::InvalidLabelValue,
            SeriesError::SeriesLimit { .. } => Reason::SeriesLimit,
            SeriesError::ZoneFull { .. } => Reason::ZoneFull,
        }
    }
}

impl fmt::Display for SeriesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesError::LabelCount {
                family,
                expected,
                got,
            } => {
                write!(
                    f,
                    "metric \"{family}\": expected {expected} label values, got {got}"
                )
            }
            SeriesError::InvalidLabelValue { family, label, why } => {
                write!(f, "metric \"{family}\": value of label \"{label}\" {why}")
            }
            SeriesError::SeriesLimit { family, limit } => {
                write!(
                    f,
                    "metric \"{family}\": series limit {limit} reached, new series refused"
                )
            }
            SeriesError::ZoneFull { family } => {
                write!(f, "metric \"{family}\": zone is full, new series refused")
            }
        }
    }
}

/// Encodes label values as a series key: each value as a little-endian `u32` length
/// and its bytes.
pub fn encode_key<V: AsRef<[u8]>>(values: &[V]) -> Vec<u8> {
    let mut key = Vec::with_capacity(values.iter().map(|v| v.as_ref().len() + 4).sum());
    for v in values {
        key.extend_from_slice(&(v.as_ref().len() as u32).to_le_bytes());
        key.extend_from_slice(v.as_ref());
    }
    key
}

/// Splits a series key back into label values.
pub fn decode_key(mut key: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if key.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(key[..4].try_into().ok()?) as usize;
        let v = key.get(4..4 + len)?;
        key = &key[4 + len..];
        Some(v)
    })
}

fn f64s_to_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|b| b.to_le_bytes()).collect()
}

fn bytes_to_f64s(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// A family's declaration read back from the zone.
pub struct FamilyView {
    pub family: Family,
    pub spec: FamilySpec,
    pub layout_cuts: Vec<usize>,
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

    /// Counts `v` in histogram series `handle`, making the chunk it falls in the first
    /// time (see [`histogram::observe`]).
    pub fn observe(
        &self,
        handle: u64,
        v: f64,
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<(), histogram::ObserveError> {
        histogram::observe(&self.region(), handle, v, |pointer, slots| {
            self.make_chunk(handle, pointer, slots, me, alive)
        })
    }

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
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<Offset, histogram::ObserveError> {
        let held = self.lock(me, alive);
        if value::check(&self.region(), handle, MetricType::Histogram, 1).is_err() {
            return Err(histogram::ObserveError::Stale);
        }
        self.arena
            .chunk(&held, pointer, slots as usize, alive)
            .map_err(|_| histogram::ObserveError::ZoneFull)
    }

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

    /// Takes the zone lock. After a takeover, first finishes the delete the dead owner
    /// may have left half done (the arena has already finished or dropped a record it
    /// was making), and counts the series again.
    fn lock(&self, me: u32, alive: Liveness<'_>) -> Guard<'a> {
        let g = self.arena.lock(me, alive);
        if g.taken_over_from.is_some() {
            let rec = self.arena.deleting();
            if rec != 0 {
                self.delete_locked(&g, rec);
            }
            self.recount(&g);
        }
        g
    }

    /// Sets every family's series count, and the zone's, from a walk over the arena.
    fn recount(&self, g: &Guard<'_>) {
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

    /// Registers a family, or returns the existing one of the same shape: every worker
    /// registers at start, and a zone kept over a reload already has them. Help, buckets
    /// and the series limit are updated in place; type, labels and HDR range must match.
    pub fn register(
        &self,
        spec: &FamilySpec,
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<Family, RegisterError> {
        spec.validate().map_err(RegisterError::Spec)?;
        if let Some(existing) = self.family_by_name(&spec.name) {
            self.check_same_shape(existing, spec)?;
            self.update(existing, spec, me, alive)?;
            return Ok(existing);
        }
        let full = || RegisterError::ZoneFull {
            family: spec.name.clone(),
        };
        let g = self.lock(me, alive);
        // Another worker may have won the race while this one waited.
        if let Some(existing) = self.family_by_name(&spec.name) {
            drop(g);
            self.check_same_shape(existing, spec)?;
            return Ok(existing);
        }
        self.check_no_clash(spec)?;
        let labels = self
            .arena
            .make_blob(&g, &encode_key(&spec.label_names))
            .map_err(|_| full())?;
        let help = self
            .arena
            .make_blob(&g, spec.help.as_bytes())
            .map_err(|_| full())?;
        let blob_or_zero = |s: &str| -> Result<u64, RegisterError> {
            if s.is_empty() {
                return Ok(0);
            }
            self.arena
                .make_blob(&g, s.as_bytes())
                .map(u64::from)
                .map_err(|_| full())
        };
        let unit = blob_or_zero(&spec.unit)?;
        let group = blob_or_zero(&spec.group)?;
        let overflow = blob_or_zero(&spec.overflow_value)?;
        let (rec, body) = self
            .arena
            .make_keyed(
                &g,
                Kind::Family,
                0,
                spec.name.as_bytes(),
                FAMILY_WORDS,
                alive,
                false,
            )
            .map_err(|_| full())?;
        let r = self.region();
        r.store(body + F_META, meta_word(spec));
        r.store(body + F_HELP, u64::from(help));
        r.store(body + F_LABELS, u64::from(labels));
        r.store(body + F_LIMIT, spec.max_series);
        r.store(body + F_EXPIRE, spec.expire_s);
        r.store(body + F_UNIT, unit);
        r.store(body + F_GROUP, group);
        r.store(body + F_OVERFLOW, overflow);
        if let Some(h) = &spec.histogram {
            let buckets = self
                .arena
                .make_blob(&g, &f64s_to_bytes(&h.buckets))
                .map_err(|_| full())?;
            let layout = h.layout().expect("validated");
            r.store(body + F_LAYOUT, layout.pack());
            r.store(body + F_LOWEST, h.lowest.to_bits());
            r.store(body + F_HIGHEST, h.highest.to_bits());
            r.store(body + F_PRECISION, u64::from(h.precision));
            r.store(body + F_BUCKETS, u64::from(buckets));
        }
        self.arena.publish(&g, rec);
        Ok(self.family_at(rec))
    }

    /// Refuses a new family whose exposition names intersect an existing family's (or
    /// one of the module's own). Called under the zone lock, so two workers cannot
    /// register clashing families at once.
    fn check_no_clash(&self, spec: &FamilySpec) -> Result<(), RegisterError> {
        let mine = exposition_names(&spec.name, spec.metric_type);
        let clash = |other: &str, theirs: Vec<String>| -> Result<(), RegisterError> {
            let names: Vec<String> = mine
                .iter()
                .filter(|n| theirs.contains(n))
                .cloned()
                .collect();
            if names.is_empty() {
                return Ok(());
            }
            Err(RegisterError::Clash {
                family: spec.name.clone(),
                other: other.to_string(),
                names,
            })
        };
        let mut seen = Vec::new();
        for n in &mine {
            for owner in possible_owners(n) {
                if owner == spec.name || seen.contains(&owner) {
                    continue;
                }
                if let Some(f) = self.family_by_name(&owner) {
                    clash(&owner, exposition_names(&owner, f.metric_type))?;
                }
                // The module's own families, whether or not this zone holds them yet.
                if let Some(b) = super::builtin::find(&owner) {
                    clash(&owner, exposition_names(&owner, b.metric_type))?;
                }
                seen.push(owner);
            }
        }
        Ok(())
    }

    fn check_same_shape(&self, f: Family, spec: &FamilySpec) -> Result<(), RegisterError> {
        let have = self.spec(f);
        let conflict = |what: String| {
            Err(RegisterError::Conflict {
                family: spec.name.clone(),
                what,
            })
        };
        if have.metric_type != spec.metric_type {
            return conflict(format!("type {}", have.metric_type.as_str()));
        }
        if have.label_names != spec.label_names {
            return conflict(format!("labels [{}]", have.label_names.join(", ")));
        }
        if let (Some(a), Some(b)) = (&have.histogram, &spec.histogram) {
            if (a.lowest, a.highest, a.precision) != (b.lowest, b.highest, b.precision) {
                return conflict(format!(
                    "histogram range {}..{} at precision {}",
                    a.lowest, a.highest, a.precision
                ));
            }
        }
        Ok(())
    }

    fn update(
        &self,
        f: Family,
        spec: &FamilySpec,
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<(), RegisterError> {
        let have = self.spec(f);
        let r = self.region();
        if have.max_series != spec.max_series {
            r.word(f.body + F_LIMIT).store(spec.max_series, Relaxed);
        }
        if have.expire_s != spec.expire_s {
            r.word(f.body + F_EXPIRE).store(spec.expire_s, Relaxed);
        }
        if have.quantiles != spec.quantiles {
            r.word(f.body + F_META).store(meta_word(spec), Release);
        }
        for (at, have, want) in [
            (F_UNIT, &have.unit, &spec.unit),
            (F_GROUP, &have.group, &spec.group),
            (F_OVERFLOW, &have.overflow_value, &spec.overflow_value),
        ] {
            if have != want {
                let blob = if want.is_empty() {
                    0
                } else {
                    let g = self.lock(me, alive);
                    u64::from(self.arena.make_blob(&g, want.as_bytes()).map_err(|_| {
                        RegisterError::ZoneFull {
                            family: spec.name.clone(),
                        }
                    })?)
                };
                r.word(f.body + at).store(blob, Release);
            }
        }
        if have.help != spec.help {
            let g = self.lock(me, alive);
            let help = self
                .arena
                .make_blob(&g, spec.help.as_bytes())
                .map_err(|_| RegisterError::ZoneFull {
                    family: spec.name.clone(),
                })?;
            r.word(f.body + F_HELP).store(u64::from(help), Release);
        }
        if let (Some(a), Some(b)) = (&have.histogram, &spec.histogram) {
            if a.buckets != b.buckets {
                self.set_buckets(f, &b.buckets, me, alive)?;
            }
        }
        Ok(())
    }

    /// Replaces a histogram family's bucket bounds. Counts are kept in HDR slots, so
    /// nothing recorded is lost: the new buckets apply to past observations too.
    pub fn set_buckets(
        &self,
        f: Family,
        buckets: &[f64],
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<(), RegisterError> {
        let spec = self.spec(f);
        let Some(h) = &spec.histogram else {
            return Err(RegisterError::Conflict {
                family: spec.name,
                what: format!("type {}", f.metric_type.as_str()),
            });
        };
        check_buckets(&spec.name, h, buckets).map_err(RegisterError::Spec)?;
        let g = self.lock(me, alive);
        let blob = self
            .arena
            .make_blob(&g, &f64s_to_bytes(buckets))
            .map_err(|_| RegisterError::ZoneFull {
                family: spec.name.clone(),
            })?;
        self.region()
            .word(f.body + F_BUCKETS)
            .store(u64::from(blob), Release);
        Ok(())
    }

    /// Reads a family's declaration back.
    pub fn spec(&self, f: Family) -> FamilySpec {
        let r = self.region();
        let mut name = Vec::new();
        self.arena.read_key(f.id, &mut name);
        let mut help = Vec::new();
        self.arena
            .read_blob(r.load(f.body + F_HELP) as Offset, &mut help);
        let mut labels = Vec::new();
        self.arena
            .read_blob(r.load(f.body + F_LABELS) as Offset, &mut labels);
        let histogram = (f.metric_type == MetricType::Histogram).then(|| {
            let mut b = Vec::new();
            self.arena
                .read_blob(r.load(f.body + F_BUCKETS) as Offset, &mut b);
            HistogramSpec {
                lowest: f64::from_bits(r.load(f.body + F_LOWEST)),
                highest: f64::from_bits(r.load(f.body + F_HIGHEST)),
                precision: r.load(f.body + F_PRECISION) as u8,
                buckets: bytes_to_f64s(&b),
            }
        });
        let text = |at: Offset| {
            let mut b = Vec::new();
            self.arena.read_blob(r.load(f.body + at) as Offset, &mut b);
            String::from_utf8_lossy(&b).into_owned()
        };
        FamilySpec {
            name: String::from_utf8_lossy(&name).into_owned(),
            help: String::from_utf8_lossy(&help).into_owned(),
            metric_type: f.metric_type,
            label_names: decode_key(&labels)
                .map(|l| String::from_utf8_lossy(l).into_owned())
                .collect(),
            histogram,
            max_series: r.load(f.body + F_LIMIT),
            expire_s: r.load(f.body + F_EXPIRE),
            overflow_value: text(F_OVERFLOW),
            unit: text(F_UNIT),
            group: text(F_GROUP),
            quantiles: QuantileMode::from_u8((r.load(f.body + F_META) >> 16) as u8),
        }
    }

    pub fn series_count(&self, f: Family) -> u64 {
        self.region().load(f.body + F_SERIES)
    }

    /// The handle of the series with these label values, made if missing. Refusals are
    /// counted in the zone's error counters before they are returned; a label set the
    /// family's `max_series` or a full zone refuses gets the family's overflow series.
    pub fn series<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<u64, SeriesError> {
        self.series_at(f, values, me, alive, now_ms())
    }

    /// [`series`](Self::series), saying why when the handle is the overflow series'.
    pub fn series_noting_overflow<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        me: u32,
        alive: Liveness<'_>,
    ) -> Result<(u64, Option<SeriesError>), SeriesError> {
        self.find_or_make(f, values, me, alive, now_ms())
            .inspect_err(|e| self.count_error(e.reason()))
    }

    /// [`series`](Self::series), with the creation time (ms since the epoch) a new
    /// series records.
    pub fn series_at<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        me: u32,
        alive: Liveness<'_>,
        created_ms: u64,
    ) -> Result<u64, SeriesError> {
        self.find_or_make(f, values, me, alive, created_ms)
            .map(|(handle, _)| handle)
            .inspect_err(|e| self.count_error(e.reason()))
    }

    /// The handle of an existing series, without making it.
    pub fn find_series<V: AsRef<[u8]>>(&self, f: Family, values: &[V]) -> Option<u64> {
        self.live_handle(f, &encode_key(values))
    }

    /// The handle of the live series of `f` with `key`, found without the lock.
    fn live_handle(&self, f: Family, key: &[u8]) -> Option<u64> {
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
    fn handle_of(&self, rec: Offset) -> u64 {
        let tag = self.region().load(self.arena.body(rec) + S_TAG);
        value::handle(self.series_values(rec), tag)
    }

    fn find_or_make<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        me: u32,
        alive: Liveness<'_>,
        created_ms: u64,
    ) -> Result<(u64, Option<SeriesError>), SeriesError> {
        let name = || {
            let mut n = Vec::new();
            self.arena.read_key(f.id, &mut n);
            String::from_utf8_lossy(&n).into_owned()
        };
        if values.len() != f.label_count {
            return Err(SeriesError::LabelCount {
                family: name(),
                expected: f.label_count,
                got: values.len(),
            });
        }
        let key = encode_key(values);
        if let Some(handle) = self.live_handle(f, &key) {
            return Ok((handle, None));
        }
        for (i, v) in values.iter().enumerate() {
            let why = if v.as_ref().len() > MAX_LABEL_VALUE {
                Some("is longer than 4096 bytes")
            } else if std::str::from_utf8(v.as_ref()).is_err() {
                Some("is not valid UTF-8")
            } else {
                None
            };
            if let Some(why) = why {
                let spec = self.spec(f);
                return Err(SeriesError::InvalidLabelValue {
                    family: name(),
                    label: spec.label_names[i].clone(),
                    why,
                });
            }
        }
        let r = self.region();
        let (words, hist) = match f.metric_type {
            MetricType::Counter => (counter::VALUE_WORDS, None),
            MetricType::Gauge => (gauge::VALUE_WORDS, None),
            MetricType::Histogram => {
                let spec = self.spec(f).histogram.expect("histogram family has a spec");
                let layout = spec.layout().expect("validated at registration");
                (histogram::value_words(layout), Some((spec, layout)))
            }
        };
        let g = self.lock(me, alive);
        if let Some(rec) = self.arena.lookup(f.id, &key) {
            return Ok((self.handle_of(rec), None));
        }
        // The overflow series' own label set: made as the overflow series, in the
        // reserve and outside max_series (a delete does not count it either).
        if f.label_count > 0 && key == self.overflow_key(f) {
            return self
                .make_series(&g, alive, f, &key, words, hist.as_ref(), created_ms, true)
                .map(|handle| (handle, None))
                .map_err(|_| SeriesError::ZoneFull { family: name() });
        }
        let limit = r.load(f.body + F_LIMIT);
        let refused = if limit > 0 && r.load(f.body + F_SERIES) >= limit {
            SeriesError::SeriesLimit {
                family: name(),
                limit,
            }
        } else {
            match self.make_series(&g, alive, f, &key, words, hist.as_ref(), created_ms, false) {
                Ok(handle) => return Ok((handle, None)),
                Err(_) => SeriesError::ZoneFull { family: name() },
            }
        };
        // A family with labels records what it refused in its overflow series (every
        // label value the family's overflow value): sums over the family stay exact.
        // The refusal is still counted. Made in the zone's reserve, outside the limit.
        if f.label_count == 0 {
            return Err(refused);
        }
        let overflow = self.overflow_key(f);
        let handle = match self.arena.lookup(f.id, &overflow) {
            Some(rec) => self.handle_of(rec),
            None => {
                match self.make_series(
                    &g,
                    alive,
                    f,
                    &overflow,
                    words,
                    hist.as_ref(),
                    created_ms,
                    true,
                ) {
                    Ok(handle) => handle,
                    Err(_) => return Err(refused),
                }
            }
        };
        self.count_error(refused.reason());
        Ok((handle, Some(refused)))
    }

    /// The handle of `f`'s overflow series, made if missing (nothing is counted: no
    /// label set was refused), with the overflow label value; None for a family
    /// without labels, or when not even the zone's reserve has room.
    pub fn overflow_series(
        &self,
        f: Family,
        me: u32,
        alive: Liveness<'_>,
    ) -> Option<(u64, Vec<u8>)> {
        if f.label_count == 0 {
            return None;
        }
        let key = self.overflow_key(f);
        let value = decode_key(&key).next().unwrap_or_default().to_vec();
        let values = vec![value.clone(); f.label_count];
        self.find_or_make(f, &values, me, alive, now_ms())
            .ok()
            .map(|(handle, _)| (handle, value))
    }

    /// Whether series record `rec` is the overflow series of `f` (families with labels
    /// only have one).
    fn is_overflow(&self, f: Family, rec: Offset) -> bool {
        f.label_count > 0 && self.arena.key_is(rec, f.id, &self.overflow_key(f))
    }

    /// The key of `f`'s overflow series.
    fn overflow_key(&self, f: Family) -> Vec<u8> {
        let mut value = Vec::new();
        self.arena.read_blob(
            self.region().load(f.body + F_OVERFLOW) as Offset,
            &mut value,
        );
        if value.is_empty() {
            value.extend_from_slice(super::family::DEFAULT_OVERFLOW.as_bytes());
        }
        encode_key(&vec![value; f.label_count])
    }

    /// Makes a series of `f` with `key` (under the lock, once looked for); `overflow`:
    /// the family's overflow series, made in the zone's reserve and not counted towards
    /// `max_series`.
    #[allow(clippy::too_many_arguments)]
    fn make_series(
        &self,
        g: &Guard<'_>,
        alive: Liveness<'_>,
        f: Family,
        key: &[u8],
        words: u64,
        hist: Option<&(HistogramSpec, super::hdr::HdrLayout)>,
        created_ms: u64,
        overflow: bool,
    ) -> Result<u64, crate::shm::Full> {
        let r = self.region();
        let (rec, body, generation, _reused) = loop {
            let (rec, body) = self.arena.make_keyed(
                g,
                Kind::Series,
                f.id,
                key,
                S_VALUES as usize + words as usize,
                alive,
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
        r.store(body + S_CREATED, created_ms);
        r.store(body + S_TAG, tag);
        if let Some((spec, layout)) = hist {
            histogram::init(&r, body + S_VALUES, spec, *layout);
        }
        let since = self.zone_tenths(created_ms);
        r.store(
            body + S_SEEN,
            u64::from(self.fingerprint(rec, f.metric_type)) << 32 | since,
        );
        #[cfg(feature = "debug-hooks")]
        if _reused {
            crate::shm::faults::reached(crate::shm::faults::Point::Reuse);
        }
        if !overflow {
            r.word(f.body + F_SERIES).fetch_add(1, Relaxed);
        }
        self.arena.publish(g, rec);
        Ok(value::handle(body + S_VALUES, tag))
    }

    /// Deletes the series of `f` with these label values; false when there is none.
    /// Its memory is reused by later series; its handles are refused from now on.
    pub fn delete_series<V: AsRef<[u8]>>(
        &self,
        f: Family,
        values: &[V],
        me: u32,
        alive: Liveness<'_>,
    ) -> bool {
        if values.len() != f.label_count {
            return false;
        }
        let key = encode_key(values);
        let g = self.lock(me, alive);
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
        me: u32,
        alive: Liveness<'_>,
        doomed: impl Fn(&[u8]) -> bool,
    ) -> u64 {
        self.delete_matching(&[f.id], me, alive, 0, |_, key| doomed(key))
    }

    /// Deletes every series of the families `ids` for which `doomed(family id, encoded
    /// key)` holds; returns how many. One walk over the zone, under the lock, however
    /// many families. `_now` is not used (reuse waits for epochs, not time); kept for
    /// the Lua glue's call.
    pub fn delete_matching(
        &self,
        ids: &[Offset],
        me: u32,
        alive: Liveness<'_>,
        _now: u64,
        doomed: impl Fn(Offset, &[u8]) -> bool,
    ) -> u64 {
        let g = self.lock(me, alive);
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
    pub fn begin_delete_and_keep_lock(&self, handle: u64, me: u32, alive: Liveness<'_>) -> bool {
        let g = self.lock(me, alive);
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

    /// Sets how many seconds without an update the series of `f` live (0: forever).
    pub fn set_expire(&self, f: Family, seconds: u64) {
        self.region()
            .word(f.body + F_EXPIRE)
            .store(seconds, Relaxed);
    }

    /// Tenths of a second since the zone was made, at `ms` since the epoch, in the 32
    /// bits the sweep's word keeps (they wrap after 13 years; differences are taken
    /// modulo 2^32).
    fn zone_tenths(&self, ms: u64) -> u64 {
        (ms / 100).saturating_sub(self.arena.created_unix() * 10) & 0xffff_ffff
    }

    /// What the sweep compares between two looks at a series to tell whether it was
    /// updated: a hash of its value words (for histograms the overflow count and the
    /// sum: every observation moves one of them, but one of exactly 0).
    fn fingerprint(&self, rec: Offset, t: MetricType) -> u32 {
        let r = self.region();
        let h = self.series_values(rec);
        let (a, b) = match t {
            MetricType::Counter => (r.load(h), r.load(h + 1)),
            MetricType::Gauge => (r.load(h), 0),
            MetricType::Histogram => {
                let (overflow, sum) = histogram::activity_words(&r, h);
                (r.load(overflow), r.load(sum))
            }
        };
        let x = a.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ b.rotate_left(29).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        (x >> 32) as u32
    }

    /// Deletes the series of families with an `expire` that no update changed for
    /// that many seconds. Each call looks at up to `budget` records from where the last
    /// one stopped (a pass over the zone takes records / budget calls) without the
    /// lock, then deletes what expired under one lock. A series is taken as updated when
    /// its values changed since the last look; its time starts at its creation.
    /// Returns (series of expiring families looked at, series deleted).
    pub fn sweep(&self, budget: usize, now_ms: u64, me: u32, alive: Liveness<'_>) -> (u64, u64) {
        let r = self.region();
        let now = self.zone_tenths(now_ms);
        let mut expire_of: std::collections::HashMap<Offset, u64> = Default::default();
        let mut looked = 0;
        let mut doomed = Vec::new();
        for (kind, rec) in self.arena.sweep_batch(budget) {
            if kind != Kind::Series as u8 {
                continue;
            }
            let owner = self.arena.owner(rec);
            let expire = *expire_of.entry(owner).or_insert_with(|| {
                if self.arena.is_live(u64::from(owner), Kind::Family) {
                    r.load(self.arena.body(owner) + F_EXPIRE)
                } else {
                    0
                }
            });
            let tag = self.series_tag(rec);
            let Some(t) = MetricType::from_u8(tag as u8) else {
                continue;
            };
            if expire == 0 || !value::is_live_tag(tag) {
                continue;
            }
            looked += 1;
            let body = self.arena.body(rec);
            let fp = self.fingerprint(rec, t);
            let seen = r.load(body + S_SEEN);
            if (seen >> 32) as u32 != fp {
                r.store(body + S_SEEN, u64::from(fp) << 32 | now);
            } else if now.wrapping_sub(seen & 0xffff_ffff) & 0xffff_ffff
                >= expire.saturating_mul(10)
            {
                doomed.push((rec, tag, fp));
            }
        }
        let mut deleted = 0;
        if !doomed.is_empty() {
            let g = self.lock(me, alive);
            for (rec, tag, fp) in doomed {
                // Updated or deleted since it was looked at: it stays (for now).
                let t = MetricType::from_u8(tag as u8).expect("checked above");
                if self.still_the_same(rec, tag) && self.fingerprint(rec, t) == fp {
                    #[cfg(feature = "debug-hooks")]
                    if deleted > 0 {
                        crate::shm::faults::sweep_deletes_again();
                    }
                    self.delete_locked(&g, rec);
                    deleted += 1;
                }
            }
        }
        (looked, deleted)
    }

    /// Deletes every series of `f`.
    pub fn reset(&self, f: Family, me: u32, alive: Liveness<'_>) -> u64 {
        self.delete_where(f, me, alive, |_| true)
    }

    /// The first half of a delete: the series' handles dead, the record marked as the
    /// delete in progress (for a takeover), then unlinked.
    fn begin_delete(&self, g: &Guard<'_>, rec: Offset) {
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
    fn delete_locked(&self, g: &Guard<'_>, rec: Offset) {
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
        crate::shm::faults::reached(crate::shm::faults::Point::Delete);
        if was_live && !self.is_overflow(family, rec) {
            r.word(family.body + F_SERIES).fetch_sub(1, Relaxed);
        }
        self.arena.set_deleting(g, 0);
    }

    /// Families in registration order, each with its series records in the order
    /// they sit in the zone (creation order, but for series made in a deleted one's
    /// block).
    pub fn families(&self) -> Vec<(Family, Vec<Offset>)> {
        // One walk. A series usually comes after its family's record; one in a reused
        // block may come before it, and is placed once the walk has seen the family.
        let mut out: Vec<(Family, Vec<Offset>)> = Vec::new();
        let mut index: std::collections::HashMap<Offset, usize> = Default::default();
        let mut early = Vec::new();
        for (kind, rec) in self.arena.live_any() {
            if kind == Kind::Family as u8 {
                index.insert(rec, out.len());
                out.push((self.family_at(rec), Vec::new()));
            } else if kind == Kind::Series as u8 {
                match index.get(&self.arena.owner(rec)) {
                    Some(i) => out[*i].1.push(rec),
                    None => early.push(rec),
                }
            }
        }
        for rec in early {
            if let Some(i) = index.get(&self.arena.owner(rec)) {
                out[*i].1.push(rec);
            }
        }
        out
    }

    /// A series record's tag word, read before its values: with
    /// [`still_the_same`](Self::still_the_same) after them, a render knows whether
    /// what it read belongs to one live series.
    pub fn series_tag(&self, rec: Offset) -> u64 {
        self.region()
            .word(self.arena.body(rec) + S_TAG)
            .load(Acquire)
    }

    /// Whether series record `rec` is still the live series whose tag was `tag`.
    pub fn still_the_same(&self, rec: Offset, tag: u64) -> bool {
        value::is_live_tag(tag) && self.arena.is_published(rec) && self.series_tag(rec) == tag
    }

    /// Appends a series record's label values (its key) to `out`.
    pub fn series_key(&self, rec: Offset, out: &mut Vec<u8>) {
        self.arena.read_key(rec, out);
    }

    /// First value word of a series record: what handles point at.
    pub fn series_values(&self, rec: Offset) -> Offset {
        self.arena.body(rec) + S_VALUES
    }

    /// When a series record was made, in ms since the Unix epoch.
    pub fn series_created_ms(&self, rec: Offset) -> u64 {
        self.region().load(self.arena.body(rec) + S_CREATED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::region::heap_words;
    use std::sync::atomic::AtomicU64;

    const ALIVE: &dyn Fn(u32) -> bool = &|_| true;

    fn counter_spec(name: &str, labels: &[&str]) -> FamilySpec {
        FamilySpec {
            help: "help".into(),
            ..FamilySpec::new(name, MetricType::Counter, labels)
        }
    }

    fn gauge_spec(name: &str, labels: &[&str]) -> FamilySpec {
        FamilySpec {
            help: "help".into(),
            ..FamilySpec::new(name, MetricType::Gauge, labels)
        }
    }

    #[test]
    fn a_counter_series_takes_72_bytes_plus_its_labels() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s
            .register(&counter_spec("c_total", &["k"]), 1, ALIVE)
            .unwrap();
        let before = s.arena().used_bytes();
        // 4 bytes of length and 4 of value: one word of key.
        let h = s
            .series_at(f, &["abcd"], 1, ALIVE, 1_700_000_000_123)
            .unwrap();
        // Header, chain, hash, owner; tag, sweep word, created time; two values.
        assert_eq!(s.arena().used_bytes() - before, 72 + 8);
        let (_, series) = &s.families()[0];
        assert_eq!(s.series_created_ms(series[0]), 1_700_000_000_123);
        assert_eq!(s.series_values(series[0]) as u64, h);
        // Found again, the creation time stays.
        assert_eq!(s.series_at(f, &["abcd"], 1, ALIVE, 5).unwrap(), h);
        assert_eq!(s.series_created_ms(series[0]), 1_700_000_000_123);
    }

    #[test]
    fn options_are_kept_and_may_change() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let mut spec = counter_spec("sent_bytes_total", &[]);
        spec.unit = "bytes".into();
        spec.group = "http".into();
        let f = s.register(&spec, 1, ALIVE).unwrap();
        let back = s.spec(f);
        assert_eq!((back.unit.as_str(), back.group()), ("bytes", "http"));
        spec.group = String::new();
        spec.unit = String::new();
        s.register(&spec, 1, ALIVE).unwrap();
        let back = s.spec(f);
        assert_eq!((back.unit.as_str(), back.group()), ("", "app"));
        let mut h = FamilySpec {
            name: "lat_seconds".into(),
            metric_type: MetricType::Histogram,
            histogram: Some(HistogramSpec::default()),
            ..counter_spec("x", &[])
        };
        let hf = s.register(&h, 1, ALIVE).unwrap();
        assert_eq!(s.spec(hf).quantiles, QuantileMode::Off);
        h.quantiles = QuantileMode::Beside;
        s.register(&h, 1, ALIVE).unwrap();
        assert_eq!(s.spec(hf).quantiles, QuantileMode::Beside);
        assert_eq!(
            s.family(u64::from(hf.id)).unwrap().metric_type,
            MetricType::Histogram
        );
    }

    #[test]
    fn clashing_names_are_refused() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        s.register(&counter_spec("req_total", &[]), 1, ALIVE)
            .unwrap();
        let mut g = counter_spec("req", &[]);
        g.metric_type = MetricType::Gauge;
        let e = s.register(&g, 1, ALIVE).unwrap_err();
        assert!(
            e.to_string().contains(
                "metric \"req\" clashes with metric \"req_total\": both would expose req"
            ),
            "{e}"
        );
        g.name = "req_created".into();
        assert!(s.register(&g, 1, ALIVE).is_err());
        let h = FamilySpec {
            name: "lat".into(),
            metric_type: MetricType::Histogram,
            histogram: Some(HistogramSpec::default()),
            ..counter_spec("x", &[])
        };
        s.register(&h, 1, ALIVE).unwrap();
        g.name = "lat_quantiles".into();
        assert!(s.register(&g, 1, ALIVE).is_err());
        g.name = "lat_count".into();
        assert!(s.register(&g, 1, ALIVE).is_err());
        // The module's own families count too.
        g.name = "nginx_requests".into();
        assert!(s
            .register(&g, 1, ALIVE)
            .unwrap_err()
            .to_string()
            .contains("\"nginx_requests_total\""));
        // Unrelated names are fine, and so is registering the same family again.
        g.name = "req_rate".into();
        s.register(&g, 1, ALIVE).unwrap();
        s.register(&counter_spec("req_total", &[]), 1, ALIVE)
            .unwrap();
    }

    #[test]
    fn register_is_idempotent_and_checks_shape() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let a = s
            .register(&counter_spec("req_total", &["code"]), 1, ALIVE)
            .unwrap();
        let b = s
            .register(&counter_spec("req_total", &["code"]), 2, ALIVE)
            .unwrap();
        assert_eq!(a, b);
        let e = s
            .register(&counter_spec("req_total", &["status"]), 1, ALIVE)
            .unwrap_err();
        assert!(e.to_string().contains("labels [code]"), "{e}");
        let mut g = counter_spec("req_total", &["code"]);
        g.metric_type = MetricType::Gauge;
        assert!(s
            .register(&g, 1, ALIVE)
            .unwrap_err()
            .to_string()
            .contains("type counter"));
        let mut changed = counter_spec("req_total", &["code"]);
        changed.help = "new help".into();
        s.register(&changed, 1, ALIVE).unwrap();
        assert_eq!(s.spec(a).help, "new help");
        assert_eq!(s.family(u64::from(a.id)), Some(a));
        assert_eq!(s.family(12345), None);
        assert_eq!(s.family(u64::from(a.id) + 1), None);
        assert_eq!(s.family(u64::MAX), None);
        let series = s.series(a, &["200"], 1, ALIVE).unwrap();
        assert_eq!(s.family(series), None);
    }

    #[test]
    fn series_are_shared_and_counted() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s
            .register(&counter_spec("req_total", &["svc", "code"]), 1, ALIVE)
            .unwrap();
        let h1 = s.series(f, &["a", "200"], 1, ALIVE).unwrap();
        let h2 = s.series(f, &["a", "200"], 2, ALIVE).unwrap();
        let h3 = s.series(f, &["a", "500"], 2, ALIVE).unwrap();
        assert_eq!(h1, h2);
        assert_ne!(h1, h3);
        assert_eq!(s.find_series(f, &["a", "500"]), Some(h3));
        counter::inc(&s.region(), h1, 3).unwrap();
        counter::inc(&s.region(), h2, 4).unwrap();
        assert_eq!(counter::read(&s.region(), h1 as Offset), (7, 0.0));
        let e = s.series(f, &["a"], 1, ALIVE).unwrap_err();
        assert_eq!(e.reason(), Reason::LabelCount);
        assert_eq!(s.errors(Reason::LabelCount), 1);
        let e = s.series(f, &[&b"\xff"[..], b"200"], 1, ALIVE).unwrap_err();
        assert!(
            e.to_string().contains("label \"svc\" is not valid UTF-8"),
            "{e}"
        );
        let fams = s.families();
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].1.len(), 2);
        assert_eq!(s.series_count(f), 2);
    }

    #[test]
    fn a_full_zone_refuses_new_series_and_keeps_old_ones() {
        let mem = heap_words(super::super::super::shm::arena::MIN_ZONE_BYTES / 8);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s.register(&counter_spec("c", &["i"]), 1, ALIVE).unwrap();
        let mut handles = Vec::new();
        // Once the zone is full, a new label set gets the family's overflow series
        // (made in the zone's reserve), and the refusal is counted.
        let overflow = loop {
            let h = s.series(f, &[handles.len().to_string()], 1, ALIVE).unwrap();
            if s.errors(Reason::ZoneFull) > 0 {
                break h;
            }
            handles.push(h);
        };
        assert_eq!(s.errors(Reason::ZoneFull), 1);
        assert_eq!(s.series(f, &["another"], 1, ALIVE), Ok(overflow));
        assert_eq!(s.errors(Reason::ZoneFull), 2);
        assert_eq!(s.find_series(f, &["__overflow__"]), Some(overflow));
        assert_eq!(s.series_count(f), handles.len() as u64);
        // A family without labels has no overflow series: refused.
        let g = s.register(&counter_spec("d", &[]), 1, ALIVE);
        if let Ok(g) = g {
            assert!(s.series(g, &[] as &[&str], 1, ALIVE).is_err());
        }
        for h in &handles {
            counter::inc(&s.region(), *h, 1).unwrap();
        }
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(s.series(f, &[i.to_string()], 1, ALIVE), Ok(*h));
            assert_eq!(counter::read(&s.region(), *h as Offset).0, 1);
        }
    }

    #[test]
    fn series_limit_per_family() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let mut spec = counter_spec("c", &["i"]);
        spec.max_series = 2;
        let f = s.register(&spec, 1, ALIVE).unwrap();
        let one = s.series(f, &["1"], 1, ALIVE).unwrap();
        s.series(f, &["2"], 1, ALIVE).unwrap();
        // Beyond the limit: the overflow series, every time; counted.
        let over = s.series(f, &["3"], 1, ALIVE).unwrap();
        assert_eq!(s.series(f, &["4"], 1, ALIVE), Ok(over));
        assert_eq!(s.errors(Reason::SeriesLimit), 2);
        assert_eq!(s.find_series(f, &["__overflow__"]), Some(over));
        assert_eq!(s.series(f, &["1"], 1, ALIVE), Ok(one));
        assert_eq!(s.series_count(f), 2, "the overflow series is not counted");
        // A deleted series makes room; deleting the overflow series changes no count.
        assert!(s.delete_series(f, &["__overflow__"], 1, ALIVE));
        assert!(s.delete_series(f, &["2"], 1, ALIVE));
        assert_eq!(s.series_count(f), 1);
        let three = s.series(f, &["3"], 1, ALIVE).unwrap();
        assert_ne!(three, over);
        // The overflow value is the family's to choose.
        let mut spec = counter_spec("o", &["a", "b"]);
        spec.max_series = 1;
        spec.overflow_value = "other".into();
        let o = s.register(&spec, 1, ALIVE).unwrap();
        s.series(o, &["x", "y"], 1, ALIVE).unwrap();
        let other = s.series(o, &["x", "z"], 1, ALIVE).unwrap();
        assert_eq!(s.find_series(o, &["other", "other"]), Some(other));
        assert_eq!(
            s.overflow_series(o, 1, ALIVE),
            Some((other, b"other".to_vec()))
        );
        // Asked for by its label values, or by overflow_series, under the limit: the
        // overflow series is still made outside max_series, and nothing is counted.
        let mut spec = counter_spec("p", &["i"]);
        spec.max_series = 1;
        let p = s.register(&spec, 1, ALIVE).unwrap();
        let errors = s.errors(Reason::SeriesLimit);
        let made = s.series(p, &["__overflow__"], 1, ALIVE).unwrap();
        assert_eq!(s.series_count(p), 0);
        assert_eq!(
            s.overflow_series(p, 1, ALIVE),
            Some((made, b"__overflow__".to_vec()))
        );
        assert!(s.delete_series(p, &["__overflow__"], 1, ALIVE));
        assert_eq!(s.series_count(p), 0);
        let again = s.overflow_series(p, 1, ALIVE).unwrap().0;
        assert_eq!(s.series_count(p), 0);
        s.series(p, &["1"], 1, ALIVE).unwrap();
        assert_eq!(s.series(p, &["2"], 1, ALIVE), Ok(again));
        assert_eq!(s.errors(Reason::SeriesLimit), errors + 1);
        // A family without labels has none.
        let n = s.register(&counter_spec("n", &[]), 1, ALIVE).unwrap();
        assert_eq!(s.overflow_series(n, 1, ALIVE), None);
    }

    #[test]
    fn buckets_change_without_losing_counts() {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let spec = FamilySpec {
            histogram: Some(HistogramSpec::default()),
            ..FamilySpec::new("lat", MetricType::Histogram, &[])
        };
        let f = s.register(&spec, 1, ALIVE).unwrap();
        let h = s.series(f, &[] as &[&str], 1, ALIVE).unwrap();
        for v in [0.001, 0.02, 0.3, 4.0] {
            s.observe(h, v, 1, ALIVE).unwrap();
        }
        s.set_buckets(f, &[0.01, 1.0], 1, ALIVE).unwrap();
        let spec2 = s.spec(f);
        assert_eq!(spec2.histogram.as_ref().unwrap().buckets, vec![0.01, 1.0]);
        let snap = histogram::Snapshot::read(&s.region(), h as Offset, None);
        assert_eq!(snap.count(), 4);
        let mut different = spec.clone();
        different.histogram.as_mut().unwrap().precision = 3;
        assert!(s
            .register(&different, 1, ALIVE)
            .unwrap_err()
            .to_string()
            .contains("precision 2"));
    }

    fn histogram_spec(name: &str) -> FamilySpec {
        FamilySpec {
            metric_type: MetricType::Histogram,
            histogram: Some(HistogramSpec::default()),
            ..counter_spec(name, &[])
        }
    }

    #[test]
    fn a_histogram_series_grows_by_chunks_made_once() {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s.register(&histogram_spec("lat"), 1, ALIVE).unwrap();
        let before = s.arena().used_bytes();
        let h = s.series(f, &[] as &[&str], 1, ALIVE).unwrap();
        // Header word, hash chain, hash, owner, an empty key; the tag, the sweep's word
        // and the created time; 3 parameter words, 40 chunk words (2,560 slots in
        // chunks of 64), the overflow count and the sum.
        let empty = s.arena().used_bytes() - before;
        assert_eq!(empty, (4 + 3 + 3 + 40 + 2) * 8);
        // Four threads, the same values at once: each chunk is made by one of them.
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for i in 0..5000u32 {
                        // 1 ms..~1.3 s: eleven powers of two of microseconds.
                        let v = 0.001 * 1.0015f64.powi(i as i32 % 4800);
                        s.observe(h, v, 1, ALIVE).unwrap();
                    }
                });
            }
        });
        let snap = histogram::Snapshot::read(&s.region(), h as Offset, None);
        assert_eq!(snap.count(), 20_000);
        let chunks: std::collections::BTreeSet<u32> =
            snap.counts.iter().map(|(i, _)| i / 64).collect();
        let grown = s.arena().used_bytes() - before - empty;
        assert_eq!(grown, chunks.len() as u64 * 64 * 8, "{chunks:?}");
        assert!(chunks.len() <= 24, "{chunks:?}");
    }

    #[test]
    fn a_full_zone_refuses_new_chunks_and_keeps_count_and_sum_exact() {
        let mem = heap_words(super::super::super::shm::arena::MIN_ZONE_BYTES / 8);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s.register(&histogram_spec("lat"), 1, ALIVE).unwrap();
        let h = s.series(f, &[] as &[&str], 1, ALIVE).unwrap();
        s.observe(h, 0.001, 1, ALIVE).unwrap();
        let c = s.register(&counter_spec("c", &["i"]), 1, ALIVE).unwrap();
        // Fill the zone: until new label sets go to the overflow series.
        let mut i = 0;
        while s.errors(Reason::ZoneFull) == 0 {
            s.series(c, &[i.to_string()], 1, ALIVE).unwrap();
            i += 1;
        }
        assert_eq!(
            s.observe(h, 30.0, 1, ALIVE),
            Err(histogram::ObserveError::ZoneFull)
        );
        s.observe(h, 0.001, 1, ALIVE).unwrap();
        let snap = histogram::Snapshot::read(&s.region(), h as Offset, None);
        // The refused value is in _count, _sum and +Inf only: sums stay exact.
        assert_eq!((snap.count(), snap.overflow), (3, 1));
        assert_eq!(snap.sum, 0.001 + 30.0 + 0.001);
    }

    #[test]
    fn key_encoding_round_trips() {
        let values = ["", "a\"b", "\\\n", "ü"];
        let key = encode_key(&values);
        let back: Vec<&[u8]> = decode_key(&key).collect();
        assert_eq!(
            back,
            values.iter().map(|v| v.as_bytes()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_deleted_series_block_is_reused_and_its_handles_are_stale() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let r = s.region();
        let f = s
            .register(&counter_spec("c_total", &["k"]), 1, ALIVE)
            .unwrap();
        // One participant (a worker) that checked "a"'s handle and did not move on yet.
        let worker = s.join_epochs(2, ALIVE).unwrap();
        let before_a = s.arena().used_bytes();
        let a = s.series_at(f, &["a"], 1, ALIVE, 1000).unwrap();
        counter::inc(&r, a, 5).unwrap();
        let used = s.arena().used_bytes();
        assert!(s.delete_series(f, &["a"], 1, ALIVE));
        assert!(!s.delete_series(f, &["a"], 1, ALIVE), "deleted once");
        assert_eq!(counter::inc(&r, a, 1), Err(counter::CounterError::Stale));
        assert_eq!((s.series_count(f), s.arena().series()), (0, 0));
        assert_eq!(s.find_series(f, &["a"]), None);
        // Before the worker moves on: a new block, and the freed one is counted as
        // waiting. After: the freed one, whatever the key (same size).
        assert_eq!(s.waiting_bytes(1, ALIVE), used - before_a);
        let b = s.series_at(f, &["b"], 1, ALIVE, 2000).unwrap();
        assert!(s.arena().used_bytes() > used);
        let used = s.arena().used_bytes();
        s.announce(worker);
        assert_eq!(s.waiting_bytes(1, ALIVE), 0);
        let c = s.series_at(f, &["c"], 1, ALIVE, 3000).unwrap();
        assert_eq!(s.arena().used_bytes(), used);
        assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff, "same block");
        assert_ne!(c, a, "another generation");
        // The old handle never reaches the new series; the new one starts at zero.
        assert_eq!(counter::inc(&r, a, 1), Err(counter::CounterError::Stale));
        counter::inc(&r, c, 2).unwrap();
        counter::inc(&r, b, 3).unwrap();
        let (_, series) = s.families().remove(0);
        let values: Vec<(Vec<u8>, u64)> = series
            .iter()
            .map(|&rec| {
                let mut k = Vec::new();
                s.series_key(rec, &mut k);
                (k, counter::read(&r, s.series_values(rec)).0)
            })
            .collect();
        assert_eq!(
            values,
            vec![(encode_key(&["c"]), 2), (encode_key(&["b"]), 3)]
        );
        assert_eq!(s.series_created_ms(series[0]), 3000);
        assert_eq!((s.series_count(f), s.arena().series()), (2, 2));
        // "a" again: a new series from zero.
        let a2 = s.series_at(f, &["a"], 1, ALIVE, 9000).unwrap();
        assert_ne!(a2, a);
        assert_eq!(counter::read(&r, a2 as Offset).0, 0);
    }

    #[test]
    fn a_stalled_participant_holds_reuse_back_then_lets_it_resume() {
        let mem = heap_words(1 << 16);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let r = s.region();
        let f = s
            .register(&counter_spec("c_total", &["k"]), 1, ALIVE)
            .unwrap();
        let g = s.register(&gauge_spec("g", &["k"]), 1, ALIVE).unwrap();
        let busy = s.join_epochs(2, ALIVE).unwrap();
        let stalled = s.join_epochs(3, ALIVE).unwrap();
        // The stalled worker checked "a"'s handle and stopped before its add.
        let a = s.series(f, &["a"], 1, ALIVE).unwrap();
        let a_at = a & 0xffff_ffff;
        assert!(s.delete_series(f, &["a"], 1, ALIVE));
        // Churn of counters and gauges of the same block sizes, far past any grace.
        let mut blocks = std::collections::HashSet::new();
        for i in 0..2000 {
            let k = format!("k{i:05}");
            let h = if i % 2 == 0 {
                s.series(f, &[k.as_str()], 1, ALIVE).unwrap()
            } else {
                s.series(g, &[k.as_str()], 1, ALIVE).unwrap()
            };
            blocks.insert(h & 0xffff_ffff);
            assert!(s.delete_series(if i % 2 == 0 { f } else { g }, &[k.as_str()], 1, ALIVE));
            s.announce(busy);
        }
        assert!(
            !blocks.contains(&a_at),
            "a's block reused under a stalled worker"
        );
        let waiting = s.waiting_bytes(1, ALIVE);
        assert!(waiting >= 2000 * 64, "{waiting} bytes reported waiting");
        // It resumes: its add lands in the freed block, which nothing reads...
        r.word(a_at as Offset).fetch_add(1, Relaxed);
        s.announce(stalled);
        assert_eq!(s.waiting_bytes(1, ALIVE), 0);
        // ...and reuse resumes: a's block is taken again, zeroed.
        let b = s.series(f, &["b"], 1, ALIVE).unwrap();
        assert_eq!(b & 0xffff_ffff, a_at, "the oldest free block first");
        assert_eq!(counter::read(&r, b as Offset), (0, 0.0));
        assert_eq!(counter::inc(&r, a, 1), Err(counter::CounterError::Stale));
        // A stalled worker that dies lets go too.
        s.join_epochs(4, ALIVE).unwrap();
        assert!(s.delete_series(f, &["b"], 1, ALIVE));
        s.announce(busy);
        s.announce(stalled);
        assert!(s.waiting_bytes(1, ALIVE) > 0);
        assert_eq!(s.waiting_bytes(1, &|pid| pid != 4), 0);
    }

    #[test]
    fn a_block_that_used_up_its_generations_is_retired() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let r = s.region();
        let f = s
            .register(&counter_spec("c_total", &["k"]), 1, ALIVE)
            .unwrap();
        let first = s.series(f, &["a"], 1, ALIVE).unwrap();
        let mut n = 1u64;
        // Nobody holds reuse back: the same block serves every generation.
        let last = loop {
            assert!(s.delete_series(f, &["a"], 1, ALIVE));
            let h = s.series(f, &["a"], 1, ALIVE).unwrap();
            if h & 0xffff_ffff != first & 0xffff_ffff {
                break h;
            }
            n += 1;
            assert!(
                n <= 1 << 17,
                "a generation came round: a stale handle could alias"
            );
        };
        assert_eq!(n, 1 << 17, "one series per generation, then a new block");
        // No handle of the retired block reaches anything, the first generation's least.
        assert_eq!(
            counter::inc(&r, first, 1),
            Err(counter::CounterError::Stale)
        );
        counter::inc(&r, last, 1).unwrap();
        assert_eq!(counter::read(&r, last as Offset), (1, 0.0));
    }

    #[test]
    fn a_histograms_chunks_are_freed_and_reused_zeroed() {
        let mem = heap_words(1 << 15);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s.register(&histogram_spec("lat"), 1, ALIVE).unwrap();
        let a = s.series_at(f, &[] as &[&str], 1, ALIVE, 0).unwrap();
        for v in [0.001, 0.01, 0.1, 1.0] {
            s.observe(a, v, 1, ALIVE).unwrap();
        }
        let used = s.arena().used_bytes();
        assert!(s.delete_series(f, &[] as &[&str], 1, ALIVE));
        assert_eq!(
            s.observe(a, 0.1, 1, ALIVE),
            Err(histogram::ObserveError::Stale)
        );
        // Reused (no participant holds them back): the block and the same chunks, every
        // count back at zero.
        let b = s.series_at(f, &[] as &[&str], 1, ALIVE, 0).unwrap();
        assert_eq!(b & 0xffff_ffff, a & 0xffff_ffff);
        let snap = histogram::Snapshot::read(&s.region(), b as Offset, None);
        assert_eq!((snap.count(), snap.sum), (0, 0.0));
        assert!(snap.counts.is_empty());
        assert_eq!(s.arena().used_bytes(), used - 4 * 64 * 8 + 4 * 64 * 8);
    }

    #[test]
    fn reset_and_delete_where_pick_their_series_only() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s
            .register(&counter_spec("a_total", &["route", "code"]), 1, ALIVE)
            .unwrap();
        let g = s
            .register(&counter_spec("b_total", &["route"]), 1, ALIVE)
            .unwrap();
        for (route, code) in [("r1", "200"), ("r1", "500"), ("r2", "200")] {
            s.series(f, &[route, code], 1, ALIVE).unwrap();
        }
        s.series(g, &["r1"], 1, ALIVE).unwrap();
        let r1 = encode_key(&["r1"]);
        let deleted = s.delete_where(f, 1, ALIVE, |key| {
            decode_key(key).next() == decode_key(&r1).next()
        });
        assert_eq!(deleted, 2);
        assert_eq!((s.series_count(f), s.series_count(g)), (1, 1));
        assert!(s.find_series(f, &["r2", "200"]).is_some());
        assert!(s.find_series(g, &["r1"]).is_some());
        assert_eq!(s.reset(f, 1, ALIVE), 1);
        assert_eq!((s.series_count(f), s.arena().series()), (0, 1));
        assert_eq!(s.families()[0].1.len(), 0);
    }

    #[test]
    fn churn_of_mixed_sizes_stays_within_a_bound() {
        // 200,000 label sets of 1 to 120 bytes made over time, at most 500 alive at
        // once, a worker that announces every 300th series: the zone holds the live
        // series plus what waits for the worker, and stops growing.
        let mem = heap_words(1 << 17);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s
            .register(&counter_spec("churn_total", &["k"]), 1, ALIVE)
            .unwrap();
        let mut alive: std::collections::VecDeque<String> = Default::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let at_start = s.arena().used_bytes();
        let mut peak = 0;
        let mut at_half = 0;
        let worker = s.join_epochs(2, ALIVE).unwrap();
        for i in 0..200_000u64 {
            if i % 300 == 0 {
                s.announce(worker);
            }
            let now = i * 10; // a series every 10 ms
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 120) as usize;
            let value = format!("{i:x}{}", "v".repeat(len));
            s.series_at(f, &[value.as_str()], 1, ALIVE, now).unwrap();
            alive.push_back(value);
            if alive.len() > 500 {
                let old = alive.pop_front().unwrap();
                assert!(s.delete_series(f, &[old.as_str()], 1, ALIVE));
            }
            peak = peak.max(s.arena().used_bytes());
            if i == 100_000 {
                at_half = s.arena().used_bytes();
            }
        }
        assert_eq!(s.series_count(f), 500);
        // The zone's fixed part, then 500 live + 300 waiting (up to 600 in all), at most
        // 48 + 8 + 128 bytes each, a quarter more in a reused bigger block.
        let fixed = at_start;
        let bound = fixed + 800 * (48 + 8 + 128) * 5 / 4;
        eprintln!("churn: fixed {fixed} B, peak {peak} B, bound {bound} B");
        assert!(peak < bound, "peak {peak} over {bound}");
        // No growth in the second half: the free lists feed every new series.
        let end = s.arena().used_bytes();
        assert!(end <= at_half + 4096, "{at_half} -> {end}");
    }

    #[test]
    fn a_takeover_finishes_a_half_done_delete() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let f = s
            .register(&counter_spec("c_total", &["k"]), 1, ALIVE)
            .unwrap();
        let a = s.series_at(f, &["a"], 1, ALIVE, 0).unwrap();
        s.series_at(f, &["b"], 1, ALIVE, 0).unwrap();
        // Process 41 starts deleting "a" (handles dead, marked in progress, unlinked)
        // and dies holding the lock.
        assert!(s.begin_delete_and_keep_lock(a, 41, ALIVE));
        assert_eq!(
            counter::inc(&s.region(), a, 1),
            Err(counter::CounterError::Stale)
        );
        // The next process takes the lock over and finishes: "a" is gone, its block
        // free for reuse, the counts right.
        let dead_41: &dyn Fn(u32) -> bool = &|pid| pid != 41;
        let b2 = s.series_at(f, &["c"], 7, dead_41, 0).unwrap();
        assert_eq!(s.arena().lock_takeovers(), 1);
        assert_eq!(s.arena().deleting(), 0);
        assert_eq!(
            b2 & 0xffff_ffff,
            a & 0xffff_ffff,
            "the freed block is reused"
        );
        assert_eq!((s.series_count(f), s.arena().series()), (2, 2));
        assert_eq!(s.find_series(f, &["a"]), None);
    }

    #[test]
    fn stale_handles_never_reach_the_series_that_reuses_the_block() {
        // Four threads, each a participant announcing between batches of updates, keep
        // updating series A through their handle while A is deleted and, once every
        // thread has moved on, its block is reused by B; B gets exactly what went to B.
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let r = s.region();
        let f = s
            .register(&counter_spec("c_total", &["k"]), 1, ALIVE)
            .unwrap();
        let a = s.series(f, &["a"], 1, ALIVE).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (landed, stale) = (AtomicU64::new(0), AtomicU64::new(0));
        let b = std::thread::scope(|scope| {
            for pid in 10..14 {
                let slot = s.join_epochs(pid, ALIVE).unwrap();
                let (stop, landed, stale) = (&stop, &landed, &stale);
                scope.spawn(move || {
                    while !stop.load(Relaxed) {
                        for _ in 0..1000 {
                            match counter::inc(&r, a, 1) {
                                Ok(()) => landed.fetch_add(1, Relaxed),
                                Err(_) => stale.fetch_add(1, Relaxed),
                            };
                        }
                        s.announce(slot);
                    }
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(s.delete_series(f, &["a"], 1, ALIVE));
            while s.waiting_bytes(1, ALIVE) > 0 {
                std::thread::yield_now();
            }
            let b = s.series(f, &["b"], 1, ALIVE).unwrap();
            assert_eq!(b & 0xffff_ffff, a & 0xffff_ffff, "A's block");
            for _ in 0..100_000 {
                counter::inc(&r, b, 1).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            stop.store(true, Relaxed);
            b
        });
        assert_eq!(counter::read(&r, b as Offset), (100_000, 0.0));
        assert!(landed.load(Relaxed) > 0 && stale.load(Relaxed) > 0);
    }

    #[test]
    fn the_sweep_deletes_what_no_update_changed_for_expire_seconds() {
        let mem = heap_words(1 << 14);
        let s = Store::format(Region::new(&mem), 0).unwrap();
        let r = s.region();
        let mut spec = counter_spec("e_total", &["k"]);
        spec.expire_s = 10;
        let f = s.register(&spec, 1, ALIVE).unwrap();
        let g = s
            .register(&counter_spec("kept_total", &["k"]), 1, ALIVE)
            .unwrap();
        let mut hspec = histogram_spec("e_seconds");
        hspec.expire_s = 10;
        let hf = s.register(&hspec, 1, ALIVE).unwrap();
        let t = 1_000_000_000;
        let a = s.series_at(f, &["a"], 1, ALIVE, t).unwrap();
        s.series_at(f, &["b"], 1, ALIVE, t).unwrap();
        s.series_at(g, &["c"], 1, ALIVE, t).unwrap();
        let h = s.series_at(hf, &[] as &[&str], 1, ALIVE, t).unwrap();
        let sweep = |at: u64| s.sweep(1000, at, 1, ALIVE);
        assert_eq!(sweep(t + 5_000), (3, 0));
        counter::inc(&r, a, 1).unwrap();
        s.observe(h, 0.25, 1, ALIVE).unwrap();
        // b: nothing since its creation 12 s ago. a and h: updated since the last look.
        assert_eq!(sweep(t + 12_000), (3, 1));
        assert_eq!(s.find_series(f, &["b"]), None);
        assert!(s.find_series(g, &["c"]).is_some(), "no expire: kept");
        assert_eq!(sweep(t + 21_000), (2, 0));
        assert_eq!(sweep(t + 23_000), (2, 2));
        assert_eq!(counter::inc(&r, a, 1), Err(counter::CounterError::Stale));
        assert_eq!(
            (s.series_count(f), s.series_count(hf), s.series_count(g)),
            (0, 0, 1)
        );
        // A small budget: each call looks at the next records, the pass wraps around.
        let mut spec = counter_spec("w_total", &["k"]);
        spec.expire_s = 1;
        let w = s.register(&spec, 1, ALIVE).unwrap();
        for k in ["1", "2", "3"] {
            s.series_at(w, &[k], 1, ALIVE, t).unwrap();
        }
        let mut deleted = 0;
        for _ in 0..40 {
            deleted += s.sweep(2, t + 60_000, 1, ALIVE).1;
        }
        assert_eq!(deleted, 3);
        assert_eq!(s.series_count(w), 0);
    }
}
