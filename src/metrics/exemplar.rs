//! Exemplars: the trace id of one recent update, kept beside a series' values when
//! its family asks for them (`exemplars = true`): one slot per counter series, one
//! per classic bucket (`+Inf` included) of a histogram series, the latest update
//! winning.
//!
//! No lock, on either side. Each slot starts with a sequence word: even when the slot
//! is at rest, odd while a writer fills it. A writer claims the slot with one
//! compare-and-swap from the even value it read to the next odd one, writes the
//! value, the time and the id, and releases it at the next even value. A writer that
//! finds the slot odd, or loses the compare-and-swap, leaves its exemplar out: another
//! update is writing that very slot at that moment, and "latest wins" is approximate
//! by design (the one that lost was as recent). A reader (the render thread) reads
//! the sequence word, the fields, then the sequence word again, and retries a few
//! times when they differ or the first was odd; then leaves the exemplar out for this
//! scrape rather than show a torn one. A writer killed between its claim and its
//! release leaves the slot odd: that slot shows no exemplar again for the life of its
//! series (every other slot, and every count, is unaffected).
//!
//! The series says how many slots it has in the high byte of its creation-time word
//! (0: none, so a series made before its family asked for exemplars has none, and an
//! update through it records its value only). The area after the values starts with
//! the family's body offset, which a histogram's writer reads its bucket bounds
//! through (to pick the slot); a render places each exemplar by its own value
//! instead, so bounds changed since it was recorded never put it in a bucket that
//! does not contain it.

use super::hdr::HdrLayout;
use super::layout::HIST_LAYOUT;
use super::layout::{
    EXEMPLAR_ID_WORDS, EXEMPLAR_SLOT_WORDS, F_BUCKETS, S_CREATED, S_VALUES, X_FAMILY, X_ID, X_LEN,
    X_SEQ, X_SLOTS, X_TIME, X_VALUE,
};
use crate::shm::{arena, Offset, Region};
use std::sync::atomic::{
    fence,
    Ordering::{Acquire, Relaxed, Release},
};

/// The longest trace id kept, in bytes: W3C trace ids are 32 hex digits and nginx's
/// `$request_id` 32 too. OpenMetrics allows an exemplar's label set 128 UTF-8
/// characters, 120 of them for the value after the name `trace_id`: 64 bytes are
/// within it whatever the characters.
pub const MAX_ID: usize = EXEMPLAR_ID_WORDS as usize * 8;
/// The label name an exemplar's id is exposed under.
pub const LABEL: &str = "trace_id";
/// Bits of the creation-time word below the slot count.
pub const CREATED_BITS: u32 = 56;
/// How many times a render reads a slot that changes under it before leaving it out.
const READ_TRIES: usize = 3;

/// Why an exemplar was not kept (the update itself went in).
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Refused {
    /// Empty, longer than [`MAX_ID`], not UTF-8, or with a control character.
    InvalidId,
}

/// Whether `id` may be an exemplar's trace id: 1 to [`MAX_ID`] bytes of UTF-8 without
/// control characters (C0, DEL, C1), `"` or `\`: what every reader takes as a label
/// value unescaped (prometheus_client's OpenMetrics parser refuses an exemplar whose
/// value has an escaped quote).
pub fn check_id(id: &[u8]) -> Result<(), Refused> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(Refused::InvalidId);
    }
    // Printable ASCII (trace ids, request ids: the usual case) a byte at a time,
    // without decoding; anything else decoded.
    if id
        .iter()
        .all(|b| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\')
    {
        return Ok(());
    }
    let s = std::str::from_utf8(id).map_err(|_| Refused::InvalidId)?;
    if s.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err(Refused::InvalidId);
    }
    Ok(())
}

/// The words an exemplar area of `slots` slots takes after a series' values.
pub fn area_words(slots: u64) -> u64 {
    if slots == 0 {
        0
    } else {
        X_SLOTS as u64 + slots * EXEMPLAR_SLOT_WORDS as u64
    }
}

