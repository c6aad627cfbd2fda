//! The hot path: plain C functions that LuaJIT's FFI calls (and compiles into traces).
//! None of them allocates on the heap or raises, and only a histogram's first value in
//! a chunk of its range takes the zone lock (to make that chunk: a few times in a
//! series' life); a bad handle or value, or a full zone, is counted in the zone's error
//! counters and reported by the return value (`FFI_OK`, `FFI_REFUSED`, `FFI_STALE`).

use super::slots;
use crate::metrics::value::UpdateError;
use crate::metrics::{counter, exemplar, gauge, store, Reason, Store};
use crate::nginx::{request, zone};
use ngx::ffi::ngx_http_request_t;
use ngx::http::Request;

#[inline(always)]
fn with<F: FnOnce(&crate::shm::Region<'static>, u64) -> Result<(), UpdateError>>(
    handle: u64,
    f: F,
) -> i32 {
    let (slot, handle) = slots::split(handle);
    let Some(r) = slots::region(slot) else {
        return FFI_REFUSED;
    };
    match f(&r, handle) {
        Ok(()) => FFI_OK,
        Err(e) => refused(r, e),
    }
}

/// Counts a refused update in its zone and says what to return. Out of line: the
/// update's success path stays free of the error path's set-up.
#[cold]
#[inline(never)]
fn refused(r: crate::shm::Region<'static>, e: UpdateError) -> i32 {
    let reason = Reason::from(e);
    if let Ok(s) = Store::attach(r) {
        s.count_error(reason);
    }
    if reason == Reason::StaleHandle {
        FFI_STALE
    } else {
        FFI_REFUSED
    }
}

/// What an update function returns (exported to Lua as `codes`, by these names, the
/// way lua-resty-core names its `FFI_OK`...): applied;
pub const FFI_OK: i32 = 0;
/// refused and counted (a bad handle or value, a full zone): retrying cannot help;
pub const FFI_REFUSED: i32 = -1;
/// dropped because its series was deleted (counted as `stale_handle`): resolve the
/// labels again.
pub const FFI_STALE: i32 = -2;

/// Adds a whole number to a counter.
#[no_mangle]
pub extern "C" fn ngx_prom_counter_inc(handle: u64, n: u64) -> i32 {
    with(handle, |r, h| counter::inc(r, h, n))
}

/// Adds a non-negative number to a counter.
#[no_mangle]
pub extern "C" fn ngx_prom_counter_add(handle: u64, v: f64) -> i32 {
    with(handle, |r, h| counter::add(r, h, v))
}

#[no_mangle]
pub extern "C" fn ngx_prom_gauge_set(handle: u64, v: f64) -> i32 {
    with(handle, |r, h| gauge::set(r, h, v))
}

#[no_mangle]
pub extern "C" fn ngx_prom_gauge_add(handle: u64, v: f64) -> i32 {
    with(handle, |r, h| gauge::add(r, h, v))
}

#[no_mangle]
pub extern "C" fn ngx_prom_histogram_observe(handle: u64, v: f64) -> i32 {
    with(handle, |r, h| store::observe(r, h, v, zone::participant))
}

/// Milliseconds since the epoch from the coarse real-time clock (the vDSO's, no system
/// call, a few ms of resolution): an exemplar's timestamp.
#[inline]
fn coarse_now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME_COARSE exists on
    // every Linux nginx runs on (2.6.32+), and on failure `ts` stays zero.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts);
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The update `update` made (its return code `rc`), then exemplar `id` (`len` bytes)
/// for value `v` kept in the series if the update went in: a refused id is counted
/// (`invalid_exemplar`), the update's code is returned either way.
///
/// # Safety
/// `id` points to `len` readable bytes (or `len` is 0).
#[inline(always)]
unsafe fn with_exemplar(
    handle: u64,
    rc: i32,
    histogram: bool,
    v: f64,
    id: *const u8,
    len: usize,
) -> i32 {
    if rc != FFI_OK || id.is_null() {
        return rc;
    }
    let (slot, h) = slots::split(handle);
    let Some(r) = slots::region(slot) else {
        return rc;
    };
    // SAFETY: per the contract: the caller's string, alive for this call.
    let id = unsafe { std::slice::from_raw_parts(id, len) };
    // The update checked the handle (its series is live in this event handler: see
    // shm::epoch), so the words found from it are the series' own.
    if exemplar::record_after_update(&r, h, histogram, v, id, coarse_now_ms()).is_err() {
        if let Ok(s) = Store::attach(r) {
            s.count_error(Reason::InvalidExemplar);
        }
    }
    rc
}

