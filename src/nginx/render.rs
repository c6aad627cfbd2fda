//! A scrape rendered off the event loop.
//!
//! Rendering 100k series takes tens of milliseconds, compressing it as many again;
//! done in the worker, it would hold up every other request of that worker for as
//! long. The handler hands the work (checking the selection, formatting, gzip) to
//! nginx's thread pool and returns; the worker goes on serving. When the thread is
//! done, nginx runs `rendered` back in the worker, which sends the body without copying
//! it: the response buffer points into the rendered bytes, freed with the request pool.
//!
//! nginx does not wait for thread tasks when a worker shuts down gracefully (`nginx -s
//! reload`, `quit`): it exits once no timer but cancelable ones is left. A render in
//! the pool therefore keeps a timer of its own armed, not cancelable, until it is back
//! in the worker; the response then holds the worker as any other does (the write
//! timer of `send_timeout` while the client reads).

use super::Module;
use crate::config::limits::{self, Limits};
use crate::exposition::{self, Format, Scrape};
use crate::nginx::bitfield::{self, c};
use ngx::core::Status;
use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_event_t, ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_table_elt_t,
    ngx_thread_pool_t,
};
use ngx::http::HttpModule;
use std::ffi::c_void;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// How often the timer that holds a shutting-down worker for a render comes round; it
/// is re-armed until the render is back, so this only bounds the wake-ups.
const HOLD_MS: ngx::ffi::ngx_msec_t = 60_000;

/// Content type of error messages.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// Every response of the handler depends on these request headers.
const VARY: &str = "Accept, Accept-Encoding";

/// The response, made by `render`.
struct Output {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    gzip: bool,
    /// The most memory the rendering took (the exposition, before compression).
    peak: usize,
    /// Headers of this kind of answer beyond those every answer has.
    headers: &'static [(&'static str, &'static str)],
}

impl Output {
    fn new(status: u16, body: Vec<u8>) -> Output {
        Output {
            status,
            content_type: TEXT_PLAIN,
            peak: body.capacity(),
            body,
            gzip: false,
            headers: &[],
        }
    }
}

