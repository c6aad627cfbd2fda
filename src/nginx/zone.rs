//! `prometheus_zone name size;`: the shared zone that holds the store.
//!
//! The zone's memory comes from nginx (`ngx_shared_memory_add`), so it is mapped in the
//! master and inherited by every worker. On `nginx -s reload` nginx hands a zone of the
//! same name and size back to the init callback with the previous cycle's data: the
//! store is attached again, not re-created, and every value survives.

use super::{conf_error, MainConf, Module};
use crate::metrics::store::Participant;
use crate::metrics::Store;
use crate::shm::arena::{Arena, MIN_ZONE_BYTES};
use crate::shm::Region;
use ngx::ffi::{ngx_conf_t, ngx_int_t, ngx_shm_zone_t, ngx_slab_pool_t, ngx_str_t};
use ngx::http::HttpModuleMainConf;
use std::ffi::{c_char, c_void};

/// Smallest accepted `size`: nginx's slab pool takes a few pages of it.
pub const MIN_SIZE: usize = 2 * MIN_ZONE_BYTES;

/// What nginx calls a zone's shared memory: this, then the zone's name.
pub const SHM_PREFIX: &str = "prometheus_zone:";

pub struct ZoneConf {
    pub name: String,
    pub shm: *mut ngx_shm_zone_t,
}

/// A `prometheus_metrics` use of a zone, checked when the `http {}` block ends.
pub struct ZoneReference {
    pub zone: String,
    pub at: String,
}

directive! {
    pub(super) fn directive(cf, mcf: &mut MainConf, a) {
        let (name, size_arg) = (a[0], a[1]);
        if mcf.zones.iter().any(|z| z.name == name) {
            return conf_error(cf, &format!("prometheus_zone: duplicate zone \"{name}\""));
        }
        let size = match crate::config::directives::zone(name, size_arg, MIN_SIZE, &super::parse_size) {
            Ok(size) => size,
            Err(why) => return conf_error(cf, &why),
        };
        // nginx's name for the shared memory is the zone's with a prefix of its own, so
        // that a `lua_shared_dict` of the same name (what nginx-lua-prometheus used, kept
        // beside the zone that replaces it) is another zone, in whichever order they come.
        let shm_name = format!("{SHM_PREFIX}{name}");
        // SAFETY: `cf` is valid; its pool lives as long as the configuration, which keeps
        // the name nginx is given.
        let data = unsafe { ngx::ffi::ngx_pnalloc((*cf).pool, shm_name.len()) }.cast::<u8>();
        if data.is_null() {
            return ngx::core::NGX_CONF_ERROR;
        }
        // SAFETY: `data` has room for `shm_name.len()` bytes and does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(shm_name.as_ptr(), data, shm_name.len()) };
        let mut zone_name = ngx_str_t {
            len: shm_name.len(),
            data,
        };
        // SAFETY: `cf` is valid; `zone_name` points into the configuration pool.
        let shm = unsafe {
            ngx::ffi::ngx_shared_memory_add(
                cf,
                &mut zone_name,
                size,
                std::ptr::addr_of_mut!(super::ngx_http_prometheus_module).cast(),
            )
        };
        // SAFETY: a non-null result is a zone entry owned by the cycle.
        let Some(zone) = (unsafe { shm.as_mut() }) else {
            return ngx::core::NGX_CONF_ERROR;
        };
        // `data` stays null until `init` stores the store's address there: code that looks
        // a zone up before that (Lua in init_by_lua) finds no store.
        zone.init = Some(init);
        mcf.zones.push(ZoneConf {
            name: name.to_string(),
            shm,
        });
        ngx::core::NGX_CONF_OK
    }
}

/// Zone init callback: attach the previous cycle's store or format a new one.
extern "C" fn init(shm_zone: *mut ngx_shm_zone_t, data: *mut c_void) -> ngx_int_t {
    // SAFETY: nginx passes its zone entry, whose `shm` is mapped for the cycle.
    let zone = unsafe { &mut *shm_zone };
    if !data.is_null() {
        // SAFETY: `data` is what this function stored in the same-named, same-sized
        // zone of the previous cycle, whose memory nginx kept for this one.
        if unsafe { store_at(data.cast()) }.is_some() {
            zone.data = data;
            return ngx::ffi::NGX_OK as ngx_int_t;
        }
    }
    // SAFETY: nginx initialised a slab pool at the start of every shared zone.
    let pool = unsafe { &mut *zone.shm.addr.cast::<ngx_slab_pool_t>() };
    // SAFETY: reading the global page size nginx set at start.
    let page = unsafe { ngx::ffi::ngx_pagesize };
    // Everything the pool has, in one piece: the store manages its own space.
    let bytes = pool.pfree * page;
    // SAFETY: `pool` is a valid slab pool; the master is single-threaded here.
    let mem = unsafe { ngx::ffi::ngx_slab_alloc(pool, bytes) };
    if mem.is_null() {
        return ngx::ffi::NGX_ERROR as ngx_int_t;
    }
    zero_lazily(mem.cast(), bytes);
    // SAFETY: `mem` is `bytes` zeroed bytes (`zero_lazily`), page-aligned, mapped for
    // the zone's life, and only ever accessed through atomics from here on.
    let region = unsafe { Region::from_raw(mem.cast(), bytes) };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if Store::format(region, now).is_err() {
        return ngx::ffi::NGX_ERROR as ngx_int_t;
    }
    zone.data = mem;
    pool.data = mem;
    ngx::ffi::NGX_OK as ngx_int_t
}

