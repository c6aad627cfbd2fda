//! The native request recorder: `prometheus_record` and `prometheus_record_location`,
//! and the log-phase handler that records every request of a location that has a
//! recorder, with no Lua run. What is recorded and how a label value is bounded is
//! `config::record`; the series are found and made by the store's `find_or_make` and
//! updated by `counter::inc` and `store::observe`, the paths the Lua API's FFI
//! functions take.

use super::{conf_error, request, zone, LocConf, Module};
use crate::config::record::{self, Label, Record, FAMILIES};
use crate::metrics::store::{self, decode_key, Family};
use crate::metrics::value::UpdateError;
use crate::metrics::{counter, Reason, Store};
use ngx::core::Status;
use ngx::ffi::{
    ngx_conf_t, ngx_http_compile_complex_value_t, ngx_http_complex_value_t, ngx_int_t, ngx_str_t,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleServerConf, NgxHttpCoreModule, Request};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// One `prometheus_record` directive, compiled; shared by the locations inheriting it.
pub struct RecordConf {
    pub record: Record,
    /// One compiled complex value per `label=`, in the order of `record.labels`.
    values: Vec<&'static ngx_http_complex_value_t>,
    /// `$upstream_cache_status`, compiled when `cache=on`.
    cache_status: Option<&'static ngx_http_complex_value_t>,
    /// This worker's store and families, once registered (workers are single-threaded;
    /// the zone and the families live as long as the cycle).
    resolved: OnceCell<Resolved>,
    /// Why registration failed, logged once per worker.
    logged: Cell<bool>,
    /// This worker's handles of the series its requests went to (workers are
    /// single-threaded; the cache is in the worker's own memory).
    cache: RefCell<Cache>,
}

/// How many label sets a recorder keeps the handles of, per worker. Label values come
/// from clients (`$host`): past this, a new label set evicts an arbitrary one, so a
/// worker holds at most this many keys of at most `labels × (4 + 256)` bytes each.
pub const CACHED_LABEL_SETS: usize = 256;

/// The handles of one label set's series, 0 where not known yet. A handle whose series
/// was deleted since (`del`, `reset`, an expiry) fails its update as stale; the series
/// is then looked up (or made) again, and the update applied there.
#[derive(Default)]
struct Entry {
    /// Requests by status: the raw status and its series, a few statuses per label set.
    codes: [(u32, u64); CODES],
    /// The next `codes` slot a new status takes when all are in use.
    next_code: usize,
    latency: u64,
    upstream: u64,
    received: u64,
    sent: u64,
    /// Responses by `$upstream_cache_status`, in the order of [`CACHE_STATUSES`].
    cache: [u64; CACHE_STATUSES.len()],
}

const CODES: usize = 4;

/// The values nginx gives `$upstream_cache_status`.
const CACHE_STATUSES: [&[u8]; 7] = [
    b"MISS",
    b"BYPASS",
    b"EXPIRED",
    b"STALE",
    b"UPDATING",
    b"REVALIDATED",
    b"HIT",
];

/// The handle cache of a recorder in a worker, and the buffer the request path reuses.
#[derive(Default)]
struct Cache {
    /// Series key of the label values (without the status) -> its place in `slots`.
    index: HashMap<Vec<u8>, usize>,
    /// The cached label sets: their keys and handles; at most [`CACHED_LABEL_SETS`].
    slots: Vec<(Vec<u8>, Entry)>,
    /// The slot the last request used: a request with the same label values as the
    /// last one (the common case) finds its entry with one comparison, no hashing.
    last: usize,
    /// The slot the next new label set takes once `slots` is full (round robin).
    victim: usize,
    /// The request's label values, encoded as a series key; a status or cache status
    /// is appended and cut off again for the families that have it.
    key: Vec<u8>,
}

impl Cache {
    /// The place in `slots` of the label set in `self.key`, taken (evicting another
    /// label set once full) if new.
    fn slot(&mut self) -> usize {
        if self.slots.get(self.last).is_some_and(|s| s.0 == self.key) {
            return self.last;
        }
        let i = match self.index.get(&self.key[..]) {
            Some(&i) => i,
            None => {
                let i = if self.slots.len() < CACHED_LABEL_SETS {
                    self.slots.push((self.key.clone(), Entry::default()));
                    self.slots.len() - 1
                } else {
                    let i = self.victim;
                    self.victim = (i + 1) % CACHED_LABEL_SETS;
                    let (old, entry) = &mut self.slots[i];
                    self.index.remove(&old[..]);
                    old.clear();
                    old.extend_from_slice(&self.key);
                    *entry = Entry::default();
                    i
                };
                self.index.insert(self.key.clone(), i);
                i
            }
        };
        self.last = i;
        i
    }
}

