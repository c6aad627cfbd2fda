//! `prometheus_metrics [zone] [group=a,b];` and its access rules: the content handler
//! that serves the exposition. What a request asks for (format, gzip, families) is
//! decided by [`crate::exposition::negotiate`]; this file only collects the header
//! values and the query string.

use super::{conf_error, process, stub_status, zone, LocConf, Module};
use super::{limits, render, request, response};
use crate::config::access::{parse_rule, AccessRules};
use crate::config::auth::{client_address, Credentials, Verdict};
use crate::exposition::negotiate::{negotiate, Fallback};
use crate::exposition::{Scrape, Selection};
use crate::metrics::builtin::FALLBACKS;
use crate::metrics::{counter, Store};
use ngx::core::Status;
use ngx::ffi::{ngx_conf_t, ngx_int_t};
use ngx::http::{
    HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Method, NgxHttpCoreModule, Request,
};
use std::ffi::c_char;
use std::sync::Arc;

directive! {
    pub(super) fn metrics_directive(cf, lcf: &mut LocConf, a) {
        if lcf.metrics_zone.is_some() {
            return conf_error(cf, "prometheus_metrics: is duplicate");
        }
        let (zone, groups) = match crate::config::directives::metrics(&a) {
            Ok(v) => v,
            Err(msg) => return conf_error(cf, &format!("prometheus_metrics: {msg}")),
        };
        let Some((mcf, at)) = super::main_conf_at(cf) else {
            return ngx::core::NGX_CONF_ERROR;
        };
        mcf.references.push(zone::ZoneReference {
            zone: zone.clone(),
            at,
        });
        lcf.metrics_zone = Some(zone);
        lcf.groups = groups;
        // SAFETY: the core module's location conf exists for every location.
        let Some(clcf) = (unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) }) else {
            return ngx::core::NGX_CONF_ERROR;
        };
        clcf.handler = Some(metrics_handler);
        // Scrapes render in nginx's default thread pool (as `aio threads` uses), off the
        // event loop; without it they would render in the worker.
        // SAFETY: `cf` is valid; a null name means the default pool.
        let pool = unsafe { ngx::ffi::ngx_thread_pool_add(cf, std::ptr::null_mut()) };
        lcf.thread_pool = std::ptr::NonNull::new(pool);
        ngx::core::NGX_CONF_OK
    }
}

/// `prometheus_allow` / `prometheus_deny <cidr>...;`
fn rules_directive(
    cf: *mut ngx_conf_t,
    lcf: &mut LocConf,
    a: Vec<&str>,
    deny: bool,
) -> *mut c_char {
    let directive = if deny {
        "prometheus_deny"
    } else {
        "prometheus_allow"
    };
    let rules = lcf.access.get_or_insert_with(AccessRules::default);
    for arg in a {
        match parse_rule(arg) {
            Ok(cidrs) if deny => rules.deny.extend(cidrs),
            Ok(cidrs) => rules.allow.extend(cidrs),
            Err(why) => return conf_error(cf, &format!("{directive}: invalid address {why}")),
        }
    }
    ngx::core::NGX_CONF_OK
}

directive! {
    pub(super) fn allow_directive(cf, lcf: &mut LocConf, a) {
        rules_directive(cf, lcf, a, false)
    }
}

directive! {
    pub(super) fn deny_directive(cf, lcf: &mut LocConf, a) {
        rules_directive(cf, lcf, a, true)
    }
}

directive! {
    /// `prometheus_auth_file <path> | off;`: read and checked now, so `nginx -t` fails on a
    /// missing, unreadable or malformed file and names it. A relative path is relative to
    /// nginx's configuration directory, as for `auth_basic_user_file`.
    pub(super) fn auth_file_directive(cf, lcf: &mut LocConf, a) {
        if lcf.credentials.is_some() {
            return conf_error(cf, "prometheus_auth_file: is duplicate");
        }
        if a[0] == "off" {
            lcf.credentials = Some(None);
            return ngx::core::NGX_CONF_OK;
        }
        let path = match super::full_name(cf, a[0], true) {
            Ok(p) => p,
            Err(e) => return conf_error(cf, &format!("prometheus_auth_file: {e}")),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                return conf_error(
                    cf,
                    &format!("prometheus_auth_file: cannot read \"{path}\": {e}"),
                )
            }
        };
        match Credentials::parse(&text) {
            Ok(c) => {
                lcf.credentials = Some(Some(Arc::new(c)));
                ngx::core::NGX_CONF_OK
            }
            Err(why) => conf_error(cf, &format!("prometheus_auth_file \"{path}\": {why}")),
        }
    }
}