/// [`ngx_prom_counter_add`] with an exemplar: trace id `id`, `len` bytes, kept if the
/// series keeps exemplars (its family's `exemplars` option).
///
/// # Safety
/// `id` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ngx_prom_counter_add_x(
    handle: u64,
    v: f64,
    id: *const u8,
    len: usize,
) -> i32 {
    let rc = ngx_prom_counter_add(handle, v);
    // SAFETY: per the contract.
    unsafe { with_exemplar(handle, rc, false, v, id, len) }
}

/// [`ngx_prom_histogram_observe`] with an exemplar, kept in the slot of the value's
/// classic bucket (see [`ngx_prom_counter_add_x`]).
///
/// # Safety
/// `id` points to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ngx_prom_histogram_observe_x(
    handle: u64,
    v: f64,
    id: *const u8,
    len: usize,
) -> i32 {
    let rc = ngx_prom_histogram_observe(handle, v);
    // SAFETY: per the contract.
    unsafe { with_exemplar(handle, rc, true, v, id, len) }
}

/// Counts an error that Lua detected (a wrong label count, a failed lookup).
#[no_mangle]
pub extern "C" fn ngx_prom_count_error(slot: u32, reason: u32) {
    if let (Some(s), Some(reason)) = (slots::store(slot as usize), Reason::from_u32(reason)) {
        s.count_error(reason);
    }
}

/// Takes the zone lock and never releases it, as a worker that crashes while creating a
/// series would. For failure-injection tests and drills only: the worker that calls it
/// must then be killed, and the next process that needs the lock takes it over.
/// Returns 0, or -1 for an unknown slot. Only in builds with the `debug-hooks` feature.
#[cfg(feature = "debug-hooks")]
#[no_mangle]
pub extern "C" fn ngx_prom_debug_seize_lock(slot: u32) -> i32 {
    let Some(s) = slots::store(slot as usize) else {
        return -1;
    };
    std::mem::forget(s.arena().lock(zone::my_pid(), &zone::alive));
    0
}

/// What several updates in one call came to, as `ngx_prom_record_request` returns it:
/// for each update dropped because its handle was stale, its bit (`STALE_BIT` times the
/// field's place in `RequestHandles`); `BATCH_REFUSED` when another was refused (counted as
/// invalid_value or zone_full: retrying cannot help). 0 when all went in. An update
/// reported stale was not applied, and every other one was, exactly once: the caller
/// renews the stale ones' handles and records those again, and the request is counted
/// once in each series.
#[derive(Default)]
struct Outcome(i32);

/// The bit of `requests`; the next fields' bits follow in struct order.
pub const STALE_BIT: i32 = 1;
/// Set when an update was refused for a reason other than a stale handle (exported to
/// Lua in `codes`).
pub const BATCH_REFUSED: i32 = 1 << 6;

impl Outcome {
    #[inline(always)]
    fn add(&mut self, bit: i32, rc: i32) {
        if rc == FFI_STALE {
            self.0 |= bit;
        } else if rc != FFI_OK {
            self.0 |= BATCH_REFUSED;
        }
    }
}

/// Starts deleting the series of `handle` and keeps the zone lock, as a worker killed
/// in the middle of a delete would. For failure-injection tests and drills only: the
/// worker that calls it must then be killed; the next process that needs the lock
/// takes it over and finishes the delete. Returns 0, or -1 for a bad handle.
/// Only in builds with the `debug-hooks` feature.
#[cfg(feature = "debug-hooks")]
#[no_mangle]
pub extern "C" fn ngx_prom_debug_delete_and_die(handle: u64) -> i32 {
    let (slot, handle) = slots::split(handle);
    match slots::store(slot) {
        Some(s) if s.begin_delete_and_keep_lock(handle, zone::participant()) => 0,
        _ => -1,
    }
}

/// Makes this process SIGKILL itself the next time it reaches fault point `point`
/// (`crate::shm::faults::KillPoint`: 1 in a delete, 2 in an expiry sweep's second
/// delete, 3 making a series in a reused block, 4 taking the last block off a free
/// list). For failure-injection tests only: the
/// other processes must take the lock over and repair what it left. Returns 0, or -1
/// for an unknown point. Only in builds with the `debug-hooks` feature.
#[cfg(feature = "debug-hooks")]
#[no_mangle]
pub extern "C" fn ngx_prom_debug_die_at(point: u32) -> i32 {
    use crate::shm::faults;
    fn die() {
        // SAFETY: kill(2) on this very process; SIGKILL cannot be caught, so it ends
        // here, as a worker killed from outside at this instruction would.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    match faults::KillPoint::from_u32(point) {
        Some(p) => {
            faults::arm(p, die);
            0
        }
        None => -1,
    }
}

