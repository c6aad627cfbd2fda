//! The zone layout: a fixed header, a hash index, an arena of records and, from the
//! other end, histogram chunks.
//!
//! ```text
//! word 0            header (HEADER_WORDS words: magic, sizes, bump pointers, lock,
//!                   counters, free lists)
//! FREE_AT           free lists: head and tail of each (series blocks by size, chunks)
//! EPOCHS_AT         the epoch table (see `super::epoch`)
//! index_at          hash index: 2^bits bucket heads (record offsets)
//! arena_at          records, back to back, in creation order (series blocks are reused)
//!   ...             never written yet (zero)
//! chunks_at         histogram chunks, made downwards from the end of the zone
//! ```
//! A record starts with one word `kind | state << 8 | size_words << 32`. Keyed records
//! (families, series) follow it with `next` (hash chain), `hash`,
//! `owner | key_len << 32 | body_words << 52`, the body, then the key bytes; blobs
//! (help texts, label names, bucket lists) with `len` and bytes. The body comes first
//! so that it sits at the same place in a block whatever the key's length: a reused
//! series block keeps its first body word (the layer above keeps a generation there,
//! which stale handles are checked against).
//!
//! Series can be deleted: a deleted series' block goes on a free list for its size and
//! is reused, whole, by a later series of that size or up to a quarter smaller, never
//! split or merged, so the arena stays a walkable sequence of blocks and a block's
//! body never moves. A histogram's chunks go on a free list for their size. Nothing
//! freed is reused before every process that could still be using it has moved on
//! (see [`super::epoch`]): a process that checked a handle just before the delete
//! finishes its update into the old block, never into the next series, however long
//! it is stopped in between.
//! Chunks (a histogram's counts for one range of values, made on first use) are bare
//! zeroed words at the other end of the zone, found only through the word of their
//! series that holds their offset: renders walk the records, and with the chunks kept
//! apart that walk stays over densely packed records.
//!
//! Records are made under the zone lock and published in two release stores: first
//! linked into their hash chain (now findable), then marked live (now rendered). Readers
//! never lock: lookups walk chains, renders walk the arena up to the bump pointer. A
//! record is never moved; families and blobs are never freed.

use super::epoch::{self, Epochs};
use super::lock::{Guard, Liveness, ZoneLock};
use super::region::{pack, words_for, Offset, Region};
use std::sync::atomic::Ordering::*;

const MAGIC: u64 = u64::from_le_bytes(*b"NGXPROM\0");
/// Bump when the layout changes: a zone kept across `nginx -s reload` from an older
/// module build is then re-created instead of misread.
const LAYOUT_VERSION: u64 = 9;

// Header words.
const H_MAGIC: Offset = 0;
const H_LAYOUT: Offset = 1;
const H_WORDS: Offset = 2;
const H_BUMP: Offset = 3;
const H_LOCK: Offset = 4;
const H_LAST: Offset = 5;
const H_BUCKET_BITS: Offset = 6;
const H_ARENA_AT: Offset = 7;
const H_FAMILIES: Offset = 8;
const H_SERIES: Offset = 9;
const H_TAKEOVERS: Offset = 10;
const H_CREATED: Offset = 11;
/// Lowest word of the chunk area (the zone's end while there is none).
const H_CHUNKS_AT: Offset = 12;
/// The series record whose delete is in progress (0: none), for a lock takeover.
const H_DELETING: Offset = 13;
/// Where the next sweep starts (a record's offset; 0: the arena's start).
const H_SWEEP_AT: Offset = 14;
/// Words on the free lists (series blocks and chunks, reusable or waiting).
const H_FREE_WORDS: Offset = 15;
const H_ERRORS: Offset = 16;
pub const ERROR_SLOTS: usize = 16;
/// Free lists, two words each (head, tail: first in, first out, so that the oldest
/// block, the first whose epoch every participant has passed, is at the head).
const FREE_AT: Offset = 32;
/// Series blocks of each size below 128 words have a list of their own...
const EXACT_LISTS: usize = 128;
/// ...larger ones one per power of two: [128 * 2^k, 128 * 2^(k+1)) words.
const RANGE_LISTS: usize = 16;
/// Chunks: one list per size (2^k words).
const CHUNK_LISTS: usize = 20;
const LISTS: usize = EXACT_LISTS + RANGE_LISTS + CHUNK_LISTS;
const EPOCHS_AT: Offset = FREE_AT + 2 * LISTS as Offset;
pub const HEADER_WORDS: Offset = EPOCHS_AT + epoch::WORDS as Offset;

/// Smallest zone that can hold the header, a minimal index and a few records.
pub const MIN_ZONE_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Family = 1,
    Series = 2,
    Blob = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum State {
    Writing = 0,
    Live = 1,
    Abandoned = 2,
    /// A deleted series' block, on a free list (or leaked by a process that died while
    /// freeing it).
    Free = 3,
}

// Keyed record words, relative to the record. A free block keeps its free-list link
// in R_NEXT and the epoch it was freed in in R_HASH.
const R_NEXT: Offset = 1;
const R_HASH: Offset = 2;
const R_OWNER: Offset = 3;
const R_BODY: Offset = 4;
// R_OWNER's fields.
const KEY_LEN_BITS: u32 = 20;
const MAX_BODY_WORDS: usize = (1 << (64 - 32 - KEY_LEN_BITS)) - 1;
// A free chunk's words.
const C_NEXT: Offset = 0;
const C_FREED: Offset = 1;
/// Longest hash chain a lock-free lookup follows: chains are short, but a chain
/// walked while its records are freed and reused can lead into others.
const MAX_CHAIN_STEPS: usize = 1 << 16;
// Blob words.
const B_LEN: Offset = 1;
const B_DATA: Offset = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum AttachError {
    TooSmall { bytes: usize },
    NotFormatted,
    OtherLayout { found: u64 },
    SizeMismatch { header: u64, actual: usize },
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachError::TooSmall { bytes } => {
                write!(
                    f,
                    "zone of {bytes} bytes is smaller than the minimum {MIN_ZONE_BYTES}"
                )
            }
            AttachError::NotFormatted => f.write_str("zone is not formatted"),
            AttachError::OtherLayout { found } => {
                write!(
                    f,
                    "zone has layout {found}, this build uses {LAYOUT_VERSION}"
                )
            }
            AttachError::SizeMismatch { header, actual } => {
                write!(f, "zone header says {header} words, mapping has {actual}")
            }
        }
    }
}

