//! A worker's own timers (the process sampler, the epoch announcements, the expiry
//! sweep): one static event each, armed from `init_process` and re-armed by its
//! handler, all on the worker's event-loop thread.

use crate::nginx::bitfield::{self, c};
use ngx::ffi::{ngx_event_t, ngx_log_t, ngx_msec_t};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;

/// A timer event that lives as long as the process.
pub struct Timer(UnsafeCell<MaybeUninit<ngx_event_t>>);

// SAFETY: only the worker's event-loop thread touches a timer: `start` runs in
// `init_process`, `again` in the event's handler, both on that thread.
unsafe impl Sync for Timer {}

impl Timer {
    /// An idle event (all-zero, as nginx makes its events with `ngx_pcalloc`).
    pub const fn new() -> Timer {
        Timer(UnsafeCell::new(MaybeUninit::zeroed()))
    }

    /// Arms the timer for the first time: `handler` runs in `ms`. A `cancelable` timer
    /// does not hold up a worker shutting down gracefully.
    pub fn start(
        &'static self,
        log: *mut ngx_log_t,
        handler: extern "C" fn(*mut ngx_event_t),
        cancelable: bool,
        ms: ngx_msec_t,
    ) {
        // SAFETY: the event is all-zero bytes (a valid idle event) or was started before
        // on this thread; nginx keeps a pointer to it while it is armed, and it lives as
        // long as the process.
        unsafe {
            let ev = &mut *(*self.0.get()).as_mut_ptr();
            ev.handler = Some(handler);
            ev.log = log;
            ev.data = std::ptr::null_mut();
            bitfield::set(ev, c::EVENT_CANCELABLE, u32::from(cancelable));
            ngx::ffi::ngx_add_timer(ev, ms);
        }
    }

    /// Arms the timer again, from its handler (the event just fired, so is not armed).
    pub fn again(&'static self, ms: ngx_msec_t) {
        // SAFETY: as in `start`, on the event-loop thread that runs the handler.
        unsafe { ngx::ffi::ngx_add_timer((*self.0.get()).as_mut_ptr(), ms) };
    }
}

/// Whether nginx is shutting this process down (its flags, set by its signal handler).
/// Read from any thread: a stale read only delays a stop by one look.
pub fn shutting_down() -> bool {
    // SAFETY: word-sized nginx globals, read with volatile loads as nginx's own loop
    // reads them after a signal.
    unsafe {
        std::ptr::read_volatile(std::ptr::addr_of!(ngx::ffi::ngx_quit)) != 0
            || std::ptr::read_volatile(std::ptr::addr_of!(ngx::ffi::ngx_terminate)) != 0
            || std::ptr::read_volatile(std::ptr::addr_of!(ngx::ffi::ngx_exiting)) != 0
    }
}