impl Entry {
    /// The handle slot of requests with `status`, taking a slot when it is new.
    fn code(&mut self, status: u32) -> &mut u64 {
        let i = match self.codes.iter().position(|c| c.0 == status && c.1 != 0) {
            Some(i) => i,
            None => {
                let i = match self.codes.iter().position(|c| c.1 == 0) {
                    Some(i) => i,
                    None => {
                        let i = self.next_code;
                        self.next_code = (i + 1) % CODES;
                        i
                    }
                };
                self.codes[i] = (status, 0);
                i
            }
        };
        &mut self.codes[i].1
    }
}

/// Appends one label value to a series key (as [`encode_key`](crate::metrics::store::encode_key)
/// encodes each).
fn push_value(key: &mut Vec<u8>, v: &[u8]) {
    key.extend_from_slice(&(v.len() as u32).to_le_bytes());
    key.extend_from_slice(v);
}

#[derive(Clone, Copy)]
struct Resolved {
    store: Store<'static>,
    families: [Option<Family>; FAMILIES],
}

directive! {
    /// `prometheus_record ... | off;`
    pub(super) fn record_directive(cf, lcf: &mut LocConf, a) {
        if lcf.record.is_some() {
            return conf_error(cf, "prometheus_record: is duplicate");
        }
        let parsed = match record::parse(&a, &super::parse_time_ms) {
            Ok(p) => p,
            Err(why) => return conf_error(cf, &format!("prometheus_record: {why}")),
        };
        let Some(rec) = parsed else {
            lcf.record = Some(None);
            return ngx::core::NGX_CONF_OK;
        };
        if let Err(why) = remember(cf, &rec) {
            return conf_error(cf, &format!("prometheus_record: {why}"));
        }
        let mut values = Vec::new();
        for l in &rec.labels {
            if let Label::Value { name, value } = l {
                match compile(cf, value) {
                    Some(cv) => values.push(cv),
                    None => {
                        return conf_error(
                            cf,
                            &format!("prometheus_record: invalid label \"{name}:{value}\""),
                        )
                    }
                }
            }
        }
        let cache_status = if rec.cache {
            match compile(cf, "$upstream_cache_status") {
                Some(cv) => Some(cv),
                None => return conf_error(cf, "prometheus_record: cache=on needs $upstream_cache_status"),
            }
        } else {
            None
        };
        lcf.record = Some(Some(Rc::new(RecordConf {
            record: rec,
            values,
            cache_status,
            resolved: OnceCell::new(),
            logged: Cell::new(false),
            cache: RefCell::new(Cache::default()),
        })));
        ngx::core::NGX_CONF_OK
    }
}

directive! {
    /// `prometheus_record_location <name>;`: the `location` label of this location.
    pub(super) fn location_directive(cf, lcf: &mut LocConf, a) {
        if lcf.record_location.is_some() {
            return conf_error(cf, "prometheus_record_location: is duplicate");
        }
        let name = a[0];
        if name.is_empty() || name.len() > record::MAX_VALUE_BYTES || name.contains('\u{fffd}') {
            return conf_error(
                cf,
                &format!("prometheus_record_location: invalid name \"{name}\" (1 to 256 bytes of UTF-8)"),
            );
        }
        lcf.record_location = Some(name.to_string());
        ngx::core::NGX_CONF_OK
    }
}

/// Keeps `rec` for the check of its zone once `http {}` is read ([`check_zones`]);
/// refuses it when another recorder names the same families in the same zone with
/// other labels or options (the zone would refuse one of them at run time).
fn remember(cf: *mut ngx_conf_t, rec: &Record) -> Result<(), String> {
    let (mcf, at) = super::main_conf_at(cf).ok_or("no main configuration")?;
    let families = rec.families();
    for other in &mcf.records {
        if other.record.zone == rec.zone
            && other.record.namespace == rec.namespace
            && other.families != families
        {
            return Err(format!(
                "namespace \"{}\" is recorded with other labels or options at {} \
                 (give one of them another namespace=)",
                rec.namespace, other.at
            ));
        }
    }
    mcf.records.push(Recorder {
        record: rec.clone(),
        families,
        at,
    });
    Ok(())
}

/// A `prometheus_record` as the whole `http {}` block's checks see it.
pub struct Recorder {
    record: Record,
    families: Vec<Option<crate::metrics::FamilySpec>>,
    at: String,
}