/// What `ngx_prom_request_facts` reports about a request: Lua picks its series by them
/// (the status, whether the upstream answered), then hands them to
/// `ngx_prom_record_request`. Doubles: LuaJIT reads them as plain numbers, where 64-bit
/// integers would come back boxed. Declared for Lua in `lua/ngxprom.lua`.
#[repr(C)]
pub struct Facts {
    pub status: f64,
    pub request_ms: f64,
    /// -1 when the request was not proxied.
    pub upstream_ms: f64,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    /// 1 when the response came from the upstream (it sent a header), else 0.
    pub from_upstream: f64,
}

/// Fills `out` with the status, times and sizes of request `r`, read natively.
///
/// # Safety
/// `r` is the current request in its log phase; `out` points to a writable `Facts`.
#[no_mangle]
pub unsafe extern "C" fn ngx_prom_request_facts(
    r: *const ngx_http_request_t,
    out: *mut Facts,
) -> i32 {
    if r.is_null() || out.is_null() {
        return -1;
    }
    // SAFETY: per the contract.
    unsafe {
        let f = request::facts(Request::from_ngx_http_request(r.cast_mut()));
        *out = Facts {
            status: f64::from(f.status),
            request_ms: f.request_ms as f64,
            upstream_ms: f.upstream_ms.map_or(-1.0, |ms| ms as f64),
            received_bytes: f.received_bytes as f64,
            sent_bytes: f.sent_bytes as f64,
            from_upstream: if f.from_upstream { 1.0 } else { 0.0 },
        };
    }
    0
}

/// The series one request updates (`ngxprom.log`'s helper, the gateway's plugin); 0
/// leaves one out. Declared for Lua in `lua/ngxprom.lua`.
#[repr(C)]
pub struct RequestHandles {
    pub requests: u64,
    pub request_latency: u64,
    pub upstream_latency: u64,
    /// The request's time minus the upstream's (the gateway's own share).
    pub gateway_latency: u64,
    pub received_bytes: u64,
    pub sent_bytes: u64,
    /// Milliseconds per histogram unit: 1000 for seconds, 1 for milliseconds.
    pub ms_per_unit: f64,
    /// The request's exemplar id (`exemplar_len` bytes, see `ngx_prom_request_exemplar`)
    /// for the request count and the three latencies; `exemplar_len` 0: none.
    pub exemplar: *const u8,
    pub exemplar_len: usize,
}

/// Records what `ngx_prom_request_facts` read into the series of `h`, in one call: the
/// request count, the three latencies (the gateway's share is request minus upstream)
/// and the bytes in each direction; with `h.exemplar_len` not 0, the count and the
/// latencies carry the exemplar `h.exemplar` (the byte counts never do). Returns 0
/// when every update went in, -1 for a null pointer, else the bits of what did not
/// (see `Outcome`): each stale update's field bit (requests 1, request_latency 2,
/// upstream_latency 4, gateway_latency 8, received_bytes 16, sent_bytes 32), and 64
/// when another update was refused. A refused exemplar is counted
/// (`invalid_exemplar`) and reported by no bit: its update went in.
///
/// # Safety
/// `f` and `h` point to valid structs; `h.exemplar` to `h.exemplar_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn ngx_prom_record_request(f: *const Facts, h: *const RequestHandles) -> i32 {
    if f.is_null() || h.is_null() {
        return -1;
    }
    // SAFETY: per the contract.
    let (f, h) = unsafe { (&*f, &*h) };
    // One branch here: a request without an exemplar runs the updates it ran before.
    if h.exemplar_len == 0 || h.exemplar.is_null() {
        record::<false>(f, h)
    } else {
        record::<true>(f, h)
    }
}

/// [`ngx_prom_record_request`]'s updates, with the exemplar when `X`.
#[inline(always)]
fn record<const X: bool>(f: &Facts, h: &RequestHandles) -> i32 {
    // The exemplar after an update that went in (see `with_exemplar`).
    let x = |handle: u64, rc: i32, histogram: bool, v: f64| -> i32 {
        if X {
            // SAFETY: per `ngx_prom_record_request`'s contract.
            unsafe { with_exemplar(handle, rc, histogram, v, h.exemplar, h.exemplar_len) }
        } else {
            rc
        }
    };
    let mut rc = Outcome::default();
    if h.requests != 0 {
        rc.add(
            STALE_BIT,
            x(h.requests, ngx_prom_counter_inc(h.requests, 1), false, 1.0),
        );
    }
    let unit = h.ms_per_unit;
    if h.request_latency != 0 {
        let v = f.request_ms / unit;
        rc.add(
            STALE_BIT << 1,
            x(
                h.request_latency,
                ngx_prom_histogram_observe(h.request_latency, v),
                true,
                v,
            ),
        );
    }
    if h.upstream_latency != 0 && f.upstream_ms >= 0.0 {
        let v = f.upstream_ms / unit;
        rc.add(
            STALE_BIT << 2,
            x(
                h.upstream_latency,
                ngx_prom_histogram_observe(h.upstream_latency, v),
                true,
                v,
            ),
        );
    }
    if h.gateway_latency != 0 {
        let own = if f.upstream_ms >= 0.0 {
            (f.request_ms - f.upstream_ms).max(0.0)
        } else {
            f.request_ms
        };
        let v = own / unit;
        rc.add(
            STALE_BIT << 3,
            x(
                h.gateway_latency,
                ngx_prom_histogram_observe(h.gateway_latency, v),
                true,
                v,
            ),
        );
    }
    if h.received_bytes != 0 {
        rc.add(
            STALE_BIT << 4,
            ngx_prom_counter_inc(h.received_bytes, f.received_bytes as u64),
        );
    }
    if h.sent_bytes != 0 {
        rc.add(
            STALE_BIT << 5,
            ngx_prom_counter_inc(h.sent_bytes, f.sent_bytes as u64),
        );
    }
    rc.0
}

