//! `prometheus_max_renders number;` / `prometheus_max_pinned size;`: the directives of
//! the per-worker scrape limits kept by [`crate::config::limits`].

use super::{args, conf_error, MainConf};
use crate::config::limits::{parse_max_renders, Limits};
use ngx::ffi::{ngx_command_t, ngx_conf_t};
use std::ffi::{c_char, c_void};

/// The limits of a configuration.
pub fn of(mcf: &MainConf) -> Limits {
    Limits::new(mcf.max_renders, mcf.max_pinned)
}

/// `prometheus_max_renders number;`
pub(super) extern "C" fn max_renders_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with the configuration being parsed and
    // the module's main conf (NGX_HTTP_MAIN_CONF_OFFSET), both valid for the call.
    let (mcf, a) = unsafe { (&mut *conf.cast::<MainConf>(), args(cf)) };
    if mcf.max_renders.is_some() {
        return conf_error(cf, "prometheus_max_renders: is duplicate");
    }
    match parse_max_renders(a[0]) {
        Ok(n) => {
            mcf.max_renders = Some(n);
            ngx::core::NGX_CONF_OK
        }
        Err(why) => conf_error(cf, &format!("prometheus_max_renders: {why}")),
    }
}

/// `prometheus_max_pinned size;`
pub(super) extern "C" fn max_pinned_directive(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: as for `max_renders_directive`.
    let (mcf, a) = unsafe { (&mut *conf.cast::<MainConf>(), args(cf)) };
    if mcf.max_pinned.is_some() {
        return conf_error(cf, "prometheus_max_pinned: is duplicate");
    }
    match crate::config::directives::max_pinned(a[0], &super::parse_size) {
        Ok(size) => mcf.max_pinned = Some(size),
        Err(why) => return conf_error(cf, &format!("prometheus_max_pinned: {why}")),
    }
    ngx::core::NGX_CONF_OK
}