/// Zeroes `bytes` at `mem` without making them resident: `ngx_slab_calloc` would
/// `memset` the whole zone at start (a 2 GB zone: 2 GB of RSS and a second of start-up
/// before the first series exists). Shared anonymous memory is shmem-backed, so
/// punching a hole (`MADV_REMOVE`) drops any contents and later reads fault in zero
/// pages; where that is refused, fall back to writing zeros.
fn zero_lazily(mem: *mut u8, bytes: usize) {
    // SAFETY: `mem` is a page-aligned allocation of `bytes` bytes (whole slab pages)
    // inside the zone's mapping; nothing else uses it yet.
    unsafe {
        debug_assert_eq!(mem as usize % 4096, 0);
        if libc::madvise(mem.cast(), bytes, libc::MADV_REMOVE) != 0 {
            std::ptr::write_bytes(mem, 0, bytes);
        }
    }
}

/// The store at `mem`, if one was formatted there.
///
/// # Safety
/// `mem` is null or the start of a region this module's `init` formatted, still mapped.
unsafe fn store_at(mem: *mut u8) -> Option<Store<'static>> {
    if mem.is_null() {
        return None;
    }
    // The header tells the size: read its first words, then the whole region.
    // SAFETY: a formatted region is at least MIN_ZONE_BYTES long.
    let head = unsafe { Region::from_raw(mem, MIN_ZONE_BYTES) };
    let bytes = Arena::zone_bytes(&head)?;
    // SAFETY: the header's size is the region's (Store::attach re-checks).
    Store::attach(unsafe { Region::from_raw(mem, bytes) }).ok()
}

/// Checks that every `prometheus_metrics` names a declared zone.
///
/// # Safety
/// Called by nginx as `init_main_conf` with a valid `cf` and our main conf.
pub unsafe fn check_references(cf: *mut ngx_conf_t, mcf: *mut MainConf) -> *mut c_char {
    // SAFETY: per the function contract.
    let mcf = unsafe { &*mcf };
    for r in &mcf.references {
        if !mcf
            .zones
            .iter()
            .any(|z| r.zone.is_empty() || z.name == r.zone)
        {
            let msg = if r.zone.is_empty() {
                format!(
                    "prometheus_metrics at {}: no prometheus_zone is declared in http {{}}",
                    r.at
                )
            } else {
                format!(
                    "prometheus_metrics at {}: unknown zone \"{}\"",
                    r.at, r.zone
                )
            };
            return conf_error(cf, &msg);
        }
    }
    ngx::core::NGX_CONF_OK
}

/// Our main conf in the running cycle, only where that cycle is final: in a worker
/// (or a single-process nginx). In the master during a (re)load `ngx_cycle` is still the
/// previous or the bootstrap cycle, whose zones may be unmapped once the load ends:
/// nothing attaches there, and Lua declarations made in `init_by_lua` wait for a worker.
pub(super) fn running_main_conf() -> Option<&'static MainConf> {
    // SAFETY: `ngx_process` and `ngx_cycle` are nginx globals, set before any Lua or
    // request code runs; in a worker the cycle, its `conf_ctx` and our main conf in it
    // live as long as the process.
    unsafe {
        let process = ngx::ffi::ngx_process as u32;
        if process != ngx::ffi::NGX_PROCESS_WORKER && process != ngx::ffi::NGX_PROCESS_SINGLE {
            return None;
        }
        let cycle = ngx::ffi::ngx_cycle;
        if cycle.is_null() || (*cycle).conf_ctx.is_null() {
            return None;
        }
        Module::main_conf(&*cycle)
    }
}

/// A zone of the running cycle by name (`""`: the first declared), with its store.
/// `None` outside a worker (for example in `init_by_lua`).
pub fn lookup(name: &str) -> Option<(String, Store<'static>)> {
    let mcf = running_main_conf()?;
    let z = mcf
        .zones
        .iter()
        .find(|z| name.is_empty() || z.name == name)?;
    // SAFETY: zone entries and their data live as long as the cycle; `data` holds the
    // store's address once `init` ran, which precedes any worker.
    let store = unsafe { store_at((*z.shm).data.cast()) }?;
    Some((z.name.clone(), store))
}

/// The identity (constant labels, versions) of the running cycle.
pub fn identity() -> Option<&'static crate::config::identity::Identity> {
    running_main_conf().map(|m| &m.identity)
}

/// Zone names of the running cycle, for error messages.
pub fn names() -> Vec<String> {
    running_main_conf()
        .map(|m| m.zones.iter().map(|z| z.name.clone()).collect())
        .unwrap_or_default()
}

/// `kill(pid, 0)`: whether a lock owner still runs.
pub fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 performs only the existence and permission check.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn my_pid() -> u32 {
    std::process::id()
}

/// This process as the store's calls that may take the zone lock see it.
pub fn participant() -> Participant<'static> {
    Participant {
        me: my_pid(),
        alive: &alive,
    }
}
