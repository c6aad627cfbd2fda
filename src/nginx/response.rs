//! A content handler's answer, sent in one call: status, content type, extra headers
//! and the body (static bytes, or bytes the request pool takes over), HEAD and empty
//! bodies included. Handlers build a [`Response`] and call [`send`]; they write no
//! unsafe code for it.
//!
//! ngx 0.5's `Request` does most of it (status, length, `send_header`,
//! `output_filter`). What it lacks or gets wrong on one of our builds is here, each in
//! a function of its own: its `header_only()` and `Buffer::set_last_buf` use bindgen's
//! bitfield positions, wrong for `ngx_http_request_t` from nginx 1.29.3 on (see
//! `bitfield`); its `add_header_out` copies key and value into the pool and leaves
//! nginx 1.23+'s `next` member uninitialized; `Pool::allocate` writes through the
//! pointer before checking the allocation. No wrapper exists for a chain link, for
//! `ngx_http_send_special` or for `ngx_http_finalize_request`.

use crate::nginx::bitfield::{self, c};
use ngx::core::Status;
use ngx::ffi::{ngx_buf_t, ngx_chain_t, ngx_int_t, ngx_str_t, ngx_table_elt_t};
use ngx::http::{HTTPStatus, Request};
use std::ffi::c_void;
use std::ptr::NonNull;

/// What is sent before the body.
pub struct Response<'h> {
    pub status: u16,
    /// The whole `Content-Type` (`text/plain; version=0.0.4; charset=utf-8`).
    pub content_type: &'static str,
    /// Further headers, in order. Static strings: nginx points at them, no copy.
    pub headers: &'h [(&'static str, &'static str)],
    /// The body is gzip already: `Content-Encoding: gzip`, which nginx's own gzip
    /// filter then leaves alone.
    pub gzipped: bool,
}

/// The bytes after the header.
pub enum Body {
    Static(&'static [u8]),
    /// Moved to the request pool (freed with it): sent without a copy.
    Owned(Vec<u8>),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Static(b) => b.len(),
            Body::Owned(v) => v.len(),
        }
    }
}

/// Sends `head` and `body` as the whole response; returns what a content handler
/// returns (or what `ngx_http_finalize_request` takes). For a HEAD request, or when a
/// header filter ends the response, no body is sent.
pub fn send(r: &mut Request, head: &Response, body: Body) -> Status {
    let Ok(status) = HTTPStatus::from_u16(head.status) else {
        return Status::NGX_ERROR;
    };
    r.set_status(status);
    r.set_content_length_n(body.len());
    set_content_type(r, head.content_type);
    for (key, value) in head.headers {
        if add_header(r, key, value).is_none() {
            return Status::NGX_ERROR;
        }
    }
    if head.gzipped {
        let Some(h) = add_header(r, "Content-Encoding", "gzip") else {
            return Status::NGX_ERROR;
        };
        r.as_mut().headers_out.content_encoding = h.as_ptr();
    }
    let rc = r.send_header();
    if rc == Status::NGX_ERROR || rc.0 > Status::NGX_OK.0 || header_only(r) {
        return rc;
    }
    if body.len() == 0 {
        // Nothing to point a buffer at: the last-buffer mark alone ends the response.
        return send_last(r);
    }
    let Some(bytes) = pin(r, body) else {
        return Status::NGX_ERROR;
    };
    match memory_chain(r, bytes) {
        // SAFETY: a chain link fresh from the request pool, used by this call only.
        Some(cl) => r.output_filter(unsafe { &mut *cl.as_ptr() }),
        None => Status::NGX_ERROR,
    }
}

/// Sets `Content-Type`, and the media type alone (before `;`) as its length for
/// nginx's `*_types` directives (gzip_types, charset_types, sub_filter_types...).
fn set_content_type(r: &mut Request, content_type: &'static str) {
    let out = &mut r.as_mut().headers_out;
    out.content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr().cast_mut(),
    };
    out.content_type_len = content_type.find(';').unwrap_or(content_type.len());
}

/// Whether the response has no body (a HEAD request, a `304`...): nginx sets the flag
/// while sending the header. Read at the C compiler's position.
fn header_only(r: &Request) -> bool {
    bitfield::get(r.as_ref(), c::REQUEST_HEADER_ONLY) != 0
}

