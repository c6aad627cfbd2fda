//! Push mode: one thread in worker 0 renders a zone and `PUT`s it to a Prometheus
//! Pushgateway every `interval`, off the event loop, so a slow or absent gateway never
//! holds up a request.
//!
//! ```text
//! prometheus_push http[s]://pushgw:9091 [zone=<name>] [interval=15s] [timeout=5s]
//!                 ["job=nginx-${hostname}"];
//! prometheus_push_header <name> <value>;           # repeatable
//! prometheus_push_basic_auth <user> <password file>;
//! prometheus_push_ca <PEM file>;                   # https: trust these, not the system's
//! ```
//!
//! Exactly one process per nginx pushes: worker 0 (a new one after a reload; the old
//! one stops as soon as it is told to shut down). Failures are logged when they start
//! and when they end, counted by reason, and retried after 1 s, 2 s, 4 s... up to the
//! larger of the interval and a minute.

use super::{conf_error, parse_time_ms, stub_status, zone, MainConf, NewProcess};
use crate::config::directives::Push;
use crate::config::identity::{expand, Identity};
use crate::exposition::{self, Scrape, Selection};
use crate::metrics::builtin::PUSH;
use crate::metrics::{counter, gauge, Store};
use crate::push::{check_header, grouping_path, load_roots, Backoff, PushError, Pusher};
use crate::shm::Slot;
use ngx::ffi::{ngx_conf_t, ngx_log_t};
use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `prometheus_push` and its companions, as configured.
#[derive(Clone, Debug)]
pub struct PushConf {
    /// The directive's own arguments.
    pub written: Push,
    /// `written.job_template`, expanded once the identity is known.
    pub job: String,
    pub headers: Vec<(String, String)>,
    pub basic_auth: Option<(String, String)>,
    /// For `https://`: the roots a gateway's certificate must lead to (the system's, or
    /// those of `prometheus_push_ca`), read with the configuration.
    pub roots: Option<ureq::tls::RootCerts>,
}

/// Set when the worker exits: the thread stops at its next look.
static STOP: AtomicBool = AtomicBool::new(false);

fn parse(a: &[&str]) -> Result<PushConf, String> {
    Ok(PushConf {
        written: crate::config::directives::push(a, &parse_time_ms)?,
        job: String::new(),
        headers: Vec::new(),
        basic_auth: None,
        roots: None,
    })
}

directive! {
    pub(super) fn push_directive(cf, mcf: &mut MainConf, a) {
        if mcf.push.is_some() {
            return conf_error(cf, "prometheus_push: is duplicate");
        }
        match parse(&a) {
            Ok(p) => {
                mcf.push = Some(p);
                ngx::core::NGX_CONF_OK
            }
            Err(why) => conf_error(cf, &format!("prometheus_push: {why}")),
        }
    }
}

directive! {
    pub(super) fn header_directive(cf, mcf: &mut MainConf, a) {
        if let Err(why) = check_header(a[0], a[1]) {
            return conf_error(cf, &format!("prometheus_push_header: {why}"));
        }
        mcf.push_headers.push((a[0].to_string(), a[1].to_string()));
        ngx::core::NGX_CONF_OK
    }
}

directive! {
    pub(super) fn basic_auth_directive(cf, mcf: &mut MainConf, a) {
        if mcf.push_basic_auth.is_some() {
            return conf_error(cf, "prometheus_push_basic_auth: is duplicate");
        }
        let (user, file) = (a[0], a[1]);
        if user.is_empty() || user.contains(':') {
            return conf_error(
                cf,
                &format!("prometheus_push_basic_auth: invalid user \"{user}\" (no ':')"),
            );
        }
        let file = match super::full_name(cf, file, true) {
            Ok(p) => p,
            Err(e) => return conf_error(cf, &format!("prometheus_push_basic_auth: {e}")),
        };
        // The password stays out of nginx.conf, which is often world-readable.
        let password = match std::fs::read_to_string(&file) {
            Ok(s) => s.trim_end_matches(['\r', '\n']).to_string(),
            Err(e) => {
                return conf_error(
                    cf,
                    &format!("prometheus_push_basic_auth: cannot read \"{file}\": {e}"),
                )
            }
        };
        if password.is_empty() || password.contains('\n') {
            return conf_error(
                cf,
                &format!("prometheus_push_basic_auth: \"{file}\" must hold one line, the password"),
            );
        }
        mcf.push_basic_auth = Some((user.to_string(), password));
        ngx::core::NGX_CONF_OK
    }
}

