//! Registering families: shape checks against what the zone holds, name clashes, and
//! the options that may change in place (help, buckets, limits, expiry).

use super::*;

// Family meta word: type in bits 0..8, label count 8..16, quantile mode 16..24,
// exemplars bit 24, native only bit 25.
pub(super) const META_EXEMPLARS: u64 = 1 << 24;
const META_NATIVE_ONLY: u64 = 1 << 25;

fn meta_word(spec: &FamilySpec) -> u64 {
    spec.metric_type as u64
        | (spec.label_names.len() as u64) << 8
        | (spec.quantiles as u64) << 16
        | if spec.exemplars { META_EXEMPLARS } else { 0 }
        | if spec.native_only {
            META_NATIVE_ONLY
        } else {
            0
        }
}

impl<'a> Store<'a> {
    /// Registers a family, or returns the existing one of the same shape: every worker
    /// registers at start, and a zone kept over a reload already has them. Help, buckets
    /// and the series limit are updated in place; type, labels and HDR range must match.
    pub fn register(&self, spec: &FamilySpec, p: Participant<'_>) -> Result<Family, RegisterError> {
        spec.validate().map_err(RegisterError::Spec)?;
        if let Some(existing) = self.family_by_name(&spec.name) {
            self.check_same_shape(existing, spec)?;
            self.update(existing, spec, p)?;
            return Ok(existing);
        }
        let full = || RegisterError::ZoneFull {
            family: spec.name.clone(),
        };
        let g = self.lock(p);
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
                p.alive,
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
    pub(super) fn check_no_clash(&self, spec: &FamilySpec) -> Result<(), RegisterError> {
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
                if let Some(b) = crate::metrics::builtin::find(&owner) {
                    clash(&owner, exposition_names(&owner, b.metric_type))?;
                }
                seen.push(owner);
            }
        }
        Ok(())
    }

    pub(super) fn check_same_shape(
        &self,
        f: Family,
        spec: &FamilySpec,
    ) -> Result<(), RegisterError> {
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

    pub(super) fn update(
        &self,
        f: Family,
        spec: &FamilySpec,
        p: Participant<'_>,
    ) -> Result<(), RegisterError> {
        let have = self.spec(f);
        let r = self.region();
        if have.max_series != spec.max_series {
            r.word(f.body + F_LIMIT).store(spec.max_series, Relaxed);
        }
        if have.expire_s != spec.expire_s {
            r.word(f.body + F_EXPIRE).store(spec.expire_s, Relaxed);
        }
        if (have.quantiles, have.exemplars, have.native_only)
            != (spec.quantiles, spec.exemplars, spec.native_only)
        {
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
                    let g = self.lock(p);
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
            let g = self.lock(p);
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
                self.set_buckets(f, &b.buckets, p)?;
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
        p: Participant<'_>,
    ) -> Result<(), RegisterError> {
        let spec = self.spec(f);
        let Some(h) = &spec.histogram else {
            return Err(RegisterError::Conflict {
                family: spec.name,
                what: format!("type {}", f.metric_type.as_str()),
            });
        };
        check_buckets(&spec.name, h, buckets).map_err(RegisterError::Spec)?;
        let g = self.lock(p);
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
            exemplars: r.load(f.body + F_META) & META_EXEMPLARS != 0,
            native_only: r.load(f.body + F_META) & META_NATIVE_ONLY != 0,
        }
    }

    /// Sets how many seconds without an update the series of `f` live (0: forever).
    pub fn set_expire(&self, f: Family, seconds: u64) {
        self.region()
            .word(f.body + F_EXPIRE)
            .store(seconds, Relaxed);
    }
}
