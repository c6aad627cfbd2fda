//! A scrape rendered off the event loop.
//!
//! Rendering 100k series takes tens of milliseconds; done in the worker, it would hold
//! up every other request of that worker for as long. The handler hands the work to
//! nginx's thread pool and returns; the worker goes on serving. When the thread is done,
//! nginx runs `rendered` back in the worker, which sends the text without copying it:
//! the response buffer points into the rendered `String`, freed with the request pool.

use super::Module;
use crate::exposition::{self, StubStatus, CONTENT_TYPE};
use crate::metrics::Store;
use ngx::core::Status;
use ngx::ffi::{
    ngx_buf_t, ngx_chain_t, ngx_event_t, ngx_http_request_t, ngx_int_t, ngx_log_t,
    ngx_thread_pool_t,
};
use ngx::http::HttpModule;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

/// What one scrape needs, owned by the request (a pool cleanup frees it).
struct Job {
    store: Store<'static>,
    zone: String,
    stub: Option<StubStatus>,
    body: String,
    /// Set by the thread when `body` is complete.
    done: AtomicBool,
}

/// Renders `store` for `r`, in `pool` when given, else right here; then sends it.
/// Returns what a content handler returns.
pub fn serve(
    r: &mut ngx_http_request_t,
    pool: Option<std::ptr::NonNull<ngx_thread_pool_t>>,
    store: Store<'static>,
    zone: String,
    stub: Option<StubStatus>,
) -> ngx_int_t {
    let job = Box::new(Job {
        store,
        zone,
        stub,
        body: String::new(),
        done: AtomicBool::new(false),
    });
    // SAFETY: `r.pool` lives as long as the request; the cleanup runs once, when the
    // pool is destroyed, after the response (which points into `job.body`) is sent.
    let job: &mut Job = unsafe {
        let cln = ngx::ffi::ngx_pool_cleanup_add(r.pool, 0);
        if cln.is_null() {
            return Status::NGX_ERROR.0;
        }
        let raw = Box::into_raw(job);
        (*cln).handler = Some(drop_job);
        (*cln).data = raw.cast();
        &mut *raw
    };
    if let Some(pool) = pool {
        if post(r, pool, job).is_ok() {
            return Status::NGX_DONE.0;
        }
    }
    render(job);
    send(r, job)
}

unsafe extern "C" fn drop_job(data: *mut c_void) {
    // SAFETY: `data` is the `Box<Job>` leaked in `serve`, dropped exactly once here.
    drop(unsafe { Box::from_raw(data.cast::<Job>()) });
}

fn render(job: &mut Job) {
    let mut body = String::with_capacity(64 * 1024);
    exposition::write_zone(&mut body, &job.store, &job.zone, job.stub.as_ref());
    job.body = body;
    job.done.store(true, Ordering::Release);
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
        *r.ctx.add(Module::module().ctx_index) = (job as *mut Job).cast();
        let main = &mut *r.main;
        main.set_blocked(main.blocked() + 1);
        main.set_count(main.count() + 1);
        r.set_aio(1);
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
    // SAFETY: the event's data is the request `post` blocked; it is still alive.
    unsafe {
        let r = (*ev).data.cast::<ngx_http_request_t>();
        let c = (*r).connection;
        let main = &mut *(*r).main;
        main.set_blocked(main.blocked() - 1);
        (*r).set_aio(0);
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

/// Sends the job's body, pointing the response buffer at it (no copy).
fn send(r: &mut ngx_http_request_t, job: &Job) -> ngx_int_t {
    let body = job.body.as_bytes();
    r.headers_out.status = ngx::ffi::NGX_HTTP_OK as _;
    r.headers_out.content_length_n = body.len() as _;
    r.headers_out.content_type.len = CONTENT_TYPE.len();
    r.headers_out.content_type.data = CONTENT_TYPE.as_ptr().cast_mut();
    r.headers_out.content_type_len = CONTENT_TYPE.len();
    // SAFETY: live request; the buffer and chain link come from the request pool and
    // the memory they point to (`job.body`) is freed only with that pool.
    unsafe {
        let rc = ngx::ffi::ngx_http_send_header(r);
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || r.header_only() != 0 {
            return rc;
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
        (*b).set_memory(1);
        (*b).set_last_buf(u32::from(std::ptr::eq(r as *const _, r.main)));
        (*b).set_last_in_chain(1);
        (*cl).buf = b;
        (*cl).next = std::ptr::null_mut::<ngx_chain_t>();
        ngx::ffi::ngx_http_output_filter(r, cl)
    }
}
