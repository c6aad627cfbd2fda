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

use super::response::{self, Body, Response};
use super::Module;
use crate::config::limits::{self, Limits};
use crate::exposition::{self, Format, Scrape};
use crate::nginx::bitfield::{self, c};
use ngx::core::Status;
use ngx::ffi::{ngx_event_t, ngx_http_request_t, ngx_log_t, ngx_thread_pool_t};
use ngx::http::{HttpModule, Request};
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

/// Headers of every answer of the handler. No answer here is ever to be read as
/// another type (an error message that quotes a query string, a label value in the
/// text format).
const EVERY_ANSWER: [(&str, &str); 2] = [("Vary", VARY), ("X-Content-Type-Options", "nosniff")];

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

/// One scrape, owned by the request (a pool cleanup drops it). Its fields drop in
/// order after `drop`: the claim last, so that it trims the allocator once the rest is
/// freed.
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

impl Drop for Job {
    /// In the worker, from the request pool's cleanup: the timer is disarmed first
    /// (`rendered` has done so already unless the pool is destroyed some other way), so
    /// nginx's timer tree never points into a freed job.
    fn drop(&mut self) {
        release_hold(&mut self.hold);
    }
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
    r: &mut Request,
    pool: Option<std::ptr::NonNull<ngx_thread_pool_t>>,
    limits: Limits,
    scrape: Scrape<'static>,
    gzip: bool,
) -> Status {
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
    let Some(job) = response::keep(r, scrape_job) else {
        return Status::NGX_ERROR;
    };
    // SAFETY: the request pool owns the job until the request ends; only this worker's
    // thread touches it until `post` hands it to a pool thread.
    let job = unsafe { &mut *job.as_ptr() };
    if let Some(pool) = pool {
        if post(r, pool, job).is_ok() {
            return Status::NGX_DONE;
        }
    }
    render(job);
    settle(job);
    send(r, &mut job.out)
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
/// rendering, no metric data), `headers` before the handler's own.
pub fn refuse(
    r: &mut Request,
    status: u16,
    message: String,
    headers: &[(&'static str, &'static str)],
) -> Status {
    let mut all = headers.to_vec();
    all.extend(EVERY_ANSWER);
    let head = Response {
        status,
        content_type: TEXT_PLAIN,
        headers: &all,
        gzipped: false,
    };
    response::send(r, &head, Body::Owned(message.into_bytes()))
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
    r: &mut Request,
    pool: std::ptr::NonNull<ngx_thread_pool_t>,
    job: &mut Job,
) -> Result<(), ()> {
    let request: *mut ngx_http_request_t = (&mut *r).into();
    // SAFETY:
    // - the task is allocated from the request pool, which outlives it: the request is
    //   blocked (`blocked`, `count`) until `rendered` has run in this worker;
    // - the thread only touches `*job`, which nothing else touches until `done` is set
    //   and the pool's completion notifies this worker.
    unsafe {
        let size = std::mem::size_of::<*mut Job>();
        let task = ngx::ffi::ngx_thread_task_alloc(r.pool().as_ptr(), size);
        if task.is_null() {
            return Err(());
        }
        *(*task).ctx.cast::<*mut Job>() = job;
        (*task).handler = Some(render_in_thread);
        (*task).event.data = request.cast();
        (*task).event.handler = Some(rendered);
        if ngx::ffi::ngx_thread_task_post(pool.as_ptr(), task) != Status::NGX_OK.0 {
            return Err(());
        }
    }
    // No epoch announcement of this worker until the render is back (`rendered`).
    super::quiesce::render_posted();
    r.set_module_ctx((job as *mut Job).cast(), Module::module());
    // Not cancelable: a worker shutting down waits for it (see the module doc).
    job.hold.handler = Some(hold_again);
    job.hold.data = (job as *mut Job).cast();
    job.hold.log = r.log();
    // SAFETY: the job lives until its cleanup, which disarms the timer first.
    unsafe { ngx::ffi::ngx_add_timer(&mut job.hold, HOLD_MS) };
    // SAFETY: `main` is the live main request of this one (itself, or the request this
    // subrequest belongs to).
    let main = unsafe { &mut *r.as_ref().main };
    let (blocked, count) = (c::REQUEST_BLOCKED, c::REQUEST_COUNT);
    bitfield::set(main, blocked, bitfield::get(main, blocked) + 1);
    bitfield::set(main, count, bitfield::get(main, count) + 1);
    bitfield::set(r.as_mut(), c::REQUEST_AIO, 1);
    r.as_mut().write_event_handler = Some(send_rendered);
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
        let r = Request::from_ngx_http_request(r);
        let rc = send(r, &mut (*job).out);
        response::finalize(r, rc);
    }
}

/// Sends a job's output; its body moves to the request pool (sent without a copy).
fn send(r: &mut Request, out: &mut Output) -> Status {
    let headers: Vec<_> = EVERY_ANSWER.iter().chain(out.headers).copied().collect();
    let head = Response {
        status: out.status,
        content_type: out.content_type,
        headers: &headers,
        gzipped: out.gzip,
    };
    response::send(r, &head, Body::Owned(std::mem::take(&mut out.body)))
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