/// Checks that every recorder names a declared zone (`init_main_conf`).
pub(super) fn check_zones(mcf: &super::MainConf) -> Result<(), String> {
    for r in &mcf.records {
        let z = &r.record.zone;
        if mcf.zones.is_empty() {
            return Err(format!(
                "prometheus_record at {}: no prometheus_zone is declared in http {{}}",
                r.at
            ));
        }
        if !z.is_empty() && !mcf.zones.iter().any(|d| &d.name == z) {
            return Err(format!(
                "prometheus_record at {}: unknown zone \"{z}\"",
                r.at
            ));
        }
    }
    Ok(())
}

/// Compiles `value` as nginx's own directives do (`ngx_http_compile_complex_value`),
/// into the configuration pool, which lives as long as the configuration (as the
/// module's own configuration structs do); `None` when nginx refuses it (it logged why).
fn compile(cf: *mut ngx_conf_t, value: &str) -> Option<&'static ngx_http_complex_value_t> {
    // SAFETY: `cf` is the configuration being parsed; its pool lives as long as the
    // configuration. The value's bytes are copied into the pool: nginx keeps pointers
    // into the source string. Both structs are zeroed first, as nginx's directives do
    // with `ngx_memzero` (the compile struct's bitfields `zero`, `conf_prefix`,
    // `root_prefix` are then all 0: bindgen's layout of the three pointers before them
    // is checked against the C compiler's in `bitfield`).
    unsafe {
        let pool = (*cf).pool;
        let data = ngx::ffi::ngx_pnalloc(pool, value.len()).cast::<u8>();
        let cv = ngx::ffi::ngx_pcalloc(pool, std::mem::size_of::<ngx_http_complex_value_t>())
            .cast::<ngx_http_complex_value_t>();
        if data.is_null() || cv.is_null() {
            return None;
        }
        std::ptr::copy_nonoverlapping(value.as_ptr(), data, value.len());
        let mut source = ngx_str_t {
            len: value.len(),
            data,
        };
        let mut ccv: ngx_http_compile_complex_value_t = std::mem::zeroed();
        ccv.cf = cf;
        ccv.value = &mut source;
        ccv.complex_value = cv;
        if ngx::ffi::ngx_http_compile_complex_value(&mut ccv) != ngx::ffi::NGX_OK as ngx_int_t {
            return None;
        }
        Some(&*cv)
    }
}

// The log-phase handler: records the request when its location has a recorder.
ngx::http_request_handler!(log_handler, |r: &mut Request| {
    let lcf = Module::location_conf(r);
    if let Some(Some(Some(rc))) = lcf.map(|l| &l.record) {
        record_request(r, rc, lcf.and_then(|l| l.record_location.as_deref()));
    }
    Status::NGX_OK
});

/// The store and families of `rc` in this worker, registered on first use (again on
/// a later request when the zone refused them: it may have room by then).
fn resolve<'c>(r: &Request, rc: &'c RecordConf) -> Option<&'c Resolved> {
    if let Some(res) = rc.resolved.get() {
        return Some(res);
    }
    let failed = |msg: String| {
        if !rc.logged.replace(true) {
            ngx::ngx_log_error!(ngx::ffi::NGX_LOG_ERR, r.log(), "prometheus_record: {}", msg);
        }
        None
    };
    let Some((_, store)) = zone::lookup(&rc.record.zone) else {
        return failed(format!("no zone \"{}\"", rc.record.zone));
    };
    let specs = rc.record.families();
    let mut families = Vec::with_capacity(FAMILIES);
    for spec in &specs {
        let Some(spec) = spec else {
            families.push(None);
            continue;
        };
        match store.register(spec, zone::participant()) {
            Ok(f) => families.push(Some(f)),
            Err(e) => return failed(e.to_string()),
        }
    }
    let res = Resolved {
        store,
        families: families.try_into().ok()?,
    };
    Some(rc.resolved.get_or_init(|| res))
}

