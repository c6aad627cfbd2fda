//! The expiry sweep: deletes the series no update changed for their family's `expire`.

use super::*;

impl<'a> Store<'a> {
    /// Tenths of a second since the zone was made, at `ms` since the epoch, in the 32
    /// bits the sweep's word keeps (they wrap after 13 years; differences are taken
    /// modulo 2^32).
    pub(super) fn zone_tenths(&self, ms: u64) -> u64 {
        (ms / 100).saturating_sub(self.arena.created_unix() * 10) & 0xffff_ffff
    }

    /// What the sweep compares between two looks at a series to tell whether it was
    /// updated: a hash of its value words (for histograms the overflow count and the
    /// sum: every observation moves one of them, but one of exactly 0).
    pub(super) fn fingerprint(&self, rec: Offset, t: MetricType) -> u32 {
        let r = self.region();
        let h = self.series_values(rec);
        let (a, b) = match t {
            MetricType::Counter => (r.load(h + COUNTER_INT), r.load(h + COUNTER_FLOAT)),
            MetricType::Gauge => (r.load(h + GAUGE_VALUE), 0),
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
    pub fn sweep(&self, budget: usize, now_ms: u64, p: Participant<'_>) -> (u64, u64) {
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
            let g = self.lock(p);
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
}
