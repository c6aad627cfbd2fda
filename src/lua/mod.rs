//! The Lua module (`require "ngx_prometheus"`): the control plane. Registration,
//! series lookup and rendering run here through mlua; recording goes through the
//! plain C functions in [`ffi`], which LuaJIT compiles.

pub mod ffi;
mod link;
pub mod slots;
mod spec;
mod util;

use crate::exposition::{Format, Scrape, Selection};
use crate::metrics::histogram::Snapshot;
use crate::metrics::{MetricType, Reason, RegisterError, Store};
use crate::nginx::{stub_status, zone};
use mlua::{Lua, Result as LuaResult, Table, Value};

use spec::{number_list, spec_from};

fn err(msg: impl Into<String>) -> mlua::Error {
    mlua::Error::RuntimeError(msg.into())
}

fn store_of(slot: usize) -> LuaResult<Store<'static>> {
    slots::store(slot).ok_or_else(|| err(format!("no zone attached in slot {slot}")))
}

/// The store in `slot` and its family `id`.
fn family_in(slot: usize, id: u64) -> LuaResult<(Store<'static>, crate::metrics::Family)> {
    let store = store_of(slot)?;
    let f = store
        .family(id)
        .ok_or_else(|| err(format!("no metric family with id {id}")))?;
    Ok((store, f))
}

fn label_values(v: Table) -> LuaResult<Vec<Vec<u8>>> {
    v.sequence_values::<Value>()
        .map(|v| match v? {
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Integer(n) => Ok(n.to_string().into_bytes()),
            Value::Number(n) if n.is_nan() => Err(err("a label value is NaN")),
            // -0 is 0: Lua tables (the label cache) do not tell them apart either.
            Value::Number(0.0) => Ok(b"0".to_vec()),
            Value::Number(n) => Ok(n.to_string().into_bytes()),
            Value::Boolean(b) => Ok(b.to_string().into_bytes()),
            other => Err(err(format!(
                "label values must be strings, got {}",
                other.type_name()
            ))),
        })
        .collect()
}

/// `require "ngx_prometheus"`: binds the Lua C API (see [`link`]), then builds the
/// module table.
///
/// # Safety
/// Called by Lua with its own state, as `luaopen_*` functions are.
#[no_mangle]
pub unsafe extern "C-unwind" fn luaopen_ngx_prometheus(
    state: *mut mlua::lua_State,
) -> std::ffi::c_int {
    if let Err(missing) = link::resolve() {
        // Without the Lua C API there is no way to raise a Lua error.
        eprintln!(
            "ngx_prometheus: {missing} is not in the process: the Lua that requires \
             this module must be the one nginx's lua module (or OpenResty) brings"
        );
        std::process::abort();
    }
    // SAFETY: `state` is the Lua state requiring the module, as mlua's entry expects;
    // the Lua C API it calls is bound.
    unsafe { Lua::entrypoint1(state, module) }
}

fn module(lua: &Lua) -> LuaResult<Table> {
    crate::nginx::process::remember_lua(lua);
    let m = lua.create_table()?;
    add_zones(lua, &m)?;
    add_declarations(lua, &m)?;
    add_series(lua, &m)?;
    add_readers(lua, &m)?;
    add_helpers(lua, &m)?;
    util::register(lua, &m)?;
    Ok(m)
}

/// Attaching a zone to a slot.
fn add_zones(lua: &Lua, m: &Table) -> LuaResult<()> {
    m.set("zone", lua.create_function(attach_zone)?)
}

/// Declaring families: checks and registration.
fn add_declarations(lua: &Lua, m: &Table) -> LuaResult<()> {
    m.set("validate", lua.create_function(validate)?)?;
    m.set("exposition_names", lua.create_function(exposition_names)?)?;
    m.set("register", lua.create_function(register)?)
}

/// A family's series: lookup, expiry, deletion, buckets and quantiles.
fn add_series(lua: &Lua, m: &Table) -> LuaResult<()> {
    m.set("series", lua.create_function(series)?)?;
    m.set("overflow_series", lua.create_function(overflow_series)?)?;
    m.set("set_expire", lua.create_function(set_expire)?)?;
    m.set("delete_series", lua.create_function(delete_series)?)?;
    m.set("reset", lua.create_function(reset)?)?;
    m.set("delete_labelled", lua.create_function(delete_labelled)?)?;
    m.set("set_buckets", lua.create_function(set_buckets)?)?;
    m.set("quantile", lua.create_function(quantile)?)
}