/// Records request `r` (in its log phase, on this worker's event loop) in the
/// families of `rc`.
fn record_request(r: &Request, rc: &RecordConf, location: Option<&str>) {
    let Some(res) = resolve(r, rc) else {
        return;
    };
    // Only this worker's event loop is here, and nothing below records a request again.
    let Ok(mut cache) = rc.cache.try_borrow_mut() else {
        return;
    };
    let cache = &mut *cache;
    let facts = request::facts(r);
    if !label_key(r, rc, location, &mut cache.key) {
        return;
    }
    let labels = cache.key.len();
    let [requests, latency, upstream, received, sent, peer_requests, peer_duration, peer_failures, cache_family] =
        res.families;
    let store = res.store;
    let i = cache.slot();
    let Cache { slots, key, .. } = cache;
    let entry = &mut slots[i].1;
    // The status is encoded into the key only when its series must be looked up.
    let slot = entry.code(facts.status);
    if requests.is_some() && (*slot == 0 || counter::inc(&store.region(), *slot, 1).is_err()) {
        *slot = 0;
        let mut code = [0u8; 10];
        push_value(
            key,
            record::status_value(facts.status, rc.record.status, &mut code),
        );
        cached(store, requests, slot, key, |r, h| counter::inc(r, h, 1));
        key.truncate(labels);
    }
    cached(store, latency, &mut entry.latency, key, |r, h| {
        store::observe(r, h, facts.request_ms as f64 / 1000.0, zone::participant)
    });
    if let Some(ms) = facts.upstream_ms {
        cached(store, upstream, &mut entry.upstream, key, |r, h| {
            store::observe(r, h, ms as f64 / 1000.0, zone::participant)
        });
    }
    cached(store, received, &mut entry.received, key, |r, h| {
        counter::inc(r, h, facts.received_bytes)
    });
    cached(store, sent, &mut entry.sent, key, |r, h| {
        counter::inc(r, h, facts.sent_bytes)
    });
    if let Some(cv) = rc.cache_status {
        let status = complex_value(r, cv);
        if !status.is_empty() {
            push_value(key, &status);
            let mut none = 0;
            let slot = match CACHE_STATUSES.iter().position(|s| *s == &status[..]) {
                Some(i) => &mut entry.cache[i],
                None => &mut none,
            };
            cached(store, cache_family, slot, key, |r, h| counter::inc(r, h, 1));
            key.truncate(labels);
        }
    }
    if peer_requests.is_some() {
        record_tries(r, store, [peer_requests, peer_duration, peer_failures], key);
    }
}

/// Encodes the label values of `rc`'s labels for request `r` into `key` (cleared
/// first), as a series key; false when the configuration has fewer compiled values
/// than `label=`s (it never has).
fn label_key(r: &Request, rc: &RecordConf, location: Option<&str>, key: &mut Vec<u8>) -> bool {
    key.clear();
    let mut next_value = rc.values.iter();
    for l in &rc.record.labels {
        let v = match l {
            Label::Server => server_name(r),
            Label::Location => match location {
                Some(name) => Cow::Borrowed(name.as_bytes()),
                None => location_name(r),
            },
            Label::Method => Cow::Borrowed(method_name(r.as_ref().method)),
            Label::Value { .. } => {
                let Some(&cv) = next_value.next() else {
                    return false;
                };
                complex_value(r, cv)
            }
        };
        push_value(key, &v);
    }
    true
}

/// One update per try of an upstream peer, from the request's upstream states (what
/// `$upstream_addr`, `$upstream_status` and `$upstream_response_time` print). `key` is
/// a buffer to reuse for the series keys.
fn record_tries(r: &Request, store: Store<'static>, f: [Option<Family>; 3], key: &mut Vec<u8>) {
    use ngx::ffi::ngx_msec_t;
    let states = request::upstream_states(r);
    if states.is_empty() {
        return;
    }
    let upstream = request::upstream_host(r).map_or(Cow::Borrowed(&b""[..]), record::label_value);
    for (s, peer) in states
        .iter()
        .filter_map(|s| Some((s, request::peer_name(s)?)))
    {
        let status = s.status as u32;
        key.clear();
        push_value(key, &upstream);
        push_value(key, &record::label_value(peer));
        let peer = key.len();
        let mut code = [0u8; 10];
        push_value(
            key,
            record::status_value(status, record::Status::Code, &mut code),
        );
        cached(store, f[0], &mut 0, key, |r, h| counter::inc(r, h, 1));
        key.truncate(peer);
        if s.response_time != ngx_msec_t::MAX {
            let secs = s.response_time as f64 / 1000.0;
            cached(store, f[1], &mut 0, key, |r, h| {
                store::observe(r, h, secs, zone::participant)
            });
        }
        if status == 0 || status >= 500 {
            cached(store, f[2], &mut 0, key, |r, h| counter::inc(r, h, 1));
        }
    }
}

