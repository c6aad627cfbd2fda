//! Each worker's part in the zones' epochs (see `crate::shm::epoch`): it joins every
//! zone when it starts, announces that it is quiescent from a timer of its own event
//! loop, and leaves when it exits.
//!
//! A timer handler runs between two event handlers, and every update (the log phase,
//! a Lua FFI call or batch) runs from start to end inside one handler, never yielding
//! between its handle check and its add: so when the timer runs, no update of this
//! worker is half done. The timer is skipped while a render of this worker is in a pool
//! thread: the render is covered by the worker's announcement until it is back. The
//! update path itself does nothing for the epochs.

use super::timer::Timer;
use super::zone;
use super::NewProcess;
use crate::shm::Slot;
use ngx::ffi::{ngx_event_t, ngx_msec_t};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// How often a worker announces: the longest a freed block waits for an idle or busy
/// (not stopped) worker, give or take one event-loop iteration.
const TICK_MS: ngx_msec_t = 100;

static TIMER: Timer = Timer::new();

thread_local! {
    /// This worker's slot in each zone it joined, by zone name.
    static SLOTS: RefCell<Vec<(String, Slot)>> = const { RefCell::new(Vec::new()) };
}

/// Renders of this worker posted to a pool thread and not back yet. Only the worker's
/// own thread changes it (it posts and takes back renders).
static RENDERS: AtomicUsize = AtomicUsize::new(0);

/// A render is posted to a pool thread: no announcement until it is back.
pub(super) fn render_posted() {
    RENDERS.fetch_add(1, Relaxed);
}

/// A render posted before is back in the worker.
pub(super) fn render_back() {
    RENDERS.fetch_sub(1, Relaxed);
}

/// Module `init_process` part: joins every zone and arms the announcing timer, in
/// worker processes (helpers such as the cache manager never update metrics).
pub(super) fn start(p: &NewProcess) {
    if !p.serves {
        return;
    }
    let mut joined = Vec::new();
    for name in zone::names() {
        if let Some((_, store)) = zone::lookup(&name) {
            match store.join_epochs(zone::participant()) {
                Some(slot) => joined.push((name, slot)),
                None => {
                    ngx::ngx_log_error!(
                        ngx::ffi::NGX_LOG_WARN,
                        p.log,
                        "prometheus zone \"{name}\": no epoch slot left for this worker; \
                         deleted series' memory is no longer reused in this zone"
                    );
                }
            }
        }
    }
    if joined.is_empty() {
        return;
    }
    SLOTS.with(|s| *s.borrow_mut() = joined);
    // Cancelable: a worker shutting down does not wait for it.
    TIMER.start(p.log, tick, true, TICK_MS);
}

/// Announces this worker quiescent in every zone it joined, then counts what still
/// waits there (for `nginx_metric_zone_bytes{state="waiting"}`; under the zone lock,
/// only while something is freed or was counted waiting).
fn announce() {
    let rendering = RENDERS.load(Relaxed) != 0;
    SLOTS.with(|s| {
        for (name, slot) in s.borrow().iter() {
            if let Some((_, store)) = zone::lookup(name) {
                if !rendering {
                    store.announce(*slot);
                }
                let epochs = store.arena().epochs();
                if store.arena().free_bytes() > 0 || epochs.waiting() > 0 {
                    store.waiting_bytes(zone::participant());
                }
            }
        }
    });
}

extern "C" fn tick(_ev: *mut ngx_event_t) {
    announce();
    TIMER.again(TICK_MS);
}

/// Module `exit_process` part: gives the slots back, unless a render is still in a
/// pool thread (then the slot goes once the process is gone, by the liveness check).
pub(super) fn stop() {
    if RENDERS.load(Relaxed) != 0 {
        return;
    }
    SLOTS.with(|s| {
        for (name, slot) in s.borrow_mut().drain(..) {
            if let Some((_, store)) = zone::lookup(&name) {
                store.leave_epochs(slot);
            }
        }
    });
}

/// Makes this worker's next update through `handle` (a Lua child's handle) stop for
/// `ms` milliseconds between its handle check and its add, the worker's event loop
/// with it, as a descheduled worker would. For tests only; only in builds with the
/// `debug-hooks` feature.
#[cfg(feature = "debug-hooks")]
#[no_mangle]
pub extern "C" fn ngx_prom_debug_pause_update(handle: u64, ms: u32) {
    crate::metrics::value::pause_next_update(handle & 0xffff_ffff, u64::from(ms));
}