/// Adds a response header whose key and value are static strings (not copied).
fn add_header(
    r: &mut Request,
    key: &'static str,
    value: &'static str,
) -> Option<NonNull<ngx_table_elt_t>> {
    // SAFETY: `headers_out.headers` is the request's list, made from its pool by nginx;
    // the new element is zeroed before use (including nginx 1.23+'s `next`), and nginx
    // only reads the static strings it points to.
    unsafe {
        let h =
            ngx::ffi::ngx_list_push(&mut r.as_mut().headers_out.headers).cast::<ngx_table_elt_t>();
        let mut h = NonNull::new(h)?;
        std::ptr::write_bytes(h.as_ptr(), 0, 1);
        let e = h.as_mut();
        e.hash = 1;
        e.key = ngx_str_t {
            len: key.len(),
            data: key.as_ptr().cast_mut(),
        };
        e.value = ngx_str_t {
            len: value.len(),
            data: value.as_ptr().cast_mut(),
        };
        Some(h)
    }
}

/// Ends a response whose header is sent and whose body is empty.
fn send_last(r: &mut Request) -> Status {
    // SAFETY: a live request whose header is sent.
    Status(unsafe { ngx::ffi::ngx_http_send_special(r.into(), ngx::ffi::NGX_HTTP_LAST as _) })
}

/// Bytes that stay valid until the request pool is destroyed: static, or kept by it.
struct Pinned {
    start: *mut u8,
    len: usize,
}

/// `body` made to last as long as the request (an owned body moves to its pool).
fn pin(r: &Request, body: Body) -> Option<Pinned> {
    match body {
        Body::Static(b) => Some(Pinned {
            start: b.as_ptr().cast_mut(),
            len: b.len(),
        }),
        Body::Owned(v) => {
            // The Vec's heap buffer does not move when the Vec itself does.
            let (start, len) = (v.as_ptr().cast_mut(), v.len());
            keep(r, v)?;
            Some(Pinned { start, len })
        }
    }
}

/// One read-only memory buffer over `bytes`, in a chain link of its own, both from
/// the request pool; the last buffer of the response (of the main request's output).
fn memory_chain(r: &Request, bytes: Pinned) -> Option<NonNull<ngx_chain_t>> {
    let b = NonNull::new(r.pool().calloc_type::<ngx_buf_t>())?;
    // SAFETY: the buffer and the link come from the request pool, so live as long as
    // the request; the bytes they point to are pinned for as long (`Pinned`), and a
    // `memory` buffer is never written to.
    unsafe {
        let cl = NonNull::new(ngx::ffi::ngx_alloc_chain_link(r.pool().as_ptr()))?;
        let buf = &mut *b.as_ptr();
        buf.start = bytes.start;
        buf.pos = bytes.start;
        buf.last = bytes.start.add(bytes.len);
        buf.end = buf.last;
        bitfield::set(buf, c::BUF_MEMORY, 1);
        bitfield::set(buf, c::BUF_LAST_BUF, u32::from(r.is_main()));
        bitfield::set(buf, c::BUF_LAST_IN_CHAIN, 1);
        (*cl.as_ptr()).buf = b.as_ptr();
        (*cl.as_ptr()).next = std::ptr::null_mut();
        Some(cl)
    }
}

/// Moves `value` to the heap, to be dropped when the request pool is destroyed (after
/// the response, which may point into it, is sent). The pointer stays valid until
/// then; values kept later are dropped first.
pub fn keep<T>(r: &Request, value: T) -> Option<NonNull<T>> {
    // SAFETY: the request pool lives as long as the request; the cleanup runs once,
    // when the pool is destroyed, and frees the box made here.
    unsafe {
        let cln = ngx::ffi::ngx_pool_cleanup_add(r.pool().as_ptr(), 0).as_mut()?;
        let raw = Box::into_raw(Box::new(value));
        cln.handler = Some(drop_kept::<T>);
        cln.data = raw.cast();
        Some(NonNull::new_unchecked(raw))
    }
}

unsafe extern "C" fn drop_kept<T>(data: *mut c_void) {
    // SAFETY: `data` is the box `keep` leaked, dropped exactly once, here.
    drop(unsafe { Box::from_raw(data.cast::<T>()) });
}

/// Finishes a request a phase handler answered itself (`rc`: what `send` returned).
pub fn finalize(r: &mut Request, rc: Status) {
    // SAFETY: a live request, finalized once, by this call.
    unsafe { ngx::ffi::ngx_http_finalize_request(r.into(), rc.0 as ngx_int_t) };
}
