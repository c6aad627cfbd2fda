//! What the glue reads from a request: the client's address, request headers and the
//! query string for a content or access handler (through ngx 0.5's `Request` where it
//! has a reader), and what the log-phase helper reads from a finished request,
//! natively: cheaper than `ngx.var`, which formats each value as a string for Lua to
//! parse back.

use ngx::ffi::{ngx_http_request_t, ngx_http_upstream_state_t, ngx_msec_t};
use ngx::http::Request;
use std::net::IpAddr;

/// The TCP peer's address; `None` for a Unix socket.
pub fn peer_ip(r: &Request) -> Option<IpAddr> {
    // SAFETY: a request's connection and its sockaddr are valid for the request's life;
    // the sockaddr's family tells which struct it is.
    unsafe {
        let sa = (*r.connection()).sockaddr;
        if sa.is_null() {
            return None;
        }
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*sa.cast::<libc::sockaddr_in>();
                Some(IpAddr::from(
                    u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                ))
            }
            libc::AF_INET6 => {
                let sin6 = &*sa.cast::<libc::sockaddr_in6>();
                Some(IpAddr::from(sin6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

/// The query string (after `?`, undecoded); empty when there is none.
pub fn query(r: &Request) -> &[u8] {
    r.as_ref().args.as_bytes()
}

/// The raw values of every request header `name` (any case), in order.
pub fn header_values<'r>(r: &'r Request, name: &str) -> Vec<&'r [u8]> {
    named(r, name).collect()
}

/// Every value of request header `name` (any case), in order.
pub fn named<'r, 'n>(r: &'r Request, name: &'n str) -> impl Iterator<Item = &'r [u8]> + 'n
where
    'r: 'n,
{
    r.headers_in_iterator()
        .filter(move |(k, _)| k.as_bytes().eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| v.as_bytes())
}

/// Every value of request header `name` (any case), joined with `,` as HTTP allows;
/// `None` when absent. Values that are not UTF-8 are left out.
pub fn header(r: &Request, name: &str) -> Option<String> {
    let mut out: Option<String> = None;
    for v in named(r, name) {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        match &mut out {
            Some(o) => {
                o.push(',');
                o.push_str(v);
            }
            None => out = Some(v.to_string()),
        }
    }
    out
}

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

/// Facts of request `r`, in or after its log phase.
pub fn facts(r: &Request) -> RequestFacts {
    let req = r.as_ref();
    // SAFETY: `ngx_cached_time` always points at a valid slot, updated only by this
    // worker's event loop, which is running this call.
    let now = unsafe { &*ngx::ffi::ngx_cached_time };
    let ms = (now.sec - req.start_sec) * 1000 + now.msec as i64 - req.start_msec as i64;
    let states = upstream_states(r);
    let upstream_ms = (!states.is_empty()).then(|| {
        states
            .iter()
            // (ngx_msec_t) -1 marks a try that never got a response.
            .filter(|s| s.response_time != ngx_msec_t::MAX)
            .map(|s| s.response_time as u64)
            .sum()
    });
    let from_upstream = states
        .last()
        .is_some_and(|s| s.header_time != ngx_msec_t::MAX);
    // SAFETY: a request's connection is valid for the request's life.
    let sent = unsafe { (*r.connection()).sent };
    RequestFacts {
        status: status(req),
        request_ms: ms.max(0) as u64,
        upstream_ms,
        from_upstream,
        received_bytes: req.request_length.max(0) as u64,
        sent_bytes: sent.max(0) as u64,
    }
}

/// The request's upstream tries, in order (what `$upstream_addr`, `$upstream_status`
/// and `$upstream_response_time` print); empty when it was not proxied.
pub fn upstream_states(r: &Request) -> &[ngx_http_upstream_state_t] {
    let states = r.as_ref().upstream_states;
    // SAFETY: `upstream_states` is null or an array of states in the request pool,
    // which lives as long as the request.
    unsafe {
        match states.as_ref() {
            Some(a) if a.nelts > 0 => a.as_slice::<ngx_http_upstream_state_t>(),
            _ => &[],
        }
    }
}

/// The id a request's exemplars carry, written to the front of `out`: the trace id of
/// its W3C `traceparent` header when that is valid, else nginx's `$request_id` (the
/// value the access log and `proxy_set_header` see when the configuration uses it
/// anywhere; a fresh random one otherwise). Returns the id's length (0: none, or
/// `out` too short) and whether a `traceparent` was there but invalid (never used:
/// the caller counts it).
///
/// # Safety
/// `r` is a live request of the current worker.
pub unsafe fn exemplar_id(r: *mut ngx_http_request_t, out: &mut [u8]) -> (usize, bool) {
    use crate::metrics::trace_id::{self, TraceParent};
    // SAFETY: per the contract.
    let req = unsafe { Request::from_ngx_http_request(r) };
    let invalid = match trace_id::of_headers(named(req, "traceparent")) {
        TraceParent::Valid(id) if id.len() <= out.len() => {
            out[..id.len()].copy_from_slice(id);
            return (id.len(), false);
        }
        TraceParent::Absent | TraceParent::Valid(_) => false,
        TraceParent::Invalid => true,
    };
    // SAFETY: per the contract.
    let id = unsafe { request_id(r) };
    match id {
        Some(id) if id.len() <= out.len() => {
            out[..id.len()].copy_from_slice(id);
            (id.len(), invalid)
        }
        _ => (0, invalid),
    }
}

/// nginx's hash of a variable name (`ngx_hash`, folded over the bytes).
const fn ngx_hash_key(name: &[u8]) -> usize {
    let mut key = 0usize;
    let mut i = 0;
    while i < name.len() {
        key = key.wrapping_mul(31).wrapping_add(name[i] as usize);
        i += 1;
    }
    key
}

const REQUEST_ID: &[u8] = b"request_id";
const REQUEST_ID_KEY: usize = ngx_hash_key(REQUEST_ID);

/// `$request_id` of request `r` (nginx makes it on first use and keeps it when the
/// configuration indexes the variable); `None` when nginx has none.
///
/// # Safety
/// `r` is a live request of the current worker.
unsafe fn request_id<'r>(r: *mut ngx_http_request_t) -> Option<&'r [u8]> {
    let mut name = ngx::ffi::ngx_str_t {
        len: REQUEST_ID.len(),
        // nginx only reads the name.
        data: REQUEST_ID.as_ptr().cast_mut(),
    };
    // SAFETY: per the contract; the value nginx returns lives in the request's pool.
    unsafe {
        let v =
            ngx::ffi::ngx_http_get_variable(r, &mut name, REQUEST_ID_KEY as ngx::ffi::ngx_uint_t);
        if v.is_null() || (*v).not_found() != 0 || (*v).data.is_null() {
            return None;
        }
        Some(std::slice::from_raw_parts((*v).data, (*v).len() as usize))
    }
}

/// The peer a try went to, as `$upstream_addr` prints it; `None` for the mark an
/// internal redirect leaves (printed as " : ").
pub fn peer_name(s: &ngx_http_upstream_state_t) -> Option<&[u8]> {
    // SAFETY: a state's `peer` is null or a name that lives as long as the upstream's
    // configuration, longer than the request's states.
    unsafe { s.peer.as_ref() }.map(|p| p.as_bytes())
}

/// The name of the `upstream {}` block (or the proxied host) of the request's last
/// upstream; `None` when it was not proxied.
pub fn upstream_host(r: &Request) -> Option<&[u8]> {
    // SAFETY: the request's upstream, when it has one, and its configuration are
    // valid for the request's life (the configuration for the cycle's).
    let conf = unsafe { r.as_ref().upstream.as_ref()?.upstream.as_ref()? };
    Some(conf.host.as_bytes())
}