/// The creation-time word of a series made at `created_ms` with `slots` slots. A time
/// past 2^56 ms (two million years; only a caller's own creation time can be) is kept
/// as the largest one the word holds.
pub fn created_word(created_ms: u64, slots: u64) -> u64 {
    debug_assert!(slots < 256);
    created_ms.min((1 << CREATED_BITS) - 1) | slots << CREATED_BITS
}

/// The creation time in a creation-time word.
pub fn created_ms(word: u64) -> u64 {
    word & ((1 << CREATED_BITS) - 1)
}

/// The slots a series has, from its creation-time word.
pub fn slots_of(word: u64) -> u64 {
    word >> CREATED_BITS
}

/// Writes the area's header into a fresh series: the family whose buckets pick a
/// histogram's slot. `area` is where it starts (after the values).
pub fn init(r: &Region<'_>, area: Offset, family_body: Offset) {
    r.store(area + X_FAMILY, u64::from(family_body));
}

/// One exemplar as read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exemplar {
    pub value: f64,
    /// When it was recorded, ms since the epoch.
    pub ms: u64,
    len: u8,
    id: [u8; MAX_ID],
}

impl Exemplar {
    pub fn new(id: &str, value: f64, ms: u64) -> Exemplar {
        let mut e = Exemplar {
            value,
            ms,
            len: id.len().min(MAX_ID) as u8,
            id: [0; MAX_ID],
        };
        e.id[..e.len as usize].copy_from_slice(&id.as_bytes()[..e.len as usize]);
        e
    }

    /// The trace id (checked when it was recorded; a torn read is never returned).
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.id[..self.len as usize]).unwrap_or("")
    }
}

/// The area of the series whose values start at `h`, `values` words long, and its
/// slot count; `None` when it has none (or the words are out of the zone).
#[inline(always)]
fn area(r: &Region<'_>, h: Offset, values: u64) -> Option<(Offset, u64)> {
    let created = r.get(u64::from(h) - u64::from(S_VALUES - S_CREATED))?;
    let slots = slots_of(created.load(Relaxed));
    if slots == 0 {
        return None;
    }
    let at = u64::from(h) + values;
    r.get(at + area_words(slots) - 1)?;
    Some((at as Offset, slots))
}

fn slot_at(area: Offset, i: u64) -> Offset {
    area + X_SLOTS + (i * EXEMPLAR_SLOT_WORDS as u64) as Offset
}

/// The slot a histogram value goes to: its classic bucket's (the first bound at or
/// above it, `+Inf` last), read from the family's current bounds; the last slot when
/// the bounds grew since the series was made.
#[inline]
fn bucket_slot(r: &Region<'_>, area: Offset, slots: u64, v: f64) -> u64 {
    let family = r.load(area + X_FAMILY);
    let blob = r
        .get(family + u64::from(F_BUCKETS))
        .map_or(0, |w| w.load(Acquire));
    let mut i = 0u64;
    if let Some((data, bytes)) = arena::blob_data(r, blob as Offset) {
        for w in r.words(data, (bytes / 8) as u32) {
            if v <= f64::from_le_bytes(w.load(Relaxed).to_ne_bytes()) {
                break;
            }
            i += 1;
        }
    }
    i.min(slots - 1)
}

/// Records exemplar `id` for the update of `v` just made in the series whose values
/// start at `h` (checked by that update), `values` words long; `histogram` picks the
/// slot by bucket. `Ok` when kept or skipped (no area, slot busy); `Err` when the id
/// cannot be an exemplar.
#[inline]
pub fn record(
    r: &Region<'_>,
    h: Offset,
    values: u64,
    histogram: bool,
    v: f64,
    id: &[u8],
    now_ms: u64,
) -> Result<(), Refused> {
    let Some((area, slots)) = area(r, h, values) else {
        return Ok(());
    };
    check_id(id)?;
    let i = if histogram {
        bucket_slot(r, area, slots, v)
    } else {
        0
    };
    let slot = slot_at(area, i);
    let seq = r.word(slot + X_SEQ);
    let s = seq.load(Relaxed);
    if s & 1 == 1 || seq.compare_exchange(s, s + 1, Acquire, Relaxed).is_err() {
        return Ok(());
    }
    // The claim is ordered before the fields' stores (the fence keeps them after it).
    fence(Release);
    r.store(slot + X_VALUE, v.to_bits());
    r.store(slot + X_TIME, now_ms);
    r.store(slot + X_LEN, id.len() as u64);
    // The words the id covers (a reader takes only `len` bytes of them).
    let mut b = [0u8; MAX_ID];
    b[..id.len()].copy_from_slice(id);
    for (k, w) in b.chunks_exact(8).take(id.len().div_ceil(8)).enumerate() {
        let w: [u8; 8] = w.try_into().expect("chunks of 8");
        r.store(slot + X_ID + k as Offset, u64::from_ne_bytes(w));
    }
    seq.store(s + 2, Release);
    Ok(())
}

