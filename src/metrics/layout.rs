//! The words of a family's and of a series' body in the zone, in one place: adding a
//! word to either is a change here plus a bump of `shm::arena`'s `LAYOUT_VERSION` (a
//! zone kept over a reload from another build is then made again, not misread).

use crate::shm::Offset;

// A family body.
pub const F_META: Offset = 0;
pub const F_HELP: Offset = 1;
pub const F_LABELS: Offset = 2;
pub const F_SERIES: Offset = 3;
pub const F_LIMIT: Offset = 4;
pub const F_LAYOUT: Offset = 5;
pub const F_LOWEST: Offset = 6;
pub const F_HIGHEST: Offset = 7;
pub const F_PRECISION: Offset = 8;
pub const F_BUCKETS: Offset = 9;
pub const F_UNIT: Offset = 10;
pub const F_GROUP: Offset = 11;
pub const F_EXPIRE: Offset = 12;
pub const F_OVERFLOW: Offset = 13;
pub const FAMILY_WORDS: usize = 14;

// A series body: the tag word that handles are checked against (first: a reused block
// keeps it, with the generation the deleted series left), what the sweep saw (see
// `Store::sweep`), the creation time, then the values (a handle is the offset of the
// first value word).
pub const S_TAG: Offset = 0;
pub const S_SEEN: Offset = 1;
// The creation time's word also holds, in its high byte, the series' exemplar slots.
pub const S_CREATED: Offset = 2;
pub const S_VALUES: Offset = 3;
/// How far before a series' first value word its tag is: what a handle check reads.
pub const TAG_DISTANCE: u64 = (S_VALUES - S_TAG) as u64;

// A counter's values: an integer word for whole increments, a float word for the rest.
pub const COUNTER_INT: Offset = 0;
pub const COUNTER_FLOAT: Offset = 1;
pub const COUNTER_WORDS: u64 = 2;

// A gauge's value: one `f64` word.
pub const GAUGE_VALUE: Offset = 0;
pub const GAUGE_WORDS: u64 = 1;

// A histogram's values: its parameters, then one word per chunk, then the overflow
// count and the sum (how many chunks: `histogram::value_words`).
pub const HIST_LAYOUT: Offset = 0;
pub const HIST_SCALE: Offset = 1;
pub const HIST_HIGHEST: Offset = 2;
pub const HIST_CHUNKS: Offset = 3;

// A series' exemplar area, after its values (see `exemplar`; its slot count is the
// high byte of the `S_CREATED` word): the family's body offset, then the slots.
pub const X_FAMILY: Offset = 0;
pub const X_SLOTS: Offset = 1;
// A slot: its sequence word (odd while written), the value, the time (ms), the id's
// length and its bytes.
pub const X_SEQ: Offset = 0;
pub const X_VALUE: Offset = 1;
pub const X_TIME: Offset = 2;
pub const X_LEN: Offset = 3;
pub const X_ID: Offset = 4;
pub const EXEMPLAR_ID_WORDS: u32 = 8;
pub const EXEMPLAR_SLOT_WORDS: u32 = X_ID + EXEMPLAR_ID_WORDS;