/// Reading a zone: the exposition, its accounting, nginx's counters; counting errors.
fn add_readers(lua: &Lua, m: &Table) -> LuaResult<()> {
    m.set("render", lua.create_function(render)?)?;
    m.set("status", lua.create_function(status)?)?;
    m.set("count_error", lua.create_function(count_error)?)?;
    m.set("stub_status", lua.create_function(read_stub_status)?)
}

/// IP rules, error reasons, the version, the C functions' return codes, the C
/// structs' layouts and the longest exemplar id.
fn add_helpers(lua: &Lua, m: &Table) -> LuaResult<()> {
    m.set("ip_rules", lua.create_function(ip_rules)?)?;
    let reasons = lua.create_table()?;
    for r in Reason::ALL {
        reasons.set(r.as_str(), r as u32)?;
    }
    m.set("reasons", reasons)?;
    m.set("version", crate::config::identity::VERSION)?;
    m.set("layouts", ffi::layouts(lua)?)?;
    m.set("codes", ffi::codes(lua)?)?;
    // The longest exemplar id kept: the buffer `ngx_prom_request_exemplar` fills.
    m.set("max_exemplar_id", crate::metrics::exemplar::MAX_ID)?;
    Ok(())
}

/// zone(\[name\]) -> slot | nil, err
fn attach_zone(_: &Lua, name: Option<String>) -> LuaResult<(Option<usize>, Option<String>)> {
    let name = name.unwrap_or_default();
    let Some((real, store)) = zone::lookup(&name) else {
        return Ok((None, Some(missing_zone(&name))));
    };
    match slots::attach(&real, &store) {
        Some(slot) => Ok((Some(slot), None)),
        None => Ok((None, Some(format!("more than {} zones", slots::MAX_ZONES)))),
    }
}

/// Why zone `name` ("": the first) cannot be attached.
fn missing_zone(name: &str) -> String {
    let known = zone::names();
    if known.is_empty() {
        "no prometheus_zone in the running configuration (zones attach in workers, \
         not in init_by_lua)"
            .to_string()
    } else if name.is_empty() || known.iter().any(|k| k == name) {
        format!(
            "zone \"{}\" is not ready yet: zones attach in workers \
             (init_worker_by_lua or later), not in init_by_lua",
            if name.is_empty() { &known[0] } else { name }
        )
    } else {
        format!("unknown zone \"{name}\" (declared: {})", known.join(", "))
    }
}

/// validate(spec) -> true, raises naming the culprit
fn validate(_: &Lua, spec: Table) -> LuaResult<bool> {
    spec_from(&spec).map(|_| true)
}

/// exposition_names(name, type) -> { names }: every family and sample name a family of
/// that type exposes in either format; two families clash when these intersect.
fn exposition_names(_: &Lua, (name, metric_type): (String, String)) -> LuaResult<Vec<String>> {
    let t = MetricType::parse(&metric_type)
        .ok_or_else(|| err(format!("unknown metric type \"{metric_type}\"")))?;
    Ok(crate::metrics::family::exposition_names(&name, t))
}

/// register(slot, spec) -> family id; raises on misuse, nil, err when the zone is full
fn register(_: &Lua, (slot, spec): (usize, Table)) -> LuaResult<(Option<u64>, Option<String>)> {
    let spec = spec_from(&spec)?;
    let store = store_of(slot)?;
    match store.register(&spec, zone::participant()) {
        Ok(f) => Ok((Some(u64::from(f.id)), None)),
        Err(e @ RegisterError::ZoneFull { .. }) => Ok((None, Some(e.to_string()))),
        Err(e) => Err(err(e.to_string())),
    }
}

/// series(slot, family, {values}) -> handle | nil, err (counted in the zone); a third
/// value says why a label set went to the overflow series.
fn series(
    _: &Lua,
    (slot, family, values): (usize, u64, Table),
) -> LuaResult<(Option<u64>, Option<String>, Option<String>)> {
    let (store, f) = family_in(slot, family)?;
    let values = label_values(values)?;
    match store.find_or_make(f, &values, zone::participant(), Default::default()) {
        Ok(s) => Ok((
            Some(slots::join(slot, s.handle)),
            None,
            s.overflowed
                .map(|e| format!("{e}; recorded in the family's overflow series")),
        )),
        Err(e) => Ok((None, Some(e.to_string()), None)),
    }
}