/// The zone has no room for the record.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct Full;

#[derive(Clone, Copy)]
pub struct Arena<'a> {
    r: Region<'a>,
    bucket_mask: u64,
    arena_at: Offset,
}

/// FNV-1a over the owner and the key: lookups happen off the hot path (once per label
/// set and worker), so a simple, dependency-free hash is enough.
pub fn hash_key(owner: Offset, key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.to_le_bytes().iter().chain(key) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl<'a> Arena<'a> {
    /// Writes an empty layout over `r`, which must be zeroed.
    pub fn format(r: Region<'a>, now_unix: u64) -> Result<Arena<'a>, AttachError> {
        let words = r.len();
        if words * 8 < MIN_ZONE_BYTES {
            return Err(AttachError::TooSmall { bytes: words * 8 });
        }
        // About one bucket per 64 words of zone (the size of a small series record), as
        // a power of two: chains stay short until the zone is nearly full.
        let bits = ((words / 64).max(64) as u64).ilog2();
        let arena_at = HEADER_WORDS as u64 + (1u64 << bits);
        if arena_at as usize + 64 > words {
            return Err(AttachError::TooSmall { bytes: words * 8 });
        }
        r.store(H_LAYOUT, LAYOUT_VERSION);
        r.store(H_WORDS, words as u64);
        r.store(H_BUCKET_BITS, u64::from(bits));
        r.store(H_ARENA_AT, arena_at);
        r.store(H_CREATED, now_unix);
        r.store(H_CHUNKS_AT, words as u64);
        r.word(H_BUMP).store(arena_at, Relaxed);
        // The magic goes last, with release: a zone with the magic is fully formatted.
        r.word(H_MAGIC).store(MAGIC, Release);
        Self::attach(r)
    }

    /// The size in bytes of the zone whose first `MIN_ZONE_BYTES` are `head`, as its
    /// header says; `None` when that is below the minimum. What a process that has only
    /// the zone's address reads to map the whole zone before it attaches (which checks
    /// the size again).
    pub fn zone_bytes(head: &Region<'_>) -> Option<usize> {
        let bytes = (head.load(H_WORDS) as usize).checked_mul(8)?;
        (bytes >= MIN_ZONE_BYTES).then_some(bytes)
    }

    /// Reads the layout of a zone formatted before (possibly by an earlier cycle).
    pub fn attach(r: Region<'a>) -> Result<Arena<'a>, AttachError> {
        if r.len() * 8 < MIN_ZONE_BYTES {
            return Err(AttachError::TooSmall { bytes: r.len() * 8 });
        }
        if r.word(H_MAGIC).load(Acquire) != MAGIC {
            return Err(AttachError::NotFormatted);
        }
        let layout = r.load(H_LAYOUT);
        if layout != LAYOUT_VERSION {
            return Err(AttachError::OtherLayout { found: layout });
        }
        let header = r.load(H_WORDS);
        if header != r.len() as u64 {
            return Err(AttachError::SizeMismatch {
                header,
                actual: r.len(),
            });
        }
        Ok(Arena {
            r,
            bucket_mask: (1u64 << r.load(H_BUCKET_BITS)) - 1,
            arena_at: r.load(H_ARENA_AT) as Offset,
        })
    }

    pub fn region(&self) -> Region<'a> {
        self.r
    }

    pub fn capacity_bytes(&self) -> u64 {
        self.r.len() as u64 * 8
    }

    /// Bytes taken by the header, the index, every record and every chunk made so far.
    pub fn used_bytes(&self) -> u64 {
        let chunks = self.r.len() as u64 - self.r.load(H_CHUNKS_AT);
        (self.r.word(H_BUMP).load(Acquire) + chunks) * 8
    }

    pub fn created_unix(&self) -> u64 {
        self.r.load(H_CREATED)
    }

    /// The zone's epoch table: which freed memory may be reused.
    pub fn epochs(&self) -> Epochs<'a> {
        Epochs::new(self.r, EPOCHS_AT)
    }

    pub fn lock_takeovers(&self) -> u64 {
        self.r.load(H_TAKEOVERS)
    }

    pub fn count_error(&self, slot: usize) {
        debug_assert!(slot < ERROR_SLOTS);
        self.r.word(H_ERRORS + slot as Offset).fetch_add(1, Relaxed);
    }

    pub fn errors(&self, slot: usize) -> u64 {
        self.r.load(H_ERRORS + slot as Offset)
    }

    pub fn families(&self) -> u64 {
        self.r.load(H_FAMILIES)
    }

    pub fn series(&self) -> u64 {
        self.r.load(H_SERIES)
    }

    /// Takes the zone lock, first repairing what a dead owner left behind.
    pub fn lock(&self, me: u32, alive: Liveness<'_>) -> Guard<'a> {
        let guard = ZoneLock::new(self.r.word(H_LOCK)).acquire(me, alive);
        if guard.taken_over_from.is_some() {
            self.r.word(H_TAKEOVERS).fetch_add(1, Relaxed);
            self.recover(&guard);
        }
        guard
    }

    /// Finishes or abandons the last record, the only one a dead lock owner can have
    /// left half-made (records are only made under the lock, one at a time), and puts
    /// right the free list it may have been changing.
    fn recover(&self, held: &Guard<'_>) {
        self.repair_free_lists(held);
        let last = self.r.load(H_LAST) as Offset;
        if last == 0 {
            return;
        }
        let (kind, state, _) = self.header(last);
        if state != State::Writing as u8 {
            return;
        }
        let reachable = match kind {
            k if k == Kind::Family as u8 || k == Kind::Series as u8 => {
                let mut at = self.bucket_head(self.r.load(last + R_HASH));
                while at != 0 && at != last {
                    at = self.r.load(at + R_NEXT) as Offset;
                }
                at == last
            }
            _ => false,
        };
        if reachable {
            // Linked means fully written: finish the publication.
            self.set_state(last, State::Live);
            self.count_created(kind);
        } else if kind == Kind::Series as u8 {
            // Its block is as good as any free one (the layer above keeps a generation
            // in the first body word whatever state it finds it in).
            self.release(held, last, true);
        } else {
            self.set_state(last, State::Abandoned);
        }
    }

    /// Makes every free list's tail its last block again, and the free words their
    /// sum, after a lock owner died changing them (each push and pop is a few stores):
    /// a head cleared while the tail still named the taken block would make every later
    /// free of that size go after it, unreachable, never reused; a block linked and
    /// not yet the tail would be cut off by the next push. A walk over the lists (only
    /// after a takeover); a list that does not end (it cannot, but for a bug) is left
    /// as it is.
    fn repair_free_lists(&self, _held: &Guard<'_>) {
        let mut steps = self.r.len();
        let mut words = 0;
        for list in 0..LISTS {
            let link = if list < EXACT_LISTS + RANGE_LISTS {
                R_NEXT
            } else {
                C_NEXT
            };
            let (head, tail) = (
                FREE_AT + 2 * list as Offset,
                FREE_AT + 2 * list as Offset + 1,
            );
            let (mut last, mut at) = (0, self.r.load(head) as Offset);
            while at != 0 && steps > 0 {
                words += self.free_words(list, at);
                last = at;
                at = self.r.load(at + link) as Offset;
                steps -= 1;
            }
            if at != 0 {
                return;
            }
            self.r.store(tail, u64::from(last));
        }
        self.r.store(H_FREE_WORDS, words);
    }

    /// The series record whose delete a process started and may not have finished
    /// (0: none).
    pub fn deleting(&self) -> Offset {
        self.r.load(H_DELETING) as Offset
    }

    pub fn set_deleting(&self, _held: &Guard<'_>, rec: Offset) {
        self.r.store(H_DELETING, u64::from(rec));
    }

    /// Whether `rec` (an offset that came from outside, e.g. Lua) starts a live record
    /// of `kind`. Checks bounds and the record header; O(1).
    pub fn is_live(&self, rec: u64, kind: Kind) -> bool {
        let end = self.r.word(H_BUMP).load(Acquire);
        if rec < u64::from(self.arena_at) || rec >= end {
            return false;
        }
        let (k, state, size) = self.header(rec as Offset);
        k == kind as u8 && state == State::Live as u8 && size > 0 && rec + u64::from(size) <= end
    }

    /// Whether `rec` is a live record (made, published, not deleted).
    pub fn is_published(&self, rec: Offset) -> bool {
        self.header(rec).1 == State::Live as u8
    }

    fn header(&self, rec: Offset) -> (u8, u8, u32) {
        let h = self.r.word(rec).load(Acquire);
        (h as u8, (h >> 8) as u8, (h >> 32) as u32)
    }

    fn set_state(&self, rec: Offset, state: State) {
        let h = self.r.load(rec);
        self.r
            .word(rec)
            .store((h & !0xff00) | (state as u64) << 8, Release);
    }

    fn count_created(&self, kind: u8) {
        if kind == Kind::Family as u8 {
            self.r.word(H_FAMILIES).fetch_add(1, Relaxed);
        } else if kind == Kind::Series as u8 {
            self.r.word(H_SERIES).fetch_add(1, Relaxed);
        }
    }

    /// Sets the zone's series count (after a takeover, from a walk over the arena).
    pub fn set_series_count(&self, _held: &Guard<'_>, n: u64) {
        self.r.store(H_SERIES, n);
    }

    /// The free list for series blocks of `words` words.
    fn block_list(words: usize) -> usize {
        if words < EXACT_LISTS {
            words
        } else {
            EXACT_LISTS + ((words / EXACT_LISTS).ilog2() as usize).min(RANGE_LISTS - 1)
        }
    }

    /// The free list for chunks of `words` (a power of two) words.
    fn chunk_list(words: usize) -> usize {
        EXACT_LISTS + RANGE_LISTS + (words.ilog2() as usize).min(CHUNK_LISTS - 1)
    }

    /// Words of the block or chunk `at` on free list `list`.
    fn free_words(&self, list: usize, at: Offset) -> u64 {
        if list < EXACT_LISTS + RANGE_LISTS {
            u64::from(self.header(at).2)
        } else {
            1 << (list - EXACT_LISTS - RANGE_LISTS)
        }
    }

    /// Bytes on the free lists: freed, reusable or waiting.
    pub fn free_bytes(&self) -> u64 {
        self.r.load(H_FREE_WORDS) * 8
    }

    /// Appends `at` to free list `list`, stamped with the epoch it is freed in; `link`
    /// and `freed` are the words of the block that hold the link and the stamp.
    fn push_free(&self, held: &Guard<'_>, list: usize, at: Offset, link: Offset, freed: Offset) {
        self.r.store(
            H_FREE_WORDS,
            self.r.load(H_FREE_WORDS) + self.free_words(list, at),
        );
        let (head, tail) = (
            FREE_AT + 2 * list as Offset,
            FREE_AT + 2 * list as Offset + 1,
        );
        self.r.store(at + link, 0);
        self.r.store(at + freed, self.epochs().stamp_free(held));
        match self.r.load(tail) as Offset {
            0 => self.r.store(head, u64::from(at)),
            last => self.r.store(last + link, u64::from(at)),
        }
        self.r.store(tail, u64::from(at));
    }

    /// Takes the head of free list `list` if every participant has passed the epoch it
    /// was freed in (`oldest`, asked only when there is a head) and it `fits`.
    fn pop_free(
        &self,
        list: usize,
        link: Offset,
        freed: Offset,
        oldest: &mut Oldest<'_, '_>,
        fits: impl Fn(Offset) -> bool,
    ) -> Option<Offset> {
        let (head, tail) = (
            FREE_AT + 2 * list as Offset,
            FREE_AT + 2 * list as Offset + 1,
        );
        let at = self.r.load(head) as Offset;
        if at == 0 || self.r.load(at + freed) >= oldest.get(self) || !fits(at) {
            return None;
        }
        let next = self.r.load(at + link);
        self.r.store(
            H_FREE_WORDS,
            self.r.load(H_FREE_WORDS) - self.free_words(list, at),
        );
        self.r.store(head, next);
        if next == 0 {
            #[cfg(feature = "debug-hooks")]
            super::faults::reached(super::faults::KillPoint::PopLast);
            self.r.store(tail, 0);
        }
        Some(at)
    }

    /// A freed series block of at least `words` words that may be reused now: one of
    /// that size, else up to a quarter bigger.
    fn reusable_block(&self, words: usize, oldest: &mut Oldest<'_, '_>) -> Option<Offset> {
        let size = |at: Offset| self.header(at).2 as usize;
        let largest = words + words / 4;
        for w in words..=largest.min(EXACT_LISTS - 1) {
            if let Some(at) = self.pop_free(w, R_NEXT, R_HASH, oldest, |_| true) {
                return Some(at);
            }
        }
        if largest >= EXACT_LISTS {
            let first = Self::block_list(words.max(EXACT_LISTS));
            for list in first..=Self::block_list(largest) {
                let fits = |at| (words..=largest).contains(&size(at));
                if let Some(at) = self.pop_free(list, R_NEXT, R_HASH, oldest, fits) {
                    return Some(at);
                }
            }
        }
        None
    }

    /// Marks series record `rec` free and, if `reuse`, puts its block on the free list
    /// for its size (else it is retired: never reused). Its first body word (the
    /// generation) is kept; the caller has unlinked it.
    pub fn release(&self, held: &Guard<'_>, rec: Offset, reuse: bool) {
        let (_, state, size) = self.header(rec);
        if state == State::Free as u8 {
            return;
        }
        if state == State::Live as u8 {
            self.r.word(H_SERIES).fetch_sub(1, Relaxed);
        }
        // Free before listed: a process dying in between leaks the block, never lists
        // it twice.
        self.set_state(rec, State::Free);
        if reuse {
            self.push_free(held, Self::block_list(size as usize), rec, R_NEXT, R_HASH);
        }
    }

    /// Removes keyed record `rec` from its hash chain; false if it was not in it.
    pub fn unlink(&self, _held: &Guard<'_>, rec: Offset) -> bool {
        let bucket = HEADER_WORDS + (self.r.load(rec + R_HASH) & self.bucket_mask) as Offset;
        let next = self.r.load(rec + R_NEXT);
        let mut link = bucket;
        loop {
            let at = self.r.load(link) as Offset;
            if at == 0 {
                return false;
            }
            if at == rec {
                // Readers on `rec` go on to `next`: the chain stays whole for them.
                self.r.word(link).store(next, Release);
                return true;
            }
            link = at + R_NEXT;
        }
    }

    /// Puts the chunk of `words` words at `at` on the free list for its size.
    pub fn release_chunk(&self, held: &Guard<'_>, at: Offset, words: usize) {
        self.push_free(held, Self::chunk_list(words), at, C_NEXT, C_FREED);
    }

    /// Bytes freed and not reusable yet: a participant has not passed the epoch they
    /// were freed in (a stopped worker, a render in flight), or the table is
    /// unprotected. Walks the free lists, under the lock, and records the count for
    /// [`Epochs::waiting`].
    pub fn count_waiting(&self, held: &Guard<'_>, alive: Liveness<'_>) -> u64 {
        let oldest = self.epochs().oldest(held, alive);
        let mut bytes = 0;
        // Every participant has passed every free (the usual case): no walk.
        let lists = if oldest >= self.epochs().epoch() {
            0
        } else {
            LISTS
        };
        for list in 0..lists {
            let (link, freed) = if list < EXACT_LISTS + RANGE_LISTS {
                (R_NEXT, R_HASH)
            } else {
                (C_NEXT, C_FREED)
            };
            let mut at = self.r.load(FREE_AT + 2 * list as Offset) as Offset;
            while at != 0 {
                if self.r.load(at + freed) >= oldest {
                    bytes += 8 * self.free_words(list, at);
                }
                at = self.r.load(at + link) as Offset;
            }
        }
        self.epochs().set_waiting(held, bytes);
        bytes
    }

    fn bucket_head(&self, hash: u64) -> Offset {
        self.r
            .word(HEADER_WORDS + (hash & self.bucket_mask) as Offset)
            .load(Acquire) as Offset
    }

    /// Reserves `words` words for a new record and writes its first word. The bump
    /// pointer moves only after that word is written, so a render walking up to the bump
    /// pointer always finds a valid size.
    fn alloc(
        &self,
        _held: &Guard<'_>,
        kind: Kind,
        words: usize,
        use_reserve: bool,
    ) -> Result<Offset, Full> {
        let at = self.r.word(H_BUMP).load(Relaxed);
        let end = at + words as u64;
        let limit = self.r.load(H_CHUNKS_AT) - if use_reserve { 0 } else { self.reserve() };
        if end > limit || words > u32::MAX as usize {
            return Err(Full);
        }
        let at = at as Offset;
        self.r.store(
            at,
            kind as u64 | (State::Writing as u64) << 8 | (words as u64) << 32,
        );
        self.r.store(H_LAST, u64::from(at));
        self.r.word(H_BUMP).store(end, Release);
        Ok(at)
    }

    /// Finds a live or in-publication keyed record. Lock-free, so the answer may be
    /// out of date by the time it is used: a series may be deleted at any time (the
    /// layer above checks its generation), and a lookup that runs into records being
    /// freed may miss (then the caller looks again under the lock).
    pub fn lookup(&self, owner: Offset, key: &[u8]) -> Option<Offset> {
        let hash = hash_key(owner, key);
        let packed = pack(key);
        let want_owner = u64::from(owner) | (key.len() as u64) << 32;
        let owner_mask = (1u64 << (32 + KEY_LEN_BITS)) - 1;
        let mut at = self.bucket_head(hash);
        let end = self.r.len() as u64;
        for _ in 0..MAX_CHAIN_STEPS {
            if at == 0 || u64::from(at) + u64::from(R_BODY) >= end {
                return None;
            }
            let owner_word = self.r.load(at + R_OWNER);
            let key_at = u64::from(at) + u64::from(R_BODY) + (owner_word >> (32 + KEY_LEN_BITS));
            let state = self.header(at).1;
            if self.r.load(at + R_HASH) == hash
                && owner_word & owner_mask == want_owner
                && key_at + packed.len() as u64 <= end
                && self.r.words_eq(key_at as Offset, &packed)
                && (state == State::Live as u8 || state == State::Writing as u8)
            {
                return Some(at);
            }
            at = self.r.word(at + R_NEXT).load(Acquire) as Offset;
        }
        None
    }

    /// Words at the end of the free middle that only [`make_keyed`](Self::make_keyed)
    /// with `use_reserve` may take: room for a family's overflow series once the zone
    /// is otherwise full (1/64 of the zone, at most 64 KB).
    fn reserve(&self) -> u64 {
        (self.r.len() as u64 / 64).min(8192)
    }

    /// Makes a keyed record with a body of `body_words` words followed by the key, not
    /// yet published. Returns the record and the offset of its body. A series may get
    /// the block of a deleted one (once every participant has passed its free, see
    /// [`super::epoch`]; `alive` tells which participants still run):
    /// its body is zeroed but for its first word, which keeps what the deleted series
    /// left there; a new block's body is all zero.
    // One argument per fact the caller knows; a struct for them would only be built
    // to be taken apart again here.
    #[allow(clippy::too_many_arguments)]
    pub fn make_keyed(
        &self,
        held: &Guard<'_>,
        kind: Kind,
        owner: Offset,
        key: &[u8],
        body_words: usize,
        alive: Liveness<'_>,
        use_reserve: bool,
    ) -> Result<(Offset, Offset), Full> {
        if key.len() >= 1 << KEY_LEN_BITS || body_words > MAX_BODY_WORDS {
            return Err(Full);
        }
        let words = R_BODY as usize + body_words + words_for(key.len());
        let reused = match kind {
            Kind::Series => self.reusable_block(words, &mut Oldest::new(held, alive)),
            _ => None,
        };
        let rec = match reused {
            Some(rec) => {
                let size = self.header(rec).2;
                self.r.store(
                    rec,
                    kind as u64 | (State::Writing as u64) << 8 | u64::from(size) << 32,
                );
                self.r.store(H_LAST, u64::from(rec));
                for w in (R_BODY + 1)..size {
                    self.r.store(rec + w, 0);
                }
                rec
            }
            None => self.alloc(held, kind, words, use_reserve)?,
        };
        self.r.store(rec + R_NEXT, 0);
        self.r.store(rec + R_HASH, hash_key(owner, key));
        self.r.store(
            rec + R_OWNER,
            u64::from(owner)
                | (key.len() as u64) << 32
                | (body_words as u64) << (32 + KEY_LEN_BITS),
        );
        self.r.write_bytes(rec + R_BODY + body_words as Offset, key);
        Ok((rec, rec + R_BODY))
    }

    /// Publishes a keyed record made by [`make_keyed`](Self::make_keyed): findable, then live.
    pub fn publish(&self, _held: &Guard<'_>, rec: Offset) {
        let bucket = HEADER_WORDS + (self.r.load(rec + R_HASH) & self.bucket_mask) as Offset;
        let head = self.r.load(bucket);
        self.r.store(rec + R_NEXT, head);
        self.r.word(bucket).store(u64::from(rec), Release);
        self.set_state(rec, State::Live);
        self.count_created(self.header(rec).0);
    }

    /// Stores an immutable byte string, live at once (nothing refers to it yet).
    pub fn make_blob(&self, held: &Guard<'_>, bytes: &[u8]) -> Result<Offset, Full> {
        let rec = self.alloc(
            held,
            Kind::Blob,
            B_DATA as usize + words_for(bytes.len()),
            false,
        )?;
        self.r.store(rec + B_LEN, bytes.len() as u64);
        self.r.write_bytes(rec + B_DATA, bytes);
        self.set_state(rec, State::Live);
        Ok(rec)
    }

    /// The chunk of `words` zeroed words whose offset the word at `pointer` holds, made
    /// and published there if it holds none yet (a freed one of that size reused, else
    /// a new one). Under the lock, so that processes that miss at once make one chunk
    /// between them.
    pub fn chunk(
        &self,
        held: &Guard<'_>,
        pointer: Offset,
        words: usize,
        alive: Liveness<'_>,
    ) -> Result<Offset, Full> {
        let made = self.r.word(pointer).load(Acquire) as Offset;
        if made != 0 {
            return Ok(made);
        }
        let list = Self::chunk_list(words);
        let mut oldest = Oldest::new(held, alive);
        if let Some(at) = self.pop_free(list, C_NEXT, C_FREED, &mut oldest, |_| true) {
            for w in 0..words as Offset {
                self.r.store(at + w, 0);
            }
            self.r.word(pointer).store(u64::from(at), Release);
            return Ok(at);
        }
        let low = self.r.load(H_CHUNKS_AT);
        let records_end = self.r.word(H_BUMP).load(Relaxed);
        if low < records_end + words as u64 + self.reserve() {
            return Err(Full);
        }
        let at = (low - words as u64) as Offset;
        // Words between the records and the chunks were never written (the zone starts
        // zeroed and both ends only move towards each other): the counts start at zero.
        debug_assert!((0..words as Offset).all(|i| self.r.load(at + i) == 0));
        self.r.store(H_CHUNKS_AT, u64::from(at));
        // A process that dies between these two stores leaks the chunk, nothing more.
        self.r.word(pointer).store(u64::from(at), Release);
        Ok(at)
    }

    pub fn read_blob(&self, rec: Offset, out: &mut Vec<u8>) {
        if rec == 0 {
            return;
        }
        let len = self.r.load(rec + B_LEN) as usize;
        self.r.read_bytes(rec + B_DATA, len, out);
    }

    /// A keyed record's owner (for series: their family's record).
    pub fn owner(&self, rec: Offset) -> Offset {
        self.r.load(rec + R_OWNER) as Offset
    }

    pub fn key_len(&self, rec: Offset) -> usize {
        ((self.r.load(rec + R_OWNER) >> 32) & ((1 << KEY_LEN_BITS) - 1)) as usize
    }

    /// Whether keyed record `rec` has this owner and key.
    pub fn key_is(&self, rec: Offset, owner: Offset, key: &[u8]) -> bool {
        let owner_word = self.r.load(rec + R_OWNER);
        let want = u64::from(owner) | (key.len() as u64) << 32;
        let key_at = u64::from(rec) + u64::from(R_BODY) + (owner_word >> (32 + KEY_LEN_BITS));
        let packed = pack(key);
        owner_word & ((1u64 << (32 + KEY_LEN_BITS)) - 1) == want
            && key_at + packed.len() as u64 <= self.r.len() as u64
            && self.r.words_eq(key_at as Offset, &packed)
    }

    pub fn read_key(&self, rec: Offset, out: &mut Vec<u8>) {
        let body_words = (self.r.load(rec + R_OWNER) >> (32 + KEY_LEN_BITS)) as Offset;
        self.r
            .read_bytes(rec + R_BODY + body_words, self.key_len(rec), out);
    }

    /// The keyed record whose body starts at `body`.
    pub fn record_of_body(&self, body: Offset) -> Offset {
        body - R_BODY
    }

    /// A keyed record's body: the same word for every record, whatever its key.
    pub fn body(&self, rec: Offset) -> Offset {
        rec + R_BODY
    }

    /// Live records of `kind`, in creation order.
    pub fn live(&self, kind: Kind) -> impl Iterator<Item = Offset> + 'a {
        self.live_any()
            .filter(move |(k, _)| *k == kind as u8)
            .map(|(_, rec)| rec)
    }

    /// Up to `budget` records (the live ones are returned, with their kind) from the
    /// sweep's cursor on, and moves the cursor past them; at the end of the arena the
    /// cursor goes back to its start, for the next batch. Lock-free: a record start
    /// stays a record start (blocks are never split or merged).
    pub fn sweep_batch(&self, budget: usize) -> Vec<(u8, Offset)> {
        let end = self.r.word(H_BUMP).load(Acquire);
        let mut at = self.r.load(H_SWEEP_AT);
        if at < u64::from(self.arena_at) || at >= end {
            at = u64::from(self.arena_at);
        }
        let mut out = Vec::new();
        for _ in 0..budget {
            if at >= end {
                break;
            }
            let h = self.r.word(at as Offset).load(Acquire);
            let size = h >> 32;
            if size == 0 {
                // Cannot happen with a healthy zone; start over rather than spin.
                at = end;
                break;
            }
            if (h >> 8) as u8 == State::Live as u8 {
                out.push((h as u8, at as Offset));
            }
            at += size;
        }
        let next = if at >= end { 0 } else { at };
        self.r.word(H_SWEEP_AT).store(next, Relaxed);
        out
    }

    /// Every live record with its kind, in creation order: one pass over the arena.
    pub fn live_any(&self) -> impl Iterator<Item = (u8, Offset)> + 'a {
        let r = self.r;
        let end = r.word(H_BUMP).load(Acquire);
        let mut at = u64::from(self.arena_at);
        std::iter::from_fn(move || {
            while at < end {
                let rec = at as Offset;
                let h = r.word(rec).load(Acquire);
                let size = h >> 32;
                if size == 0 {
                    // Cannot happen with a healthy zone; stop rather than spin.
                    at = end;
                    return None;
                }
                at += size;
                if (h >> 8) as u8 == State::Live as u8 {
                    return Some((h as u8, rec));
                }
            }
            None
        })
    }
}

