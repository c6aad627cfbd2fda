//! The expiry sweep: in worker 0, a timer that deletes the series of families declared
//! with `expire` once no update changed them for that long, a bounded batch of every
//! zone's records per tick, off the request path.

use super::timer::{self, Timer};
use super::zone;
use super::NewProcess;
use crate::metrics::store::now_ms;
use ngx::ffi::{ngx_event_t, ngx_msec_t};

/// Records looked at per zone and tick: a pass over a zone of N records takes
/// N / BUDGET ticks (100,000 records: 2.5 s).
const BUDGET: usize = 10_000;
const TICK_MS: ngx_msec_t = 250;

static TIMER: Timer = Timer::new();

/// Module `init_process` part: arms the sweep timer in worker 0.
pub(super) fn start(p: &NewProcess) {
    if p.worker != 0 || zone::names().is_empty() {
        return;
    }
    TIMER.start(p.log, tick, true, TICK_MS);
}

extern "C" fn tick(_ev: *mut ngx_event_t) {
    if timer::shutting_down() {
        return;
    }
    for name in zone::names() {
        if let Some((_, store)) = zone::lookup(&name) {
            store.sweep(BUDGET, now_ms(), zone::participant());
        }
    }
    TIMER.again(TICK_MS);
}
