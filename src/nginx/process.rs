//! Per-worker process metrics: every worker samples itself on a timer (memory, CPU,
//! descriptors, its LuaJIT VM, nginx's pending timers and its connections) and writes
//! the figures into a zone, labelled `worker="<n>"`, in the `process` group.
//!
//! `prometheus_process_metrics [zone=<name>] [interval=<time>] | off;` (default: on,
//! the first zone, every 5 s). The timer is cancelable: a worker shutting down
//! gracefully neither waits for it nor samples again.

use super::timer::{self, Timer};
use super::{conf_error, parse_time_ms, zone, MainConf, NewProcess};
use crate::host::process;
use crate::metrics::builtin::PROCESS;
use crate::metrics::{counter, gauge, Store};
use ngx::ffi::{ngx_event_t, ngx_int_t, ngx_msec_t};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};

const DEFAULT_INTERVAL_MS: ngx_msec_t = 5000;

/// `prometheus_process_metrics` as configured.
#[derive(Clone, Debug)]
pub struct ProcessConf {
    pub enabled: bool,
    /// `""`: the first declared zone.
    pub zone: String,
    pub interval_ms: ngx_msec_t,
}

impl Default for ProcessConf {
    fn default() -> Self {
        ProcessConf {
            enabled: true,
            zone: String::new(),
            interval_ms: DEFAULT_INTERVAL_MS,
        }
    }
}

directive! {
    pub(super) fn directive(cf, mcf: &mut MainConf, a) {
        if mcf.process_set {
            return conf_error(cf, "prometheus_process_metrics: is duplicate");
        }
        mcf.process_set = true;
        match parse(&a) {
            Ok(p) => {
                mcf.process = p;
                ngx::core::NGX_CONF_OK
            }
            Err(why) => conf_error(cf, &format!("prometheus_process_metrics: {why}")),
        }
    }
}

fn parse(a: &[&str]) -> Result<ProcessConf, String> {
    let p = crate::config::directives::process(a, &parse_time_ms)?;
    Ok(ProcessConf {
        enabled: p.enabled,
        zone: p.zone,
        interval_ms: p.interval_ms as ngx_msec_t,
    })
}

struct Worker {
    store: Store<'static>,
    /// Series handles in [`PROCESS`] order; 0 where a family could not be made.
    handles: [u64; PROCESS.len()],
    interval_ms: ngx_msec_t,
    start: f64,
}

thread_local! {
    /// Only the worker's own thread (the event loop) touches it.
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    /// The worker's Lua VM, once our Lua module was loaded in it.
    static LUA: RefCell<Option<mlua::WeakLua>> = const { RefCell::new(None) };
}

static TIMER: Timer = Timer::new();

/// `worker_processes` of the running configuration; 0 until a worker starts.
static WORKER_COUNT: AtomicU32 = AtomicU32::new(0);

/// Module `init_process` part: remembers how many workers this configuration runs, so
/// that renders leave out the series of workers a reload took away.
pub(super) fn remember_worker_count(workers: Option<ngx_int_t>) {
    let Some(n) = workers else {
        return;
    };
    // With `master_process off` the one process is worker 0; counts never drop below it.
    WORKER_COUNT.store(
        u32::try_from(n).unwrap_or(u32::MAX).max(1),
        Ordering::Relaxed,
    );
}

/// How many workers this configuration runs, once a worker has started.
pub fn worker_count() -> Option<u32> {
    match WORKER_COUNT.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Lets the sampler report this Lua VM's memory (called when Lua loads our module).
pub fn remember_lua(lua: &mlua::Lua) {
    LUA.with(|l| *l.borrow_mut() = Some(lua.weak()));
}

/// Module `init_process`: in a worker, makes the series and starts the timer.
pub(super) fn init_process(p: &NewProcess) -> ngx_int_t {
    let ok = ngx::ffi::NGX_OK as ngx_int_t;
    let log = p.log;
    let Some(conf) = zone::running_main_conf().map(|m| m.process.clone()) else {
        return ok;
    };
    if !conf.enabled {
        return ok;
    }
    let Some((zone_name, store)) = zone::lookup(&conf.zone) else {
        return ok;
    };
    let worker = p.worker.to_string();
    let mut handles = [0u64; PROCESS.len()];
    for (i, family) in PROCESS.iter().enumerate() {
        let name = family.name;
        let made = store
            .register(&family.spec(), zone::participant())
            .map_err(|e| e.to_string())
            .and_then(|f| {
                store
                    .find_or_make(
                        f,
                        &[worker.as_str()],
                        zone::participant(),
                        Default::default(),
                    )
                    .map(|s| s.handle)
                    .map_err(|e| e.to_string())
            });
        match made {
            Ok(h) => handles[i] = h,
            Err(why) => {
                ngx::ngx_log_error!(
                    ngx::ffi::NGX_LOG_ERR,
                    log,
                    "prometheus_process_metrics: {name} in zone \"{zone_name}\": {why}"
                );
            }
        }
    }
    WORKER.with(|w| {
        *w.borrow_mut() = Some(Worker {
            store,
            handles,
            interval_ms: conf.interval_ms,
            start: process::now_seconds(),
        })
    });
    sample_now();
    TIMER.start(log, tick, true, conf.interval_ms);
    ok
}

extern "C" fn tick(_ev: *mut ngx_event_t) {
    if timer::shutting_down() {
        return;
    }
    if let Some(ms) = sample_now() {
        TIMER.again(ms);
    }
}

/// Writes one sample; returns the interval to the next.
fn sample_now() -> Option<ngx_msec_t> {
    let lua_bytes = LUA.with(|l| {
        l.borrow()
            .as_ref()
            .and_then(|w| w.try_upgrade())
            .map(|lua| lua.used_memory() as f64)
    });
    WORKER.with(|w| {
        let w = w.borrow();
        let w = w.as_ref()?;
        let s = process::sample();
        let r = w.store.region();
        let gauges = [
            (0, Some(s.resident_bytes)),
            (1, Some(s.virtual_bytes)),
            (3, Some(s.open_fds)),
            (4, Some(s.max_fds)),
            (5, Some(w.start)),
            (6, lua_bytes),
            (7, Some(pending_timers() as f64)),
            (8, Some(connections() as f64)),
        ];
        for (i, v) in gauges {
            if let (Some(v), h) = (v, w.handles[i]) {
                if h != 0 {
                    let _ = gauge::set(&r, h, v);
                }
            }
        }
        if w.handles[2] != 0 {
            let _ = counter::set_single_writer(&r, w.handles[2], s.cpu_seconds);
        }
        Some(w.interval_ms)
    })
}

/// Timers armed in this worker: nodes of nginx's timer tree.
fn pending_timers() -> usize {
    // SAFETY: the timer tree is this worker's, read from its only thread between
    // events; nodes stay valid while nothing runs that could add or remove one.
    unsafe {
        let tree = std::ptr::addr_of!(ngx::ffi::ngx_event_timer_rbtree);
        let sentinel = (*tree).sentinel;
        let mut stack = vec![(*tree).root];
        let mut n = 0;
        while let Some(node) = stack.pop() {
            if node.is_null() || node == sentinel {
                continue;
            }
            n += 1;
            stack.push((*node).left);
            stack.push((*node).right);
        }
        n
    }
}

/// Connections of this worker in use.
fn connections() -> usize {
    // SAFETY: the running cycle, read from the worker's own thread.
    unsafe {
        let c = ngx::ffi::ngx_cycle;
        if c.is_null() {
            return 0;
        }
        (*c).connection_n.saturating_sub((*c).free_connection_n)
    }
}