/// One scrape, owned by the request (a pool cleanup frees it).
struct Job {
    /// What to render (decided in the worker, done in the thread), and whether to
    /// compress it.
    scrape: Option<(Scrape<'static>, bool)>,
    out: Output,
    /// Set by the thread when `out` is complete.
    done: AtomicBool,
    /// Armed (not cancelable) while the render runs in a pool thread.
    hold: ngx_event_t,
    /// The scrape's share of its worker's limits (none for a refusal).
    claim: Option<limits::Claim>,
}

/// A job that owns what it is given; its `hold` timer starts unarmed.
fn job(scrape: Option<(Scrape<'static>, bool)>, out: Output, done: bool) -> Job {
    Job {
        scrape,
        out,
        claim: None,
        done: AtomicBool::new(done),
        // SAFETY: `ngx_event_t` is a C struct of integers, pointers and bitfields whose
        // all-zero value is an idle event (nginx makes its events with ngx_pcalloc).
        hold: unsafe { std::mem::zeroed() },
    }
}

/// Renders `scrape` for `r` (gzipped with `gzip`), in `pool` when given, else right
/// here; then sends it. Beyond the worker's `limits`, answers `503` instead. Returns
/// what a content handler returns.
pub fn serve(
    r: &mut ngx_http_request_t,
    pool: Option<std::ptr::NonNull<ngx_thread_pool_t>>,
    limits: Limits,
    scrape: Scrape<'static>,
    gzip: bool,
) -> ngx_int_t {
    let hint = LAST_BODY_LEN.load(Ordering::Relaxed);
    let Some(claim) = limits::admit(limits, hint + hint / 8) else {
        return refuse(
            r,
            503,
            "Service Unavailable: this worker holds as many scrapes as \
             prometheus_max_renders and prometheus_max_pinned allow\n"
                .into(),
            &[("Retry-After", RETRY_AFTER)],
        );
    };
    let mut scrape_job = job(Some((scrape, gzip)), Output::new(500, Vec::new()), false);
    scrape_job.claim = Some(claim);
    let Some(job) = own(r, scrape_job) else {
        return Status::NGX_ERROR.0;
    };
    if let Some(pool) = pool {
        if post(r, pool, job).is_ok() {
            return Status::NGX_DONE.0;
        }
    }
    render(job);
    settle(job);
    send(r, job)
}

/// Seconds a client refused for the limits is told to wait.
const RETRY_AFTER: &str = "1";

/// The job is rendered (in the worker's thread): its claim now holds its body.
fn settle(job: &mut Job) {
    if let Some(claim) = job.claim.as_mut() {
        claim.settle(job.out.body.capacity(), job.out.peak);
    }
}

/// Answers `status` with `message` as a plain-text body (a refused request: no
/// rendering, no metric data).
pub fn refuse(
    r: &mut ngx_http_request_t,
    status: u16,
    message: String,
    headers: &[(&'static str, &'static str)],
) -> ngx_int_t {
    let job = job(None, Output::new(status, message.into_bytes()), true);
    for (k, v) in headers {
        // SAFETY: live request, headers not sent yet.
        if unsafe { push_header(r, k, v) }.is_null() {
            return Status::NGX_ERROR.0;
        }
    }
    match own(r, job) {
        Some(job) => send(r, job),
        None => Status::NGX_ERROR.0,
    }
}

/// Moves `job` to the heap, to be dropped with the request pool. The reference is
/// only used while the request lives (`'j` is not tied to `r` so that `r` stays usable).
fn own<'j>(r: &mut ngx_http_request_t, job: Job) -> Option<&'j mut Job> {
    // SAFETY: `r.pool` lives as long as the request; the cleanup runs once, when the
    // pool is destroyed, after the response (which points into the job's body) is sent.
    unsafe {
        let cln = ngx::ffi::ngx_pool_cleanup_add(r.pool, 0);
        if cln.is_null() {
            return None;
        }
        let raw = Box::into_raw(Box::new(job));
        (*cln).handler = Some(drop_job);
        (*cln).data = raw.cast();
        Some(&mut *raw)
    }
}

unsafe extern "C" fn drop_job(data: *mut c_void) {
    // SAFETY: `data` is the `Box<Job>` leaked in `own`, dropped exactly once here, in
    // the worker; its timer is disarmed first (`rendered` has done so already unless
    // the pool is destroyed some other way), so nginx's timer tree never points into it.
    // The claim goes last: it trims the allocator after a large body is freed.
    unsafe {
        let mut job = Box::from_raw(data.cast::<Job>());
        release_hold(&mut job.hold);
        let claim = job.claim.take();
        drop(job);
        drop(claim);
    }
}

/// Disarms a job's hold timer if armed.
fn release_hold(hold: &mut ngx_event_t) {
    if bitfield::get(hold, c::EVENT_TIMER_SET) != 0 {
        // SAFETY: the event is armed, so it is in this worker's timer tree.
        unsafe { ngx::ffi::ngx_del_timer(hold) };
    }
}

/// Fires only when a render takes longer than `HOLD_MS`: holds on for another round.
unsafe extern "C" fn hold_again(ev: *mut ngx_event_t) {
    // SAFETY: `ev` is a job's hold event, just fired (so not armed), inside a job that
    // lives until `rendered` has disarmed it.
    unsafe { ngx::ffi::ngx_add_timer(ev, HOLD_MS) };
}

fn render(job: &mut Job) {
    #[cfg(feature = "debug-hooks")]
    {
        let ms = RENDER_DELAY_MS.load(Ordering::Relaxed);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
        }
    }
    if let Some((s, gzip)) = job.scrape.take() {
        job.out = output(&s, gzip);
    }
    job.done.store(true, Ordering::Release);
}

/// Length of this process's last rendered exposition (before compression). A scrape
/// reserves a little more than that up front: growing the buffer by doubling copied
/// tens of megabytes at 100k series. Capacity a smaller scrape leaves unused is never
/// touched, so never resident.
static LAST_BODY_LEN: AtomicUsize = AtomicUsize::new(0);

/// Checks the selection, renders and compresses: everything that reads the zone.
fn output(s: &Scrape<'_>, gzip_it: bool) -> Output {
    let hint = LAST_BODY_LEN.load(Ordering::Relaxed);
    let mut body = Vec::with_capacity((hint + hint / 8).max(64 * 1024));
    match exposition::render(&mut body, s) {
        Ok(()) => {
            // The status page is no measure of the next scrape's size.
            if s.format != Format::Html {
                LAST_BODY_LEN.store(body.len(), Ordering::Relaxed);
            }
            let peak = body.capacity();
            let gzipped = if gzip_it { gzip(&body) } else { None };
            Output {
                status: 200,
                content_type: s.format.content_type(),
                gzip: gzipped.is_some(),
                peak,
                body: gzipped.unwrap_or(body),
                headers: s.format.headers(),
            }
        }
        Err(not_found) => Output {
            peak: body.capacity(),
            ..Output::new(404, format!("{not_found}\n").into_bytes())
        },
    }
}

/// gzip at the fastest level: an exposition shrinks about tenfold even so, and the
/// CPU spent per scrape stays small.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok()
}

