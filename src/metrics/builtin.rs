//! The module's own families, declared once. The store refuses user families whose
//! samples would clash with them, Lua refuses their names, the exposition walk writes
//! the ones read at scrape time, and the process sampler and push thread register the
//! ones they keep in the zone: all from [`all()`].

use super::family::{FamilySpec, BUILTIN_GROUP};
use super::MetricType;

/// The group of the per-worker process families (`worker` label).
pub const PROCESS_GROUP: &str = "process";

/// One of the module's families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Builtin {
    pub name: &'static str,
    pub metric_type: MetricType,
    pub help: &'static str,
    pub labels: &'static [&'static str],
    pub group: &'static str,
    /// OpenMetrics unit, empty for none.
    pub unit: &'static str,
    pub source: Source,
}

/// Where a family's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Read when a scrape is written, never stored: see [`Reading`].
    Scrape(Reading),
    /// Kept in the zone by each worker's process sampler, one series per worker.
    Process,
    /// Kept in the zone by the push thread.
    Push,
    /// Kept in the scraped zone by the metrics handler.
    Handler,
}

/// What a scrape-time family shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// nginx's connection counters (`stub_status`): only where nginx has them.
    Accepted,
    Handled,
    Requests,
    Connections,
    /// The zone's own accounting.
    Errors,
    ZoneBytes,
    Series,
    LockTakeovers,
    /// The running build: only where the location has an identity.
    BuildInfo,
}

impl Reading {
    /// Whether the family needs nginx's connection counters.
    pub fn needs_stub_status(self) -> bool {
        matches!(
            self,
            Reading::Accepted | Reading::Handled | Reading::Requests | Reading::Connections
        )
    }
}

const fn scrape(
    name: &'static str,
    metric_type: MetricType,
    help: &'static str,
    labels: &'static [&'static str],
    unit: &'static str,
    reading: Reading,
) -> Builtin {
    Builtin {
        name,
        metric_type,
        help,
        labels,
        group: BUILTIN_GROUP,
        unit,
        source: Source::Scrape(reading),
    }
}

const fn per_worker(
    name: &'static str,
    metric_type: MetricType,
    help: &'static str,
    unit: &'static str,
) -> Builtin {
    Builtin {
        name,
        metric_type,
        help,
        labels: &["worker"],
        group: PROCESS_GROUP,
        unit,
        source: Source::Process,
    }
}

const fn pushed(
    name: &'static str,
    metric_type: MetricType,
    help: &'static str,
    labels: &'static [&'static str],
    unit: &'static str,
) -> Builtin {
    Builtin {
        name,
        metric_type,
        help,
        labels,
        group: BUILTIN_GROUP,
        unit,
        source: Source::Push,
    }
}

use MetricType::{Counter, Gauge};

/// The families a scrape writes after the zone's, in this order.
pub const SCRAPED: [Builtin; 9] = [
    scrape(
        "nginx_connections_accepted_total",
        Counter,
        "Client connections accepted by nginx.",
        &[],
        "",
        Reading::Accepted,
    ),
    scrape(
        "nginx_connections_handled_total",
        Counter,
        "Client connections handled by nginx.",
        &[],
        "",
        Reading::Handled,
    ),
    scrape(
        "nginx_requests_total",
        Counter,
        "Client requests received by nginx.",
        &[],
        "",
        Reading::Requests,
    ),
    scrape(
        "nginx_connections",
        Gauge,
        "Client connections by state.",
        &["state"],
        "",
        Reading::Connections,
    ),
    scrape(
        "nginx_metric_errors_total",
        Counter,
        "Metric updates and series refused or failed, by reason.",
        &["zone", "reason"],
        "",
        Reading::Errors,
    ),
    scrape(
        "nginx_metric_zone_bytes",
        Gauge,
        "Bytes of the metrics zone: used, in all, and freed but not reusable yet.",
        &["zone", "state"],
        "bytes",
        Reading::ZoneBytes,
    ),
    scrape(
        "nginx_metric_series",
        Gauge,
        "Series kept in the metrics zone.",
        &["zone"],
        "",
        Reading::Series,
    ),
    scrape(
        "nginx_metric_lock_takeovers_total",
        Counter,
        "Times the zone lock was taken over from a process that died holding it.",
        &["zone"],
        "",
        Reading::LockTakeovers,
    ),
    scrape(
        BUILD_INFO,
        Gauge,
        "The ngx-prometheus module serving this scrape: version, commit and nginx version.",
        &["version", "revision", "nginx_version"],
        "",
        Reading::BuildInfo,
    ),
];

