//! A zone seen as a slice of 64-bit atomic words.
//!
//! Every byte of the zone is read and written through `AtomicU64`, so the rest of the
//! crate needs no `unsafe` to touch shared memory and plain `cargo test` can run the
//! whole store over a `Vec<AtomicU64>`. Offsets are word indices (`u32`): they stay
//! valid whatever address a process maps the zone at.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Word offset inside a region. Zero is never a valid record or series offset.
pub type Offset = u32;

#[derive(Clone, Copy)]
pub struct Region<'a> {
    words: &'a [AtomicU64],
}

impl<'a> Region<'a> {
    pub fn new(words: &'a [AtomicU64]) -> Self {
        Region { words }
    }

    /// Builds a region over raw zone memory.
    ///
    /// # Safety
    /// - `ptr` is 8-byte aligned, points to `bytes` readable and writable bytes that stay
    ///   mapped for `'a`, and is initialised (zeroed or written by this crate before).
    /// - Every other access to that memory, in any process, goes through atomics.
    pub unsafe fn from_raw(ptr: *mut u8, bytes: usize) -> Region<'a> {
        debug_assert!(!ptr.is_null());
        debug_assert_eq!(ptr as usize % std::mem::align_of::<AtomicU64>(), 0);
        // SAFETY: the caller guarantees alignment, size and lifetime; `AtomicU64` has the
        // same layout as `u64`, and shared access is sound because all access is atomic.
        let words = unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), bytes / 8) };
        Region { words }
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The word at `at`. Panics out of range: callers validate offsets that come from
    /// outside (`get`), offsets read from the zone are in range by construction.
    #[inline(always)]
    pub fn word(&self, at: Offset) -> &'a AtomicU64 {
        &self.words[at as usize]
    }

    /// The `len` words from `at` on, for loops over a run of words (one bounds check
    /// instead of one per word). Panics out of range, as [`Region::word`] does.
    #[inline(always)]
    pub fn words(&self, at: Offset, len: u32) -> &'a [AtomicU64] {
        &self.words[at as usize..at as usize + len as usize]
    }

    #[inline(always)]
    pub fn get(&self, at: u64) -> Option<&'a AtomicU64> {
        self.words.get(usize::try_from(at).ok()?)
    }

    #[inline(always)]
    pub fn load(&self, at: Offset) -> u64 {
        self.word(at).load(Relaxed)
    }

    #[inline(always)]
    pub fn store(&self, at: Offset, v: u64) {
        self.word(at).store(v, Relaxed)
    }

    /// Writes `bytes` into words starting at `at`, zero-padding the last word. Only used
    /// on records that are not yet published, so relaxed stores suffice: publication is
    /// a release store that orders them.
    pub fn write_bytes(&self, at: Offset, bytes: &[u8]) {
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.store(at + i as Offset, u64::from_le_bytes(w));
        }
    }

    /// Appends `len` bytes stored at `at` to `out`.
    pub fn read_bytes(&self, at: Offset, len: usize, out: &mut Vec<u8>) {
        out.reserve(len);
        let mut left = len;
        let mut i = at;
        while left > 0 {
            let w = self.load(i).to_le_bytes();
            let n = left.min(8);
            out.extend_from_slice(&w[..n]);
            left -= n;
            i += 1;
        }
    }

    /// Whether the words at `at` equal `packed` (bytes packed with [`pack`]).
    pub fn words_eq(&self, at: Offset, packed: &[u64]) -> bool {
        packed
            .iter()
            .enumerate()
            .all(|(i, w)| self.load(at + i as Offset) == *w)
    }
}

/// Number of words needed for `len` bytes.
pub const fn words_for(len: usize) -> usize {
    len.div_ceil(8)
}

/// Packs bytes into little-endian words, zero-padded, as [`Region::write_bytes`] does.
pub fn pack(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect()
}

/// A zeroed, word-aligned buffer standing in for a zone in tests and benchmarks.
pub fn heap_words(words: usize) -> Vec<AtomicU64> {
    (0..words).map(|_| AtomicU64::new(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_compare() {
        let mem = heap_words(8);
        let r = Region::new(&mem);
        let text = "héllo, \"wörld\"\n!";
        r.write_bytes(2, text.as_bytes());
        let mut out = Vec::new();
        r.read_bytes(2, text.len(), &mut out);
        assert_eq!(out, text.as_bytes());
        assert!(r.words_eq(2, &pack(text.as_bytes())));
        assert!(!r.words_eq(2, &pack(b"hello")));
        assert_eq!(words_for(0), 0);
        assert_eq!(words_for(8), 1);
        assert_eq!(words_for(9), 2);
    }

    #[test]
    fn get_is_bounds_checked() {
        let mem = heap_words(4);
        let r = Region::new(&mem);
        assert!(r.get(3).is_some());
        assert!(r.get(4).is_none());
        assert!(r.get(u64::MAX).is_none());
    }
}