/// Queues the rendering on `pool`; the request waits (blocked, with a reference held)
/// until `rendered` runs.
fn post(
    r: &mut ngx_http_request_t,
    pool: std::ptr::NonNull<ngx_thread_pool_t>,
    job: &mut Job,
) -> Result<(), ()> {
    // SAFETY:
    // - the task is allocated from the request pool, which outlives it: the request is
    //   blocked (`blocked`, `count`) until `rendered` has run in this worker;
    // - the thread only touches `*job`, which nothing else touches until `done` is set
    //   and the pool's completion notifies this worker;
    // - `r.ctx` has a slot for every http module, ours included.
    unsafe {
        let task = ngx::ffi::ngx_thread_task_alloc(r.pool, std::mem::size_of::<*mut Job>());
        if task.is_null() {
            return Err(());
        }
        *(*task).ctx.cast::<*mut Job>() = job;
        (*task).handler = Some(render_in_thread);
        (*task).event.data = (r as *mut ngx_http_request_t).cast();
        (*task).event.handler = Some(rendered);
        if ngx::ffi::ngx_thread_task_post(pool.as_ptr(), task) != Status::NGX_OK.0 {
            return Err(());
        }
        // No epoch announcement of this worker until the render is back (`rendered`).
        super::quiesce::render_posted();
        *r.ctx.add(Module::module().ctx_index) = (job as *mut Job).cast();
        // Not cancelable: a worker shutting down waits for it (see the module doc).
        job.hold.handler = Some(hold_again);
        job.hold.data = (job as *mut Job).cast();
        job.hold.log = (*r.connection).log;
        ngx::ffi::ngx_add_timer(&mut job.hold, HOLD_MS);
        let main = &mut *r.main;
        let (blocked, count) = (c::REQUEST_BLOCKED, c::REQUEST_COUNT);
        bitfield::set(main, blocked, bitfield::get(main, blocked) + 1);
        bitfield::set(main, count, bitfield::get(main, count) + 1);
        bitfield::set(r, c::REQUEST_AIO, 1);
        r.write_event_handler = Some(send_rendered);
    }
    Ok(())
}

/// Runs in a pool thread: touches only the job (the store is shared memory read with
/// atomics).
unsafe extern "C" fn render_in_thread(data: *mut c_void, _log: *mut ngx_log_t) {
    // SAFETY: `data` is the task context written in `post`: a pointer to the job.
    let job = unsafe { &mut **data.cast::<*mut Job>() };
    render(job);
}

/// Back in the worker once the thread is done.
unsafe extern "C" fn rendered(ev: *mut ngx_event_t) {
    // SAFETY: the event's data is the request `post` blocked; it is still alive, and so
    // is the job its ctx slot holds (`send_rendered` clears the slot, later).
    unsafe {
        super::quiesce::render_back();
        let r = (*ev).data.cast::<ngx_http_request_t>();
        let job = *(*r).ctx.add(Module::module().ctx_index) as *mut Job;
        if !job.is_null() {
            release_hold(&mut (*job).hold);
            settle(&mut *job);
        }
        let c = (*r).connection;
        let main = &mut *(*r).main;
        bitfield::set(
            main,
            c::REQUEST_BLOCKED,
            bitfield::get(main, c::REQUEST_BLOCKED) - 1,
        );
        bitfield::set(&mut *r, c::REQUEST_AIO, 0);
        // `send_rendered`, or nginx's finalizer if the request ended meanwhile (the
        // client went away): nginx swaps the handler when it cannot free a blocked request.
        if let Some(handler) = (*r).write_event_handler {
            handler(r);
        }
        ngx::ffi::ngx_http_run_posted_requests(c);
    }
}

unsafe extern "C" fn send_rendered(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls write handlers with a live request; our ctx slot holds the
    // job `post` stored, freed only with the request pool.
    unsafe {
        let job = *(*r).ctx.add(Module::module().ctx_index) as *mut Job;
        if job.is_null() || !(*job).done.load(Ordering::Acquire) {
            return; // a write event before the thread finished: nothing to send yet
        }
        *(*r).ctx.add(Module::module().ctx_index) = std::ptr::null_mut();
        let rc = send(&mut *r, &*job);
        ngx::ffi::ngx_http_finalize_request(r, rc);
    }
}

