//! Shared parts of the fuzz targets (`src/bin/<target>.rs`, one per target; see
//! `scripts/fuzz.sh`).

pub mod exposition;

/// A string made from arbitrary bytes, lossily: the targets whose input is text (a
/// header, a file, a directive's words) get every byte sequence a client or an operator
/// could write, invalid UTF-8 included where the caller sees bytes.
pub fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