/// The oldest epoch a participant may be in, asked of the epoch table once, when a
/// free list first has a candidate (a walk over its slots).
struct Oldest<'g, 'l> {
    held: &'g Guard<'g>,
    alive: Liveness<'l>,
    known: Option<u64>,
}

impl<'g, 'l> Oldest<'g, 'l> {
    fn new(held: &'g Guard<'g>, alive: Liveness<'l>) -> Self {
        Oldest {
            held,
            alive,
            known: None,
        }
    }

    fn get(&mut self, arena: &Arena<'_>) -> u64 {
        *self
            .known
            .get_or_insert_with(|| arena.epochs().oldest(self.held, self.alive))
    }
}

/// Where blob `rec`'s bytes start and how many there are, for a reader without an
/// [`Arena`] (the hot path); `None` for no blob or one that does not fit the region.
pub fn blob_data(r: &Region<'_>, rec: Offset) -> Option<(Offset, usize)> {
    if rec == 0 {
        return None;
    }
    let len = r.get(u64::from(rec) + u64::from(B_LEN))?.load(Relaxed) as usize;
    let data = u64::from(rec) + u64::from(B_DATA);
    let end = data.checked_add(words_for(len) as u64)?;
    (end <= r.len() as u64).then_some((data as Offset, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::region::heap_words;

    const ALIVE: Liveness<'static> = &|_| true;

    fn zone(words: usize) -> Vec<std::sync::atomic::AtomicU64> {
        heap_words(words)
    }

    #[test]
    fn the_header_tells_the_zone_size_from_its_first_bytes() {
        let mem = zone(MIN_ZONE_BYTES / 4);
        let head = Region::new(&mem[..MIN_ZONE_BYTES / 8]);
        assert_eq!(Arena::zone_bytes(&head), None);
        Arena::format(Region::new(&mem), 0).unwrap();
        assert_eq!(Arena::zone_bytes(&head), Some(2 * MIN_ZONE_BYTES));
    }

    #[test]
    fn format_then_attach() {
        let mem = zone(MIN_ZONE_BYTES / 4);
        let a = Arena::format(Region::new(&mem), 1234).unwrap();
        assert_eq!(a.capacity_bytes(), 2 * MIN_ZONE_BYTES as u64);
        assert!(a.used_bytes() > 0 && a.used_bytes() < a.capacity_bytes());
        let b = Arena::attach(Region::new(&mem)).unwrap();
        assert_eq!(b.created_unix(), 1234);
        assert_eq!(
            Arena::attach(Region::new(&mem[..mem.len() - 8]))
                .err()
                .unwrap(),
            AttachError::SizeMismatch {
                header: mem.len() as u64,
                actual: mem.len() - 8
            }
        );
    }

    #[test]
    fn refuses_small_and_unformatted_zones() {
        let small = zone(100);
        assert!(matches!(
            Arena::format(Region::new(&small), 0),
            Err(AttachError::TooSmall { .. })
        ));
        let blank = zone(MIN_ZONE_BYTES / 8);
        assert_eq!(
            Arena::attach(Region::new(&blank)).err(),
            Some(AttachError::NotFormatted)
        );
    }

    #[test]
    fn keyed_records_are_found_only_once_published() {
        let mem = zone(MIN_ZONE_BYTES / 8);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        let g = a.lock(1, &|_| true);
        let (rec, body) = a
            .make_keyed(&g, Kind::Series, 99, b"label\0value", 3, ALIVE, false)
            .unwrap();
        assert_eq!(a.body(rec), body);
        assert_eq!(a.lookup(99, b"label\0value"), None);
        assert_eq!(a.live(Kind::Series).count(), 0);
        a.publish(&g, rec);
        assert_eq!(a.lookup(99, b"label\0value"), Some(rec));
        assert_eq!(a.lookup(98, b"label\0value"), None);
        assert_eq!(a.lookup(99, b"label\0valuf"), None);
        assert_eq!(a.live(Kind::Series).collect::<Vec<_>>(), vec![rec]);
        let mut key = Vec::new();
        a.read_key(rec, &mut key);
        assert_eq!(key, b"label\0value");
        assert_eq!(a.owner(rec), 99);
        assert_eq!(a.series(), 1);
    }

    #[test]
    fn many_records_share_buckets_and_stay_findable() {
        let mem = zone(1 << 16);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        let g = a.lock(1, &|_| true);
        let recs: Vec<_> = (0..5000u32)
            .map(|i| {
                let (rec, _) = a
                    .make_keyed(&g, Kind::Series, 7, &i.to_le_bytes(), 1, ALIVE, false)
                    .unwrap();
                a.publish(&g, rec);
                rec
            })
            .collect();
        for (i, rec) in recs.iter().enumerate() {
            assert_eq!(a.lookup(7, &(i as u32).to_le_bytes()), Some(*rec));
        }
        assert_eq!(a.live(Kind::Series).collect::<Vec<_>>(), recs);
    }

    #[test]
    fn a_full_zone_refuses_and_keeps_what_it_has() {
        let mem = zone(MIN_ZONE_BYTES / 8);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        let g = a.lock(1, &|_| true);
        let mut made = 0u32;
        while let Ok((rec, _)) =
            a.make_keyed(&g, Kind::Series, 1, &made.to_le_bytes(), 30, ALIVE, false)
        {
            a.publish(&g, rec);
            made += 1;
        }
        assert_eq!(
            a.make_keyed(&g, Kind::Series, 1, b"one more", 30, ALIVE, false),
            Err(Full)
        );
        assert!(made > 100);
        assert!(a.used_bytes() <= a.capacity_bytes());
        assert!(a.make_blob(&g, b"x").is_ok() || a.used_bytes() + 24 > a.capacity_bytes());
        for i in 0..made {
            assert!(a.lookup(1, &i.to_le_bytes()).is_some());
        }
        assert_eq!(a.live(Kind::Series).count(), made as usize);
    }

    #[test]
    fn takeover_finishes_a_linked_record() {
        let mem = zone(MIN_ZONE_BYTES / 8);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        let rec = {
            let g = a.lock(41, &|_| true);
            let (rec, _) = a
                .make_keyed(&g, Kind::Series, 1, b"k", 1, ALIVE, false)
                .unwrap();
            // Link it like `publish` does, then "die" before marking it live.
            let bucket = HEADER_WORDS + (a.r.load(rec + R_HASH) & a.bucket_mask) as Offset;
            a.r.word(bucket).store(u64::from(rec), Release);
            std::mem::forget(g);
            rec
        };
        assert_eq!(a.live(Kind::Series).count(), 0);
        let g = a.lock(7, &|pid| pid != 41);
        assert_eq!(g.taken_over_from, Some(41));
        assert_eq!(a.live(Kind::Series).collect::<Vec<_>>(), vec![rec]);
        assert_eq!(a.lock_takeovers(), 1);
        assert_eq!(a.series(), 1);
    }

    #[test]
    fn takeover_abandons_an_unlinked_record() {
        let mem = zone(MIN_ZONE_BYTES / 8);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        {
            let g = a.lock(41, &|_| true);
            a.make_keyed(&g, Kind::Series, 1, b"k", 1, ALIVE, false)
                .unwrap();
            std::mem::forget(g);
        }
        let g = a.lock(7, &|pid| pid != 41);
        assert_eq!(a.lookup(1, b"k"), None);
        assert_eq!(a.live(Kind::Series).count(), 0);
        // The key can be made again, and the abandoned copy never shadows it.
        let (rec, _) = a
            .make_keyed(&g, Kind::Series, 1, b"k", 1, ALIVE, false)
            .unwrap();
        a.publish(&g, rec);
        assert_eq!(a.lookup(1, b"k"), Some(rec));
        assert_eq!(a.live(Kind::Series).collect::<Vec<_>>(), vec![rec]);
    }

    #[test]
    fn takeover_mends_a_free_list_cut_short() {
        let mem = zone(MIN_ZONE_BYTES / 8);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        let g = a.lock(41, ALIVE);
        let mut recs = vec![];
        for key in [b"a", b"b"] {
            let (rec, _) = a
                .make_keyed(&g, Kind::Series, 1, key, 1, ALIVE, false)
                .unwrap();
            a.publish(&g, rec);
            recs.push(rec);
        }
        let (b1, b2) = (recs[0], recs[1]);
        a.unlink(&g, b1);
        a.release(&g, b1, true);
        let list = Arena::block_list(a.header(b1).2 as usize);
        let (head, tail) = (
            FREE_AT + 2 * list as Offset,
            FREE_AT + 2 * list as Offset + 1,
        );
        // Its owner dies taking b1, the list's last block, off it: head cleared, tail
        // still b1, the free words already taken off.
        a.r.store(H_FREE_WORDS, 0);
        a.r.store(head, 0);
        std::mem::forget(g);
        let g = a.lock(7, &|pid| pid != 41);
        assert_eq!(a.r.load(tail), 0);
        // The next block freed is where a pop looks.
        a.unlink(&g, b2);
        a.release(&g, b2, true);
        assert_eq!(a.r.load(head), u64::from(b2));
        assert_eq!(a.r.load(tail), u64::from(b2));
        assert_eq!(a.free_bytes(), 8 * u64::from(a.header(b2).2));
    }

    #[test]
    fn chunks_are_made_once_from_the_end_and_meet_the_records() {
        let mem = zone(MIN_ZONE_BYTES / 8);
        let a = Arena::format(Region::new(&mem), 0).unwrap();
        let r = Region::new(&mem);
        let g = a.lock(1, &|_| true);
        let (rec, pointer) = a
            .make_keyed(&g, Kind::Series, 1, b"h", 2, ALIVE, false)
            .unwrap();
        a.publish(&g, rec);
        let used = a.used_bytes();
        let chunk = a.chunk(&g, pointer, 64, ALIVE).unwrap();
        assert_eq!(chunk as usize, mem.len() - 64);
        assert_eq!(r.load(pointer), u64::from(chunk));
        assert_eq!(a.used_bytes(), used + 64 * 8);
        // Asked again (another process that missed at the same time): the same chunk.
        assert_eq!(a.chunk(&g, pointer, 64, ALIVE), Ok(chunk));
        assert!((0..64).all(|i| r.load(chunk + i) == 0));
        // The next one goes below it; the walk over records never meets chunks.
        let below = a.chunk(&g, pointer + 1, 64, ALIVE).unwrap();
        assert_eq!(below, chunk - 64);
        assert_eq!(a.live(Kind::Series).collect::<Vec<_>>(), vec![rec]);
        // Records and chunks share the free middle: once records fill it, no chunk fits.
        let (_, other) = a
            .make_keyed(&g, Kind::Series, 1, b"x", 1, ALIVE, false)
            .unwrap();
        while a.make_blob(&g, &[0u8; 256]).is_ok() {}
        assert!(a.capacity_bytes() - a.used_bytes() < (34 + a.reserve()) * 8);
        assert_eq!(a.chunk(&g, other, 64, ALIVE), Err(Full));
        assert_eq!(r.load(other), 0);
    }
}
