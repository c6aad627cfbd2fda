//! Which families a scrape shows: the groups a location serves and a request asks for,
//! the names it asks for, and the per-worker series of workers that still run.

use crate::metrics::builtin;
use crate::metrics::family::{FamilySpec, BUILTIN_GROUP};
use crate::metrics::store::decode_key;
use std::fmt;

/// Which families a scrape shows: those of the groups the location serves and the
/// request asks for, and of the names it asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Groups the location serves (`prometheus_metrics ... group=a,b`); empty: all.
    pub served: Vec<String>,
    /// Groups the request asks for (`?group=`); empty: every served group.
    pub groups: Vec<String>,
    /// Families the request asks for (`?name[]=`); empty: all.
    pub names: Vec<String>,
    /// How many worker processes nginx runs now (None: show every worker). The zone
    /// outlives a reload, so after one that lowered `worker_processes` the module's
    /// per-worker series ([`builtin::PROCESS`]) of a worker that
    /// no longer exists would keep their last values for ever; they are left out.
    pub workers: Option<u32>,
}

impl Selection {
    fn group_served(&self, group: &str) -> bool {
        self.served.is_empty() || self.served.iter().any(|g| g == group)
    }

    fn group_selected(&self, group: &str) -> bool {
        self.group_served(group)
            && (self.groups.is_empty() || self.groups.iter().any(|g| g == group))
    }

    /// For a family whose series [`Selection::workers`] may retire: the position of its
    /// `worker` label and the number of workers running.
    pub(super) fn worker_label(&self, spec: &FamilySpec) -> Option<(usize, u32)> {
        let workers = self.workers?;
        if !builtin::find(&spec.name).is_some_and(|b| b.per_worker()) {
            return None;
        }
        let label = spec.label_names.iter().position(|l| l == "worker")?;
        Some((label, workers))
    }

    /// Whether the family `name` of `group` is shown.
    pub fn includes(&self, name: &str, group: &str) -> bool {
        self.group_selected(group)
            && (self.names.is_empty() || self.names.iter().any(|n| n == name))
    }

    /// Checks that every group and family asked for exists here; `families` holds the
    /// name and group of every family the zone would show, the module's own included.
    /// A family outside the served groups is reported as unknown: a location serving
    /// some groups does not tell what the others hold.
    pub fn check(&self, families: &[(&str, &str)]) -> Result<(), NotFound> {
        for g in &self.groups {
            let known = if self.served.is_empty() {
                g == BUILTIN_GROUP || families.iter().any(|(_, fg)| fg == g)
            } else {
                self.group_served(g)
            };
            if !known {
                return Err(NotFound::Group(g.clone()));
            }
        }
        for n in &self.names {
            match families.iter().find(|(name, _)| name == n) {
                Some((_, g)) if self.group_selected(g) => {}
                Some((_, g)) if self.group_served(g) => {
                    return Err(NotFound::NotInGroups {
                        family: n.clone(),
                        group: g.to_string(),
                    })
                }
                _ => return Err(NotFound::Family(n.clone())),
            }
        }
        Ok(())
    }
}

/// A group or family asked for that is not here (`404`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotFound {
    Group(String),
    Family(String),
    NotInGroups { family: String, group: String },
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotFound::Group(g) => write!(f, "unknown group \"{g}\""),
            NotFound::Family(n) => write!(f, "unknown metric family \"{n}\""),
            NotFound::NotInGroups { family, group } => write!(
                f,
                "metric family \"{family}\" is in group \"{group}\", which was not asked for"
            ),
        }
    }
}

/// Whether a series (its encoded label values) belongs to a worker below `workers`;
/// a `worker` value that is no number is not ours to judge.
pub(super) fn worker_runs(label: usize, workers: u32, key: &[u8]) -> bool {
    let value = decode_key(key).nth(label).unwrap_or_default();
    match std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(w) => w < workers,
        None => true,
    }
}