/// The info family: always 1, its labels tell the build.
pub const BUILD_INFO: &str = "nginx_prometheus_build_info";

/// The process sampler's families, in the order of its series handles.
pub const PROCESS: [Builtin; 9] = [
    per_worker(
        "nginx_worker_resident_memory_bytes",
        Gauge,
        "Resident memory of the worker process.",
        "bytes",
    ),
    per_worker(
        "nginx_worker_virtual_memory_bytes",
        Gauge,
        "Virtual memory of the worker process.",
        "bytes",
    ),
    per_worker(
        "nginx_worker_cpu_seconds_total",
        Counter,
        "User and system CPU time of the worker process.",
        "seconds",
    ),
    per_worker(
        "nginx_worker_open_fds",
        Gauge,
        "Open file descriptors of the worker process.",
        "",
    ),
    per_worker(
        "nginx_worker_max_fds",
        Gauge,
        "Most file descriptors the worker process may open.",
        "",
    ),
    per_worker(
        "nginx_worker_start_time_seconds",
        Gauge,
        "When the worker process started, in seconds since the epoch.",
        "seconds",
    ),
    per_worker(
        "nginx_worker_lua_memory_bytes",
        Gauge,
        "Memory held by the worker's LuaJIT VM.",
        "bytes",
    ),
    per_worker(
        "nginx_worker_timers",
        Gauge,
        "nginx timers pending in the worker.",
        "",
    ),
    per_worker(
        "nginx_worker_connections",
        Gauge,
        "Connections the worker holds (clients, upstreams and others).",
        "",
    ),
];

/// The push thread's families, in the order of its series handles.
pub const PUSH: [Builtin; 3] = [
    pushed(
        "nginx_push_total",
        Counter,
        "Pushes to the Pushgateway, by result (ok, or why they failed).",
        &["result"],
        "",
    ),
    pushed(
        "nginx_push_last_success_timestamp_seconds",
        Gauge,
        "When a push last succeeded, in seconds since the epoch.",
        &[],
        "seconds",
    ),
    pushed(
        "nginx_push_duration_seconds",
        Gauge,
        "How long the last push took, rendering included.",
        &[],
        "seconds",
    ),
];

/// Scrapes served in another format than the one asked for, by
/// [`Fallback`](crate::exposition::negotiate::Fallback) reason: made in a zone at its
/// first fallback.
pub const FALLBACKS: Builtin = Builtin {
    name: "nginx_metric_scrape_fallbacks_total",
    metric_type: Counter,
    help: "Scrapes whose preferred Accept element could not be honoured (another protobuf proto or encoding, a version or name escaping not served), answered as the next acceptable format, by reason.",
    labels: &["reason"],
    group: BUILTIN_GROUP,
    unit: "",
    source: Source::Handler,
};

/// Every family of the module.
pub fn all() -> impl Iterator<Item = &'static Builtin> {
    SCRAPED
        .iter()
        .chain(&PROCESS)
        .chain(&PUSH)
        .chain(std::iter::once(&FALLBACKS))
}

/// The module's family called `name`, if there is one: user families may not take it.
pub fn find(name: &str) -> Option<&'static Builtin> {
    all().find(|b| b.name == name)
}

impl Builtin {
    /// The declaration the module registers for a family it keeps in the zone.
    pub fn spec(&self) -> FamilySpec {
        FamilySpec {
            help: self.help.to_string(),
            unit: self.unit.to_string(),
            group: self.group.to_string(),
            ..FamilySpec::new(self.name, self.metric_type, self.labels)
        }
    }

    /// Whether its series carry a `worker` label that may name a worker that is gone.
    pub fn per_worker(&self) -> bool {
        self.source == Source::Process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declaration_is_valid_and_unique() {
        let mut names: Vec<&str> = all().map(|b| b.name).collect();
        for b in all() {
            b.spec()
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        }
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "a name is declared twice");
    }

    #[test]
    fn lookups() {
        assert_eq!(
            find("nginx_push_total").map(|b| b.source),
            Some(Source::Push)
        );
        assert_eq!(
            find(BUILD_INFO).map(|b| b.source),
            Some(Source::Scrape(Reading::BuildInfo))
        );
        assert!(find("nginx_worker_timers").unwrap().per_worker());
        assert!(!find("nginx_push_total").unwrap().per_worker());
        assert_eq!(find("http_requests_total"), None);
        assert!(Reading::Connections.needs_stub_status());
        assert!(!Reading::Errors.needs_stub_status());
    }
}