/// Writes the exemplar id of request `r` to `buf` (`cap` bytes) and returns its
/// length, 0 for none: the trace id of its W3C `traceparent` header, else its
/// `$request_id` (see `request::exemplar_id`). A `traceparent` that is there but
/// invalid (malformed, uppercase, all-zero ids, too long, repeated) is never used: it
/// is counted as `invalid_exemplar` in the zone of `slot`, and `$request_id` taken.
///
/// # Safety
/// `r` is the current request in its log phase; `buf` points to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ngx_prom_request_exemplar(
    r: *const ngx_http_request_t,
    slot: u32,
    buf: *mut u8,
    cap: usize,
) -> i32 {
    if r.is_null() || buf.is_null() {
        return 0;
    }
    // SAFETY: per the contract.
    let (len, invalid) =
        unsafe { request::exemplar_id(r.cast_mut(), std::slice::from_raw_parts_mut(buf, cap)) };
    if invalid {
        if let Some(s) = slots::store(slot as usize) {
            s.count_error(Reason::InvalidExemplar);
        }
    }
    len as i32
}

/// The return codes, by the names the Rust side gives them (see `FFI_OK`): Lua's
/// bindings compare with these, never with literals of their own.
pub fn codes(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    let t = lua.create_table()?;
    for (name, code) in [
        ("FFI_OK", FFI_OK),
        ("FFI_REFUSED", FFI_REFUSED),
        ("FFI_STALE", FFI_STALE),
        ("STALE_BIT", STALE_BIT),
        ("BATCH_REFUSED", BATCH_REFUSED),
    ] {
        t.set(name, code)?;
    }
    Ok(t)
}

/// The size and field offsets of each struct `lua/ngxprom.lua` declares, from the Rust
/// definitions: t/nginx.rs compares them with LuaJIT's `ffi.sizeof`/`ffi.offsetof` of
/// the Lua declarations, so the two cannot drift apart.
pub fn layouts(lua: &mlua::Lua) -> mlua::Result<mlua::Table> {
    use std::mem::{offset_of, size_of};
    let table = |size: usize, fields: &[(&str, usize)]| -> mlua::Result<mlua::Table> {
        let t = lua.create_table()?;
        t.set("size", size)?;
        let offsets = lua.create_table()?;
        for (name, at) in fields {
            offsets.set(*name, *at)?;
        }
        t.set("offsets", offsets)?;
        Ok(t)
    };
    let all = lua.create_table()?;
    all.set(
        "ngx_prom_facts_t",
        table(
            size_of::<Facts>(),
            &[
                ("status", offset_of!(Facts, status)),
                ("request_ms", offset_of!(Facts, request_ms)),
                ("upstream_ms", offset_of!(Facts, upstream_ms)),
                ("received_bytes", offset_of!(Facts, received_bytes)),
                ("sent_bytes", offset_of!(Facts, sent_bytes)),
                ("from_upstream", offset_of!(Facts, from_upstream)),
            ],
        )?,
    )?;
    all.set(
        "ngx_prom_request_handles_t",
        table(
            size_of::<RequestHandles>(),
            &[
                ("requests", offset_of!(RequestHandles, requests)),
                (
                    "request_latency",
                    offset_of!(RequestHandles, request_latency),
                ),
                (
                    "upstream_latency",
                    offset_of!(RequestHandles, upstream_latency),
                ),
                (
                    "gateway_latency",
                    offset_of!(RequestHandles, gateway_latency),
                ),
                ("received_bytes", offset_of!(RequestHandles, received_bytes)),
                ("sent_bytes", offset_of!(RequestHandles, sent_bytes)),
                ("ms_per_unit", offset_of!(RequestHandles, ms_per_unit)),
                ("exemplar", offset_of!(RequestHandles, exemplar)),
                ("exemplar_len", offset_of!(RequestHandles, exemplar_len)),
            ],
        )?,
    )?;
    Ok(all)
}
