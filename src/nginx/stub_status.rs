//! nginx's connection counters (`stub_status`), read in-process.
//!
//! `ngx_stat_*` exist only in an nginx built with the stub_status module, so they are
//! looked up at run time: on a build without them the gauges are left out, not zero.

use crate::exposition::StubStatus;
use ngx::ffi::ngx_atomic_t;
use std::sync::OnceLock;

/// Addresses of the seven `ngx_atomic_t *ngx_stat_*` variables.
struct Symbols([usize; 7]);

const NAMES: [&std::ffi::CStr; 7] = [
    c"ngx_stat_accepted",
    c"ngx_stat_handled",
    c"ngx_stat_requests",
    c"ngx_stat_active",
    c"ngx_stat_reading",
    c"ngx_stat_writing",
    c"ngx_stat_waiting",
];

fn symbols() -> Option<&'static Symbols> {
    static SYMBOLS: OnceLock<Option<Symbols>> = OnceLock::new();
    SYMBOLS
        .get_or_init(|| {
            let mut out = [0usize; 7];
            for (slot, name) in out.iter_mut().zip(NAMES) {
                // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads.
                let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
                if p.is_null() {
                    return None;
                }
                *slot = p as usize;
            }
            Some(Symbols(out))
        })
        .as_ref()
}

/// Current values, or `None` when this nginx has no stub_status counters.
pub fn read() -> Option<StubStatus> {
    let s = symbols()?;
    let v = |i: usize| -> u64 {
        // SAFETY:
        // - `s.0[i]` is the address of an `ngx_atomic_t *` variable exported by nginx;
        // - nginx points it into its own shared zone at start and never frees it, so it
        //   is read afresh each time (it moves once, during start-up);
        // - a volatile read of an aligned machine word is what nginx's own
        //   stub_status handler does.
        unsafe {
            let var = s.0[i] as *const *const ngx_atomic_t;
            let p = std::ptr::read_volatile(var);
            if p.is_null() {
                0
            } else {
                std::ptr::read_volatile(p) as u64
            }
        }
    };
    Some(StubStatus {
        accepted: v(0),
        handled: v(1),
        requests: v(2),
        active: v(3),
        reading: v(4),
        writing: v(5),
        waiting: v(6),
    })
}