directive! {
    /// `prometheus_trusted_proxies <cidr>...;`
    pub(super) fn trusted_proxies_directive(cf, lcf: &mut LocConf, a) {
        let list = lcf.trusted_proxies.get_or_insert_with(Vec::new);
        for arg in a {
            match parse_rule(arg) {
                Ok(cidrs) => list.extend(cidrs),
                Err(why) => {
                    return conf_error(
                        cf,
                        &format!("prometheus_trusted_proxies: invalid address {why}"),
                    )
                }
            }
        }
        ngx::core::NGX_CONF_OK
    }
}

ngx::http_request_handler!(metrics_handler, |r: &mut Request| {
    match serve(r) {
        Ok(rc) | Err(rc) => rc,
    }
});

/// Why a client may not have what a location serves: the one-line answer it gets.
struct AccessDenied {
    status: u16,
    message: String,
    challenges: Vec<(&'static str, &'static str)>,
}

impl AccessDenied {
    fn new(status: u16, message: impl Into<String>) -> AccessDenied {
        AccessDenied {
            status,
            message: message.into(),
            challenges: Vec::new(),
        }
    }

    fn send(self, r: &mut Request) -> Status {
        render::refuse(r, self.status, self.message, &self.challenges)
    }
}

/// The address rules (with trusted proxies), then the credentials: whether this
/// location's access rules let the client in.
fn admit(r: &Request, lcf: &LocConf) -> Result<(), AccessDenied> {
    let client = match request::peer_ip(r) {
        Some(peer) => {
            let trusted = lcf.trusted_proxies.as_deref().unwrap_or(&[]);
            let forwarded = request::header_values(r, "x-forwarded-for");
            match client_address(peer, trusted, &forwarded) {
                Ok(ip) => Some(ip),
                Err(bad) => return Err(AccessDenied::new(400, format!("{}\n", bad.0))),
            }
        }
        // Unix sockets are local by definition.
        None => None,
    };
    let allowed = match (client, &lcf.access) {
        (Some(ip), Some(rules)) => rules.allows(ip),
        (Some(ip), None) => AccessRules::default().allows(ip),
        (None, _) => true,
    };
    if !allowed {
        return Err(AccessDenied::new(403, "Forbidden\n"));
    }
    if let Some(Some(credentials)) = &lcf.credentials {
        match credentials.check(&request::header_values(r, "authorization")) {
            Verdict::Granted => {}
            Verdict::Unauthorized => {
                let mut refusal =
                    AccessDenied::new(401, "Unauthorized: valid credentials are required\n");
                if credentials.has_basic() {
                    refusal
                        .challenges
                        .push(("WWW-Authenticate", BASIC_CHALLENGE));
                }
                if credentials.has_bearer() {
                    refusal
                        .challenges
                        .push(("WWW-Authenticate", BEARER_CHALLENGE));
                }
                return Err(refusal);
            }
            Verdict::Malformed => {
                return Err(AccessDenied::new(
                    400,
                    "Bad Request: one Authorization header of at most 1024 bytes\n",
                ))
            }
        }
    }
    Ok(())
}

/// Reads a request body away, so that on a kept-alive connection its bytes cannot
/// pass for the next request.
fn discard_body(r: &mut Request) -> Result<(), Status> {
    match r.discard_request_body() {
        Status::NGX_OK => Ok(()),
        rc => Err(rc),
    }
}