/// overflow_series(slot, family) -> handle, overflow label value | nil, err: the
/// family's overflow series, made if missing (nothing is counted)
fn overflow_series(
    lua: &Lua,
    (slot, family): (usize, u64),
) -> LuaResult<(Option<u64>, mlua::LuaString)> {
    let (store, f) = family_in(slot, family)?;
    match store.overflow_series(f, zone::participant()) {
        Some((h, value)) => Ok((Some(slots::join(slot, h)), lua.create_string(value)?)),
        None => Ok((None, lua.create_string("no overflow series")?)),
    }
}

/// set_expire(slot, family, seconds) -> true; raises on a bad number
fn set_expire(_: &Lua, (slot, family, seconds): (usize, u64, f64)) -> LuaResult<bool> {
    let (store, f) = family_in(slot, family)?;
    if !(0.0..=4.0e9).contains(&seconds) || seconds.fract() != 0.0 {
        return Err(err(format!(
            "expire must be a whole number of seconds >= 0 (0: never), got {seconds}"
        )));
    }
    store.set_expire(f, seconds as u64);
    Ok(true)
}

/// delete_series(slot, family, {values}) -> whether a series was deleted
fn delete_series(_: &Lua, (slot, family, values): (usize, u64, Table)) -> LuaResult<bool> {
    let (store, f) = family_in(slot, family)?;
    let values = label_values(values)?;
    Ok(store.delete_series(f, &values, zone::participant()))
}

/// reset(slot, family) -> how many series were deleted
fn reset(_: &Lua, (slot, family): (usize, u64)) -> LuaResult<u64> {
    let (store, f) = family_in(slot, family)?;
    Ok(store.reset(f, zone::participant()))
}

/// delete_labelled(slot, {family names}, {label = value, ...}) -> how many series of
/// those families (the ones the zone has; none is made) that carry all those label
/// values were deleted, in one walk over the zone
fn delete_labelled(_: &Lua, (slot, names, wanted): (usize, Vec<String>, Table)) -> LuaResult<u64> {
    let store = store_of(slot)?;
    let mut wanted_values: Vec<(String, Vec<u8>)> = Vec::new();
    for pair in wanted.pairs::<String, mlua::LuaString>() {
        let (label, value) = pair?;
        wanted_values.push((label, value.as_bytes().to_vec()));
    }
    Ok(store.delete_labelled(&names, &wanted_values, zone::participant()))
}

/// set_buckets(slot, family, {bounds}) -> true; raises on bad bounds
fn set_buckets(_: &Lua, (slot, family, buckets): (usize, u64, Value)) -> LuaResult<bool> {
    let (store, f) = family_in(slot, family)?;
    let buckets = number_list(buckets, "buckets")?;
    store
        .set_buckets(f, &buckets, zone::participant())
        .map_err(|e| err(e.to_string()))?;
    Ok(true)
}

/// quantile(slot, family, {values}, q) -> number | nil, why (no such series, or no
/// observations); raises when q is not a number from 0 to 1
fn quantile(
    _: &Lua,
    (slot, family, values, q): (usize, u64, Table, f64),
) -> LuaResult<(Option<f64>, Option<&'static str>)> {
    let (store, f) = family_in(slot, family)?;
    let spec = store.spec(f);
    let Some(h) = spec.histogram else {
        return Err(err(format!("metric \"{}\" is not a histogram", spec.name)));
    };
    if !(0.0..=1.0).contains(&q) {
        return Err(err(format!("quantile must be from 0 to 1, got {q}")));
    }
    let Some(handle) = store.find_series(f, &label_values(values)?) else {
        return Ok((None, Some("no series with these label values")));
    };
    let snap = Snapshot::read(&store.region(), handle as u32, None);
    match snap.quantile(q, h.scale()) {
        Some(v) => Ok((Some(v), None)),
        None => Ok((None, Some("no observations"))),
    }
}