directive! {
    /// `prometheus_push_ca <file>;`: the CA certificates (PEM) a `https://` gateway's
    /// certificate must lead to, instead of the system's roots. A relative path is relative
    /// to nginx's configuration directory; the file is read when the `http {}` block is.
    pub(super) fn ca_directive(cf, mcf: &mut MainConf, a) {
        if mcf.push_ca.is_some() {
            return conf_error(cf, "prometheus_push_ca: is duplicate");
        }
        let path = match super::full_name(cf, a[0], true) {
            Ok(p) => p,
            Err(e) => return conf_error(cf, &format!("prometheus_push_ca: {e}")),
        };
        mcf.push_ca = Some(path);
        ngx::core::NGX_CONF_OK
    }
}

/// Called once the `http {}` block is read: completes the push configuration.
pub(super) fn resolve(cf: *mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), *mut c_char> {
    let headers = std::mem::take(&mut mcf.push_headers);
    let auth = mcf.push_basic_auth.take();
    let ca = mcf.push_ca.take();
    let Some(p) = mcf.push.as_mut() else {
        if !headers.is_empty() || auth.is_some() || ca.is_some() {
            return Err(conf_error(
                cf,
                "prometheus_push_header, prometheus_push_basic_auth and prometheus_push_ca \
                 need prometheus_push",
            ));
        }
        return Ok(());
    };
    if p.written.endpoint.https {
        // The system's roots or the named file, read now (as the master, before the
        // workers drop privileges) so that `nginx -t` reports what will not work.
        let roots = load_roots(ca.as_deref()).map_err(|why| {
            let directive = if ca.is_some() {
                "prometheus_push_ca"
            } else {
                "prometheus_push"
            };
            conf_error(cf, &format!("{directive}: {why}"))
        })?;
        p.roots = Some(roots);
    } else if let Some(file) = ca {
        return Err(conf_error(
            cf,
            &format!(
                "prometheus_push_ca \"{file}\": the push URL \"{}\" is not https://",
                p.written.url
            ),
        ));
    }
    if !p.written.zone.is_empty() && !mcf.zones.iter().any(|z| z.name == p.written.zone) {
        return Err(conf_error(
            cf,
            &format!("prometheus_push: unknown zone \"{}\"", p.written.zone),
        ));
    }
    if mcf.zones.is_empty() {
        return Err(conf_error(
            cf,
            "prometheus_push: no prometheus_zone is declared",
        ));
    }
    let mut vars: Vec<(&str, &str)> = vec![("hostname", mcf.hostname.as_str())];
    if let Some(id) = &mcf.node_id {
        vars.push(("node_id", id.as_str()));
    }
    p.job = expand(&p.written.job_template, &vars)
        .map_err(|e| conf_error(cf, &format!("prometheus_push: job {e}")))?;
    p.headers = headers;
    p.basic_auth = auth;
    Ok(())
}

const RESULTS: [&str; 8] = [
    "ok",
    "resolve",
    "connect",
    "timeout",
    "io",
    "tls",
    "bad_response",
    "http_status",
];

/// Series handles the thread writes (plain atomics in the zone).
struct Handles {
    results: [u64; RESULTS.len()],
    last_success: u64,
    duration: u64,
}

/// Makes the push families' series (in the worker: creation takes the zone lock).
fn make_series(store: &Store<'static>) -> Result<Handles, String> {
    let me = zone::participant();
    let mut fams = Vec::new();
    for family in &PUSH {
        let f = store
            .register(&family.spec(), me)
            .map_err(|e| format!("{}: {e}", family.name))?;
        fams.push(f);
    }
    let series = |f, values: &[&str]| {
        store
            .find_or_make(f, values, me, Default::default())
            .map(|s| s.handle)
            .map_err(|e| e.to_string())
    };
    let mut results = [0u64; RESULTS.len()];
    for (i, r) in RESULTS.iter().enumerate() {
        results[i] = series(fams[0], &[*r])?;
    }
    Ok(Handles {
        results,
        last_success: series(fams[1], &[])?,
        duration: series(fams[2], &[])?,
    })
}