/// Everything before the first byte of metric data decides whether any is sent.
fn serve(r: &mut Request) -> Result<Status, Status> {
    let lcf = Module::location_conf(r).ok_or(Status::NGX_ERROR)?;
    let limits = limits::of(Module::main_conf(r).ok_or(Status::NGX_ERROR)?);
    // A body is never used here: read it away before any answer.
    discard_body(r)?;
    if let Err(refusal) = admit(r, lcf) {
        return Ok(refusal.send(r));
    }
    let method = r.method();
    if method != Method::GET && method != Method::HEAD {
        return Err(HTTPStatus::NOT_ALLOWED.into());
    }
    let zone_name = lcf.metrics_zone.as_deref().unwrap_or("");
    let Some((name, store)) = zone::lookup(zone_name) else {
        return Err(HTTPStatus::SERVICE_UNAVAILABLE.into());
    };
    let accept = request::header(r, "accept");
    let accept_encoding = request::header(r, "accept-encoding");
    match negotiate(
        accept.as_deref(),
        accept_encoding.as_deref(),
        request::query(r),
        &lcf.groups,
    ) {
        Ok(n) => {
            if let Some(why) = n.fallback {
                count_fallback(&store, why);
            }
            Ok(render::serve(
                r,
                lcf.thread_pool,
                limits,
                Scrape {
                    store,
                    zone: name,
                    stub: stub_status::read(),
                    format: n.format,
                    selection: Selection {
                        workers: process::worker_count(),
                        ..n.selection
                    },
                    identity: zone::identity(),
                },
                n.gzip,
            ))
        }
        Err(refusal) => Ok(render::refuse(r, refusal.status, refusal.message, &[])),
    }
}

/// Counts a scrape served in another format than the one asked for, in the scraped
/// zone. The family, with a series for every reason, is made there at the first
/// fallback (under the zone lock, as any family; a zone too full for it leaves the
/// fallback uncounted, and counts that as `zone_full`); then it is found without it.
fn count_fallback(store: &Store<'static>, why: Fallback) {
    let me = zone::participant();
    let Ok(family) = store.register(&FALLBACKS.spec(), me) else {
        return;
    };
    for reason in Fallback::ALL {
        let found = store.find_or_make(family, &[reason.as_str()], me, Default::default());
        if let (Ok(s), true) = (found, reason == why) {
            let _ = counter::inc(&store.region(), s.handle, 1);
        }
    }
}

// `prometheus_protect on;`: the location's own content (`stub_status`, a file, a
// proxied status page) is served only to the clients `prometheus_metrics` would serve
// there, refused with the same answers. Runs in the access phase of every request;
// subrequests never reach it (nginx skips access checks for them).
ngx::http_request_handler!(access_handler, |r: &mut Request| {
    let Some(lcf) = Module::location_conf(r) else {
        return Status::NGX_DECLINED;
    };
    // A metrics location checks in its content handler, where a refusal is sent.
    if lcf.protect != Some(true) || lcf.metrics_zone.is_some() {
        return Status::NGX_DECLINED;
    }
    let Err(refusal) = admit(r, lcf) else {
        return Status::NGX_OK;
    };
    let rc = match discard_body(r) {
        Ok(()) => refusal.send(r),
        Err(rc) => rc,
    };
    // The answer is out (or failed): finish the request here, as the content phase
    // would, and stop the phases.
    response::finalize(r, rc);
    Status::NGX_DONE
});

directive! {
    /// `prometheus_protect on | off;`
    pub(super) fn protect_directive(cf, lcf: &mut LocConf, a) {
        if lcf.protect.is_some() {
            return conf_error(cf, "prometheus_protect: is duplicate");
        }
        lcf.protect = match a[0] {
            "on" => Some(true),
            "off" => Some(false),
            other => {
                return conf_error(
                    cf,
                    &format!("prometheus_protect: invalid value \"{other}\" (on or off)"),
                )
            }
        };
        ngx::core::NGX_CONF_OK
    }
}

/// Puts [`access_handler`] in the access phase (the module's postconfiguration).
pub(super) extern "C" fn add_access_handler(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: nginx calls postconfiguration with the http {} configuration being read.
    let cf = unsafe { &*cf };
    let access = ngx::ffi::ngx_http_phases_NGX_HTTP_ACCESS_PHASE;
    match super::add_phase_handler(cf, access, access_handler) {
        Ok(()) => Status::NGX_OK.0,
        Err(()) => Status::NGX_ERROR.0,
    }
}

const BASIC_CHALLENGE: &str = "Basic realm=\"metrics\", charset=\"UTF-8\"";
const BEARER_CHALLENGE: &str = "Bearer realm=\"metrics\"";
