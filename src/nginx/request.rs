//! What the log-phase helper reads from a finished request, natively: cheaper than
//! `ngx.var`, which formats each value as a string for Lua to parse back.

use ngx::ffi::{ngx_http_request_t, ngx_http_upstream_state_t, ngx_msec_t};

/// Facts about one request at log time. Times in milliseconds, as nginx keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFacts {
    pub status: u32,
    pub request_ms: u64,
    /// Sum over every upstream tried; `None` when the request was not proxied.
    pub upstream_ms: Option<u64>,
    /// Whether the last upstream tried sent a response header: the response came from
    /// the service, not from nginx (an error page for a refused connection, a timeout).
    pub from_upstream: bool,
    pub received_bytes: u64,
    pub sent_bytes: u64,
}

/// The status nginx logs as `$status`: a special response's status wins.
pub fn status(r: &ngx_http_request_t) -> u32 {
    if r.err_status != 0 {
        r.err_status as u32
    } else {
        r.headers_out.status as u32
    }
}

/// # Safety
/// `r` is a live request of the current worker, in or after its log phase.
pub unsafe fn facts(r: *const ngx_http_request_t) -> RequestFacts {
    // SAFETY: per the contract; `ngx_cached_time` always points at a valid slot.
    unsafe {
        let r = &*r;
        let now = &*ngx::ffi::ngx_cached_time;
        let ms = (now.sec - r.start_sec) * 1000 + now.msec as i64 - r.start_msec as i64;
        let mut upstream_ms = None;
        let mut from_upstream = false;
        if !r.upstream_states.is_null() && (*r.upstream_states).nelts > 0 {
            let states = (*r.upstream_states).as_slice::<ngx_http_upstream_state_t>();
            let mut total = 0u64;
            for s in states {
                // (ngx_msec_t) -1 marks a try that never got a response.
                if s.response_time != ngx_msec_t::MAX {
                    total += s.response_time as u64;
                }
            }
            upstream_ms = Some(total);
            from_upstream = states
                .last()
                .is_some_and(|s| s.header_time != ngx_msec_t::MAX);
        }
        RequestFacts {
            status: status(r),
            request_ms: ms.max(0) as u64,
            upstream_ms,
            from_upstream,
            received_bytes: r.request_length.max(0) as u64,
            sent_bytes: (*r.connection).sent.max(0) as u64,
        }
    }
}