/// A log the thread may write to: nginx's cycle log, whose `ngx_log_error` ends in a
/// `write(2)` per message (what nginx's own thread pools do from their threads).
struct Log(*mut ngx_log_t);
// SAFETY: the log lives as long as the cycle, which outlives the worker's threads;
// writing to it from another thread is what nginx's thread pools do.
unsafe impl Send for Log {}

impl Log {
    fn write(&self, level: u32, msg: &str) {
        ngx::ngx_log_error!(level as ngx::ffi::ngx_uint_t, self.0, "{}", msg);
    }
}

/// Module `init_process` part: starts the pushing thread in worker 0.
pub(super) fn start(p: &NewProcess) {
    let (log, worker) = (p.log, p.worker);
    let Some(mcf) = zone::running_main_conf() else {
        return;
    };
    let Some(conf) = mcf.push.clone() else { return };
    if worker != 0 {
        return;
    }
    let Some((zone_name, store)) = zone::lookup(&conf.written.zone) else {
        return;
    };
    let log = Log(log);
    let handles = match make_series(&store) {
        Ok(h) => h,
        Err(why) => {
            log.write(
                ngx::ffi::NGX_LOG_ERR,
                &format!("prometheus_push: cannot count pushes in zone \"{zone_name}\": {why}"),
            );
            return;
        }
    };
    let identity = zone::identity();
    log.write(
        ngx::ffi::NGX_LOG_NOTICE,
        &format!(
            "prometheus_push: process {} pushes zone \"{zone_name}\" to {} as job \"{}\" every {:?}",
            zone::my_pid(),
            conf.written.url,
            conf.job,
            conf.written.interval
        ),
    );
    let spawned = std::thread::Builder::new()
        .name("prometheus-push".into())
        .spawn(move || run(conf, store, zone_name, identity, handles, log));
    if let Err(e) = spawned {
        ngx::ngx_log_error!(
            ngx::ffi::NGX_LOG_ERR,
            p.log,
            "prometheus_push: cannot start the push thread: {}",
            e
        );
    }
}

/// Module `exit_process` part.
pub(super) fn stop() {
    STOP.store(true, Ordering::Relaxed);
}

/// Whether the worker is shutting down (nginx's flags, set by its signal handler).
fn stopping() -> bool {
    STOP.load(Ordering::Relaxed) || super::timer::shutting_down()
}

