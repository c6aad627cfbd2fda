//! The expiry sweep: in worker 0, a timer that deletes the series of families declared
//! with `expire` once no update changed them for that long, a bounded batch of every
//! zone's records per tick, off the request path.

use super::zone;
use crate::metrics::store::now_ms;
use crate::nginx::bitfield;
use ngx::ffi::{ngx_cycle_t, ngx_event_t, ngx_msec_t};
use std::mem::MaybeUninit;

/// Records looked at per zone and tick: a pass over a zone of N records takes
/// N / BUDGET ticks (100,000 records: 2.5 s).
const BUDGET: usize = 10_000;
const TICK_MS: ngx_msec_t = 250;

static mut TIMER: MaybeUninit<ngx_event_t> = MaybeUninit::zeroed();

/// Module `init_process` part: arms the sweep timer in worker 0.
///
/// # Safety
/// `cycle` is the running cycle, as nginx passes it to `init_process`, in the process
/// that runs it.
pub(super) unsafe fn start(cycle: *mut ngx_cycle_t) {
    // SAFETY: reading the worker number nginx set before calling init_process.
    if unsafe { ngx::ffi::ngx_worker } != 0 || zone::names().is_empty() {
        return;
    }
    // SAFETY: the timer event is a static only this thread touches; nginx keeps a
    // pointer to it while it is armed, and it lives as long as the process.
    unsafe {
        let ev = (*std::ptr::addr_of_mut!(TIMER)).as_mut_ptr();
        (*ev).handler = Some(tick);
        (*ev).log = (*cycle).log;
        (*ev).data = std::ptr::null_mut();
        bitfield::set(&mut *ev, bitfield::c::EVENT_CANCELABLE, 1);
        ngx::ffi::ngx_add_timer(ev, TICK_MS);
    }
}

unsafe extern "C" fn tick(ev: *mut ngx_event_t) {
    // SAFETY: reading nginx's shutdown flags from its own (only) thread.
    let stopping = unsafe {
        ngx::ffi::ngx_exiting != 0 || ngx::ffi::ngx_quit != 0 || ngx::ffi::ngx_terminate != 0
    };
    if stopping {
        return;
    }
    for name in zone::names() {
        if let Some((_, store)) = zone::lookup(&name) {
            store.sweep(BUDGET, now_ms(), zone::participant());
        }
    }
    // SAFETY: `ev` is the static timer event, fired and not armed now.
    unsafe { ngx::ffi::ngx_add_timer(ev, TICK_MS) };
}