/// Adds a response header whose key and value are static strings.
///
/// # Safety
/// `r` is a live request whose headers are not sent yet.
unsafe fn push_header(
    r: &mut ngx_http_request_t,
    key: &'static str,
    value: &'static str,
) -> *mut ngx_table_elt_t {
    // SAFETY: per the contract; the element comes from the request pool, is zeroed
    // before use, and nginx only reads the static strings it points to.
    unsafe {
        let h = ngx::ffi::ngx_list_push(&mut r.headers_out.headers).cast::<ngx_table_elt_t>();
        if !h.is_null() {
            std::ptr::write_bytes(h, 0, 1);
            (*h).hash = 1;
            (*h).key.len = key.len();
            (*h).key.data = key.as_ptr().cast_mut();
            (*h).value.len = value.len();
            (*h).value.data = value.as_ptr().cast_mut();
        }
        h
    }
}

/// Sends the job's output, pointing the response buffer at its body (no copy).
fn send(r: &mut ngx_http_request_t, job: &Job) -> ngx_int_t {
    let out = &job.out;
    let body = out.body.as_slice();
    r.headers_out.status = ngx::ffi::ngx_uint_t::from(out.status);
    r.headers_out.content_length_n = body.len() as _;
    r.headers_out.content_type.len = out.content_type.len();
    r.headers_out.content_type.data = out.content_type.as_ptr().cast_mut();
    // The media type alone, without `; version=...`: what nginx's `*_types` directives
    // (gzip_types, charset_types, sub_filter_types...) compare against.
    r.headers_out.content_type_len = out.content_type.find(';').unwrap_or(out.content_type.len());
    // SAFETY: live request; the buffer and chain link come from the request pool and
    // the memory they point to (the job's body) is freed only with that pool.
    unsafe {
        // No answer here is ever to be read as another type (an error message that
        // quotes a query string, a label value in the text format).
        for (k, v) in [("Vary", VARY), ("X-Content-Type-Options", "nosniff")]
            .iter()
            .chain(out.headers)
        {
            if push_header(r, k, v).is_null() {
                return Status::NGX_ERROR.0;
            }
        }
        if out.gzip {
            let h = push_header(r, "Content-Encoding", "gzip");
            if h.is_null() {
                return Status::NGX_ERROR.0;
            }
            // nginx's own gzip filter leaves an encoded response alone.
            r.headers_out.content_encoding = h;
        }
        let rc = ngx::ffi::ngx_http_send_header(r);
        if rc == Status::NGX_ERROR.0
            || rc > Status::NGX_OK.0
            || bitfield::get(r, c::REQUEST_HEADER_ONLY) != 0
        {
            return rc;
        }
        if body.is_empty() {
            // A filter that selects nothing in the text format: no body at all.
            return ngx::ffi::ngx_http_send_special(r, ngx::ffi::NGX_HTTP_LAST as _);
        }
        let b = ngx::ffi::ngx_pcalloc(r.pool, std::mem::size_of::<ngx_buf_t>()).cast::<ngx_buf_t>();
        let cl = ngx::ffi::ngx_alloc_chain_link(r.pool);
        if b.is_null() || cl.is_null() {
            return Status::NGX_ERROR.0;
        }
        let start = body.as_ptr().cast_mut();
        (*b).start = start;
        (*b).pos = start;
        (*b).last = start.add(body.len());
        (*b).end = (*b).last;
        let last_buf = u32::from(std::ptr::eq(r as *const _, r.main));
        bitfield::set(&mut *b, c::BUF_MEMORY, 1);
        bitfield::set(&mut *b, c::BUF_LAST_BUF, last_buf);
        bitfield::set(&mut *b, c::BUF_LAST_IN_CHAIN, 1);
        (*cl).buf = b;
        (*cl).next = std::ptr::null_mut::<ngx_chain_t>();
        ngx::ffi::ngx_http_output_filter(r, cl)
    }
}

/// Milliseconds every render waits before it starts, so that a test can act while
/// renders are surely in flight.
#[cfg(feature = "debug-hooks")]
static RENDER_DELAY_MS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Makes every later render of this worker wait `ms` milliseconds first. For tests
/// only; only in builds with the `debug-hooks` feature.
#[cfg(feature = "debug-hooks")]
#[no_mangle]
pub extern "C" fn ngx_prom_debug_render_delay(ms: u32) {
    RENDER_DELAY_MS.store(ms, Ordering::Relaxed);
}

/// Makes this worker's next render stall `ms` milliseconds in the middle of its first
/// counter or gauge series. For tests only; only in builds with the `debug-hooks`
/// feature.
#[cfg(feature = "debug-hooks")]
#[no_mangle]
pub extern "C" fn ngx_prom_debug_render_stall(ms: u32) {
    crate::exposition::walk::stall_next_render(u64::from(ms));
}