/// [`record`] for the series of `handle`, which the update just made through it
/// checked (a counter's, or a histogram's when `histogram`).
#[inline]
pub fn record_after_update(
    r: &Region<'_>,
    handle: u64,
    histogram: bool,
    v: f64,
    id: &[u8],
    now_ms: u64,
) -> Result<(), Refused> {
    let h = (handle & 0xffff_ffff) as Offset;
    let values = if histogram {
        let Some(layout) = r.get(u64::from(h) + u64::from(HIST_LAYOUT)) else {
            return Ok(());
        };
        super::histogram::value_words(HdrLayout::unpack(layout.load(Relaxed)))
    } else {
        super::layout::COUNTER_WORDS
    };
    record(r, h, values, histogram, v, id, now_ms)
}

/// The exemplars of the series whose values start at `h`, `values` words long: one
/// per slot, `None` for a slot never written, busy or changing while read. Empty when
/// the series keeps none.
pub fn read(r: &Region<'_>, h: Offset, values: u64, out: &mut Vec<Option<Exemplar>>) {
    out.clear();
    let Some((area, slots)) = area(r, h, values) else {
        return;
    };
    for i in 0..slots {
        out.push(read_slot(r, slot_at(area, i)));
    }
}

fn read_slot(r: &Region<'_>, slot: Offset) -> Option<Exemplar> {
    let seq = r.word(slot + X_SEQ);
    for _ in 0..READ_TRIES {
        let before = seq.load(Acquire);
        if before == 0 {
            return None;
        }
        if before & 1 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let value = f64::from_bits(r.load(slot + X_VALUE));
        let ms = r.load(slot + X_TIME);
        let len = (r.load(slot + X_LEN) as usize).min(MAX_ID);
        let mut id = [0u8; MAX_ID];
        for (k, w) in r.words(slot + X_ID, EXEMPLAR_ID_WORDS).iter().enumerate() {
            id[k * 8..k * 8 + 8].copy_from_slice(&w.load(Relaxed).to_ne_bytes());
        }
        // The fields' loads are ordered before the second read of the sequence word.
        fence(Acquire);
        if seq.load(Relaxed) != before || check_id(&id[..len]).is_err() {
            continue;
        }
        return Some(Exemplar {
            value,
            ms,
            len: len as u8,
            id,
        });
    }
    None
}