/// Sleeps until `deadline` or a stop; false on a stop.
fn wait_until(deadline: Instant) -> bool {
    loop {
        if stopping() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

/// The push thread: builds the client, joins the zone's epochs, pushes until the
/// worker stops.
fn run(
    conf: PushConf,
    store: Store<'static>,
    zone_name: String,
    identity: Option<&'static Identity>,
    h: Handles,
    log: Log,
) {
    let Some(pusher) = client(&conf, &log) else {
        return;
    };
    // This thread reads and updates the zone outside the event loop: a participant of
    // its own in the zone's epochs, in the zone only while it renders and records.
    let slot = store.join_thread_epochs(zone::participant());
    if slot.is_none() {
        log.write(
            ngx::ffi::NGX_LOG_WARN,
            "prometheus_push: no epoch slot left in the zone; its deleted series' memory \
             is no longer reused",
        );
    }
    let backoff = Backoff::new(conf.written.interval);
    let mut rounds = Rounds {
        conf,
        store,
        zone_name,
        identity,
        h,
        log,
        pusher,
        slot,
        backoff,
        failing: None,
    };
    let mut next = Instant::now();
    while wait_until(next) {
        next = rounds.round();
    }
    if let Some(slot) = slot {
        store.leave_epochs(slot);
    }
}

/// The HTTP client for the configured gateway; `None` (logged) if it cannot be made.
fn client(conf: &PushConf, log: &Log) -> Option<Pusher> {
    let path = grouping_path(&conf.written.endpoint.path, &conf.job, &[]);
    let auth = conf
        .basic_auth
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    let roots = conf.roots.clone();
    match Pusher::new(
        &conf.written.endpoint,
        &path,
        &conf.headers,
        auth,
        roots,
        conf.written.timeout,
    ) {
        Ok(p) => Some(p),
        Err(why) => {
            // The configuration checks make this unreachable; say so if it is not.
            log.write(
                ngx::ffi::NGX_LOG_ERR,
                &format!(
                    "prometheus_push: cannot push to {}: {why}",
                    conf.written.url
                ),
            );
            None
        }
    }
}

/// What the push thread keeps from one round to the next.
struct Rounds {
    conf: PushConf,
    store: Store<'static>,
    zone_name: String,
    identity: Option<&'static Identity>,
    h: Handles,
    log: Log,
    pusher: Pusher,
    /// This thread's epoch slot (none when the zone had none left: it then reuses
    /// nothing).
    slot: Option<Slot>,
    backoff: Backoff,
    /// The reason of the failures going on: logged when it starts or changes.
    failing: Option<&'static str>,
}

impl Rounds {
    /// One push: render, send, count; returns when the next one is due.
    fn round(&mut self) -> Instant {
        let started = Instant::now();
        self.enter();
        let body = self.render();
        self.idle();
        let result = self.pusher.push(&body);
        self.enter();
        let next = self.record(started, result);
        self.idle();
        next
    }

    /// The zone as a scrape of the metrics port would show it.
    fn render(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 * 1024);
        let scrape = Scrape {
            stub: stub_status::read(),
            selection: Selection {
                workers: super::process::worker_count(),
                ..Selection::default()
            },
            identity: self.identity,
            ..Scrape::new(self.store, &self.zone_name)
        };
        let _ = exposition::render(&mut body, &scrape);
        body
    }

    /// Counts the push's result and duration, logs a change of state, and returns when
    /// the next push is due (the interval, or the backoff's delay).
    fn record(&mut self, started: Instant, result: Result<u16, PushError>) -> Instant {
        let r = self.store.region();
        let _ = gauge::set(&r, self.h.duration, started.elapsed().as_secs_f64());
        let reason = result.as_ref().err().map_or("ok", PushError::reason);
        if let Some(i) = RESULTS.iter().position(|x| *x == reason) {
            let _ = counter::inc(&r, self.h.results[i], 1);
        }
        match result {
            Ok(_) => {
                let _ = gauge::set(&r, self.h.last_success, crate::host::process::now_seconds());
                self.succeeded();
                started + self.backoff.next_delay_ok()
            }
            Err(e) => {
                let delay = self.failed(&e);
                Instant::now() + delay
            }
        }
    }

    fn succeeded(&mut self) {
        if let Some(reason) = self.failing.take() {
            self.log.write(
                ngx::ffi::NGX_LOG_NOTICE,
                &format!(
                    "prometheus_push: {} works again after {} failed pushes ({reason})",
                    self.conf.written.url,
                    self.backoff.failures()
                ),
            );
        }
        self.backoff.success();
    }

    /// Returns the delay before the next try.
    fn failed(&mut self, e: &PushError) -> Duration {
        let delay = self.backoff.fail();
        // The first failure and every change of cause are logged; a gateway that stays
        // down does not fill the log.
        if self.failing != Some(e.reason()) {
            self.log.write(
                ngx::ffi::NGX_LOG_ERR,
                &format!(
                    "prometheus_push: push to {} failed: {e}; retrying with backoff \
                     (next in {delay:?})",
                    self.conf.written.url
                ),
            );
        }
        self.failing = Some(e.reason());
        delay
    }

    fn enter(&self) {
        if let Some(slot) = self.slot {
            self.store.enter_epochs(slot, zone::participant());
        }
    }

    fn idle(&self) {
        if let Some(slot) = self.slot {
            self.store.idle_epochs(slot);
        }
    }
}
