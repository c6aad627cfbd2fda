//! What a render reads: families with their series records, and each record's tag,
//! key, values and creation time.

use super::*;

impl<'a> Store<'a> {
    pub fn series_count(&self, f: Family) -> u64 {
        self.region().load(f.body + F_SERIES)
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
        crate::metrics::exemplar::created_ms(self.region().load(self.arena.body(rec) + S_CREATED))
    }
}