/// Places a histogram series' exemplars on its buckets by value: for each bucket
/// (`bounds` then `+Inf`), the latest exemplar whose value is in it (above the bound
/// before, at or below its own), if any.
pub fn by_bucket(read: &[Option<Exemplar>], bounds: &[f64], out: &mut Vec<Option<Exemplar>>) {
    out.clear();
    if read.iter().all(Option::is_none) {
        return;
    }
    out.resize(bounds.len() + 1, None);
    for e in read.iter().flatten() {
        let i = bounds.partition_point(|b| *b < e.value);
        let kept = &mut out[i];
        if !matches!(kept, Some(k) if k.ms > e.ms) {
            *kept = Some(*e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::region::heap_words;

    #[test]
    fn ids_are_checked() {
        assert!(check_id(b"4bf92f3577b34da6a3ce929d0e0e4736").is_ok());
        assert!(check_id("été-ok".as_bytes()).is_ok());
        assert_eq!(check_id(b""), Err(Refused::InvalidId));
        assert_eq!(check_id(&[b'a'; 65]), Err(Refused::InvalidId));
        assert!(check_id(&[b'a'; 64]).is_ok());
        assert_eq!(check_id(b"a\nb"), Err(Refused::InvalidId));
        assert_eq!(check_id(b"a\x7fb"), Err(Refused::InvalidId));
        assert_eq!(check_id("a\u{85}b".as_bytes()), Err(Refused::InvalidId));
        assert_eq!(check_id(b"\xff\xfe"), Err(Refused::InvalidId));
        assert_eq!(check_id(b"a\"b"), Err(Refused::InvalidId));
        assert_eq!(check_id("é\\".as_bytes()), Err(Refused::InvalidId));
    }

    #[test]
    fn created_word_keeps_both() {
        let w = created_word(1_700_000_000_123, 12);
        assert_eq!((created_ms(w), slots_of(w)), (1_700_000_000_123, 12));
        assert_eq!(slots_of(created_word(5, 0)), 0);
        // Found by the exposition fuzz target: a creation time past the word's bits
        // is clamped, never spilt into the slot count.
        let w = created_word(u64::MAX, 3);
        assert_eq!((created_ms(w), slots_of(w)), ((1 << CREATED_BITS) - 1, 3));
    }

    /// A series body at word 8: created word at 8 + S_CREATED, 2 value words, then
    /// the area.
    fn series(mem: &[std::sync::atomic::AtomicU64], slots: u64) -> Offset {
        let r = Region::new(mem);
        let body: Offset = 8;
        r.store(body + S_CREATED, created_word(1, slots));
        let h = body + S_VALUES;
        init(&r, h + 2, 0);
        h
    }

    #[test]
    fn latest_wins_and_a_busy_slot_is_skipped() {
        let mem = heap_words(64);
        let r = Region::new(&mem);
        let h = series(&mem, 1);
        let mut out = Vec::new();
        read(&r, h, 2, &mut out);
        assert_eq!(out, vec![None]);
        record(&r, h, 2, false, 1.0, b"first", 10).unwrap();
        record(&r, h, 2, false, 2.0, b"second", 20).unwrap();
        read(&r, h, 2, &mut out);
        assert_eq!(out, vec![Some(Exemplar::new("second", 2.0, 20))]);
        // A writer in the middle of the slot: another skips, a reader leaves it out.
        let seq = r.word(slot_at(h + 2, 0) + X_SEQ);
        let s = seq.load(Relaxed);
        seq.store(s + 1, Relaxed);
        record(&r, h, 2, false, 3.0, b"third", 30).unwrap();
        read(&r, h, 2, &mut out);
        assert_eq!(out, vec![None]);
        seq.store(s, Relaxed);
        read(&r, h, 2, &mut out);
        assert_eq!(out, vec![Some(Exemplar::new("second", 2.0, 20))]);
        assert_eq!(
            record(&r, h, 2, false, 3.0, b"bad\x00", 30),
            Err(Refused::InvalidId)
        );
    }

    #[test]
    fn a_series_without_an_area_ignores_exemplars() {
        let mem = heap_words(64);
        let r = Region::new(&mem);
        let h = series(&mem, 0);
        record(&r, h, 2, false, 1.0, b"x", 1).unwrap();
        // Nothing was written after the values, even for a bad id.
        record(&r, h, 2, false, 1.0, b"\xff", 1).unwrap();
        assert!(r.words(h + 2, 20).iter().all(|w| w.load(Relaxed) == 0));
        let mut out = vec![None];
        read(&r, h, 2, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn exemplars_go_to_the_bucket_of_their_value() {
        let e = |id, v, ms| Some(Exemplar::new(id, v, ms));
        let read = [e("a", 0.05, 1), e("b", 0.2, 2), None, e("c", 0.1, 3)];
        let mut out = Vec::new();
        by_bucket(&read, &[0.1, 1.0], &mut out);
        // 0.05 and 0.1 are both in le=0.1: the later wins; 0.2 is in le=1.
        assert_eq!(out, vec![e("c", 0.1, 3), e("b", 0.2, 2), None]);
        by_bucket(&read, &[0.01], &mut out);
        assert_eq!(out, vec![None, e("c", 0.1, 3)]);
        by_bucket(&[None, None], &[0.01], &mut out);
        assert!(out.is_empty());
    }
}