/// render(slot[, format]) -> the exposition, as the metrics handler serves it;
/// format: "text" (default), "openmetrics", "json" or "protobuf" (bytes)
fn render(lua: &Lua, (slot, format): (usize, Option<String>)) -> LuaResult<mlua::LuaString> {
    let store = store_of(slot)?;
    let format = match format.as_deref() {
        None => Format::Text,
        Some(f) => Format::parse(f).ok_or_else(|| {
            err(format!(
                "unknown format \"{f}\": use text, openmetrics, json or protobuf"
            ))
        })?,
    };
    let mut out = Vec::new();
    // Everything the metrics port shows, no more: the series of workers that a reload
    // retired are left out as there. Nothing is filtered by name, so nothing can be
    // missing.
    let scrape = Scrape {
        store,
        zone: slots::name(slot).unwrap_or_default(),
        stub: stub_status::read(),
        selection: Selection {
            workers: crate::nginx::process::worker_count(),
            ..Selection::default()
        },
        identity: crate::nginx::zone::identity(),
        format,
    };
    let _ = crate::exposition::render(&mut out, &scrape);
    lua.create_string(out)
}

/// status(slot) -> { capacity_bytes, used_bytes, families, series, lock_takeovers,
/// errors = {reason = n} }
fn status(lua: &Lua, slot: usize) -> LuaResult<Table> {
    let store = store_of(slot)?;
    let a = store.arena();
    let t = lua.create_table()?;
    t.set("capacity_bytes", a.capacity_bytes())?;
    t.set("used_bytes", a.used_bytes())?;
    t.set("families", a.families())?;
    t.set("series", a.series())?;
    t.set("lock_takeovers", a.lock_takeovers())?;
    let e = lua.create_table()?;
    for r in Reason::ALL {
        e.set(r.as_str(), store.errors(r))?;
    }
    t.set("errors", e)?;
    Ok(t)
}

/// count_error(slot, reason) for errors Lua detects itself
fn count_error(_: &Lua, (slot, reason): (usize, String)) -> LuaResult<()> {
    let store = store_of(slot)?;
    let r = Reason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .ok_or_else(|| err(format!("unknown reason \"{reason}\"")))?;
    store.count_error(r);
    Ok(())
}

/// stub_status() -> { accepted, handled, requests, active, reading, writing, waiting },
/// or nil on an nginx built without stub_status.
fn read_stub_status(lua: &Lua, (): ()) -> LuaResult<Option<Table>> {
    let Some(s) = stub_status::read() else {
        return Ok(None);
    };
    let t = lua.create_table()?;
    for (k, v) in [
        ("accepted", s.accepted),
        ("handled", s.handled),
        ("requests", s.requests),
        ("active", s.active),
        ("reading", s.reading),
        ("writing", s.writing),
        ("waiting", s.waiting),
    ] {
        t.set(k, v)?;
    }
    Ok(Some(t))
}

/// ip_rules({allow...}, {deny...}) -> rules | nil, err. `rules:allows(ip)` applies the
/// metrics endpoint's semantics (deny wins; then allow, if given, must match).
fn ip_rules(
    _: &Lua,
    (allow, deny): (Option<Vec<String>>, Option<Vec<String>>),
) -> LuaResult<(Option<IpRules>, Option<String>)> {
    let parse = |list: Option<Vec<String>>| -> Result<Vec<_>, String> {
        let mut out = Vec::new();
        for s in list.unwrap_or_default() {
            out.extend(crate::config::access::parse_rule(&s)?);
        }
        Ok(out)
    };
    match (parse(allow), parse(deny)) {
        (Ok(allow), Ok(deny)) => Ok((
            Some(IpRules(crate::config::access::AccessRules { allow, deny })),
            None,
        )),
        (Err(e), _) | (_, Err(e)) => Ok((None, Some(e))),
    }
}

/// Compiled IP rules, held by Lua.
struct IpRules(crate::config::access::AccessRules);

impl mlua::UserData for IpRules {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        // rules:allows(ip) -> bool; an unparsable address is refused.
        methods.add_method("allows", |_, this, ip: String| {
            Ok(ip
                .parse::<std::net::IpAddr>()
                .map(|ip| this.0.allows(ip))
                .unwrap_or(false))
        });
    }
}