/// Applies `f` to the series of `family` whose label values are encoded in `key`,
/// through the handle in `slot` when it has one (0: none). A handle that no longer
/// names a live series (deleted, expired: stale) is forgotten and the series looked up
/// again without the lock (made if missing, the overflow series past `max_series`); a
/// series deleted in between is looked up once more. `slot` keeps the handle of a
/// series found or made for these labels, never the overflow series' (the label set may
/// find room later). Refusals are counted in the zone's error counters, as the FFI
/// functions count them.
fn cached(
    store: Store<'static>,
    family: Option<Family>,
    slot: &mut u64,
    key: &[u8],
    f: impl Fn(&crate::shm::Region<'static>, u64) -> Result<(), UpdateError>,
) {
    let Some(family) = family else {
        return;
    };
    let region = store.region();
    if *slot != 0 {
        match f(&region, *slot) {
            Ok(()) => return,
            // A cached handle of a series deleted since; its block may even hold
            // something else by now (a bad handle): the lookup below finds the series.
            Err(UpdateError::Stale | UpdateError::BadHandle) => *slot = 0,
            Err(e) => {
                store.count_error(Reason::from(e));
                return;
            }
        }
    }
    for _ in 0..2 {
        // An existing series first, found without the lock or the clock (find_or_make
        // reads the time for a series it may make); refusals are counted in the zone's
        // errors by find_or_make.
        let (handle, keep) = match store.find_series_key(family, key) {
            Some(h) => (h, true),
            None => {
                let values: Vec<&[u8]> = decode_key(key).collect();
                match store.find_or_make(family, &values, zone::participant(), Default::default()) {
                    Ok(found) => (found.handle, found.overflowed.is_none()),
                    Err(_) => return,
                }
            }
        };
        match f(&region, handle) {
            Ok(()) => {
                if keep {
                    *slot = handle;
                }
                return;
            }
            Err(UpdateError::Stale) => continue,
            Err(e) => {
                store.count_error(Reason::from(e));
                return;
            }
        }
    }
    store.count_error(Reason::StaleHandle);
}

/// The value of `cv` (compiled for this configuration) for request `r`, bounded as a
/// label value; empty when nginx cannot evaluate it.
fn complex_value<'r>(r: &'r Request, cv: &ngx_http_complex_value_t) -> Cow<'r, [u8]> {
    match r.get_complex_value(cv) {
        Some(v) => record::label_value(v.as_bytes()),
        None => Cow::Borrowed(b""),
    }
}

/// The name of the request's `server` (its first `server_name`), as a label value.
fn server_name(r: &Request) -> Cow<'static, [u8]> {
    NgxHttpCoreModule::server_conf(r).map_or(Cow::Borrowed(b""), |c| {
        record::label_value(c.server_name.as_bytes())
    })
}

/// The request's location as written in the configuration, as a label value.
fn location_name(r: &Request) -> Cow<'static, [u8]> {
    NgxHttpCoreModule::location_conf(r).map_or(Cow::Borrowed(b""), |c| {
        record::label_value(c.name.as_bytes())
    })
}

/// The name of a method nginx knows, `OTHER` otherwise: nginx accepts any method
/// name of capital letters, and a client must not choose label values here.
fn method_name(method: ngx::ffi::ngx_uint_t) -> &'static [u8] {
    use ngx::ffi::*;
    match method as u32 {
        NGX_HTTP_GET => b"GET",
        NGX_HTTP_HEAD => b"HEAD",
        NGX_HTTP_POST => b"POST",
        NGX_HTTP_PUT => b"PUT",
        NGX_HTTP_DELETE => b"DELETE",
        NGX_HTTP_OPTIONS => b"OPTIONS",
        NGX_HTTP_PATCH => b"PATCH",
        NGX_HTTP_TRACE => b"TRACE",
        NGX_HTTP_CONNECT => b"CONNECT",
        NGX_HTTP_MKCOL => b"MKCOL",
        NGX_HTTP_COPY => b"COPY",
        NGX_HTTP_MOVE => b"MOVE",
        NGX_HTTP_PROPFIND => b"PROPFIND",
        NGX_HTTP_PROPPATCH => b"PROPPATCH",
        NGX_HTTP_LOCK => b"LOCK",
        NGX_HTTP_UNLOCK => b"UNLOCK",
        _ => b"OTHER",
    }
}

/// Puts [`log_handler`] in the log phase (the module's postconfiguration).
pub(super) fn add_log_handler(cf: &ngx_conf_t) -> Result<(), ()> {
    super::add_phase_handler(
        cf,
        ngx::ffi::ngx_http_phases_NGX_HTTP_LOG_PHASE,
        log_handler,
    )
}
