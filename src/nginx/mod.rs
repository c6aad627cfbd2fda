//! nginx glue: the module table, its directives and their configuration structs.
//! Everything here talks to nginx's C structures; the logic it calls is elsewhere.

/// Defines a directive handler, `extern "C" fn $name(cf, cmd, conf)`, whose body gets
/// the configuration being parsed (`cf`), this module's configuration of the
/// directive's level (`MainConf` for a command with `NGX_HTTP_MAIN_CONF_OFFSET`,
/// `LocConf` for `NGX_HTTP_LOC_CONF_OFFSET`: the command table must agree) and the
/// directive's arguments.
macro_rules! directive {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($cf:ident, $conf:ident: &mut $t:ty, $args:ident) $body:block
    ) => {
        $(#[$attr])*
        $vis extern "C" fn $name(
            $cf: *mut ngx::ffi::ngx_conf_t,
            _cmd: *mut ngx::ffi::ngx_command_t,
            conf: *mut std::ffi::c_void,
        ) -> *mut std::ffi::c_char {
            // SAFETY: nginx calls a directive handler with the configuration being parsed
            // and this module's configuration at the command's `conf` offset (of type
            // `$t`, per the command table), both valid and unshared for the call.
            let given = unsafe { (&mut *conf.cast::<$t>(), $crate::nginx::args($cf)) };
            let ($conf, $args): (&mut $t, Vec<&str>) = given;
            $body
        }
    };
}

pub mod bitfield;
mod handler;
mod identity;
mod limits;
pub mod process;
mod push;
mod quiesce;
mod record;
mod render;
pub mod request;
pub mod response;
pub mod stub_status;
mod sweep;
mod timer;
pub mod zone;

use crate::config::access::AccessRules;
use crate::config::auth::Credentials;
use cidr_utils::cidr::IpCidr;
use ngx::ffi::{
    ngx_command_t, ngx_http_module_t, ngx_module_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_ANY,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_CONF_TAKE2, NGX_HTTP_LOC_CONF,
    NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_MODULE,
    NGX_HTTP_SRV_CONF,
};
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, Merge, MergeConfigError};
use ngx::ngx_string;
use std::ptr;
use std::sync::Arc;

pub struct Module;

impl HttpModule for Module {
    fn module() -> &'static ngx_module_t {
        // SAFETY: the module static is only written by nginx while it loads modules,
        // before any configuration handler can run.
        unsafe { &*ptr::addr_of!(ngx_http_prometheus_module) }
    }

    unsafe extern "C" fn init_main_conf(
        cf: *mut ngx::ffi::ngx_conf_t,
        conf: *mut std::ffi::c_void,
    ) -> *mut std::ffi::c_char {
        // SAFETY: nginx passes the configuration being parsed and our main conf.
        let rc = unsafe { zone::check_references(cf, conf.cast()) };
        if rc != ngx::core::NGX_CONF_OK {
            return rc;
        }
        // SAFETY: as above; nothing else holds the main conf during this call.
        let mcf = unsafe { &mut *conf.cast::<MainConf>() };
        if let Err(why) = record::check_zones(mcf) {
            return conf_error(cf, &why);
        }
        let z = &mcf.process.zone;
        if mcf.process.enabled && !z.is_empty() && !mcf.zones.iter().any(|d| &d.name == z) {
            return conf_error(
                cf,
                &format!("prometheus_process_metrics: unknown zone \"{z}\""),
            );
        }
        match identity::resolve(cf, mcf).and_then(|()| push::resolve(cf, mcf)) {
            Ok(()) => ngx::core::NGX_CONF_OK,
            Err(rc) => rc,
        }
    }
}

// SAFETY: `MainConf` is the type `create_main_conf` allocates for this module.
unsafe impl HttpModuleMainConf for Module {
    type MainConf = MainConf;
}

// SAFETY: `LocConf` is the type `create_loc_conf` allocates for this module.
unsafe impl HttpModuleLocationConf for Module {
    type LocationConf = LocConf;
}

/// `http {}` level: the declared zones.
#[derive(Default)]
pub struct MainConf {
    pub zones: Vec<zone::ZoneConf>,
    /// `prometheus_metrics` uses, checked once the whole `http {}` block is read.
    pub references: Vec<zone::ZoneReference>,
    /// `prometheus_node_id_file`, and the id read from it.
    pub node_id_file: Option<String>,
    pub node_id: Option<String>,
    pub hostname: String,
    /// `prometheus_const_labels` as written, resolved into `identity`.
    pub const_labels: Vec<String>,
    pub identity: crate::config::identity::Identity,
    /// `prometheus_process_metrics`; `process_set` once the directive was seen.
    pub process: process::ProcessConf,
    pub process_set: bool,
    /// `prometheus_push`, with its headers and credentials once the block is read.
    pub push: Option<push::PushConf>,
    pub push_headers: Vec<(String, String)>,
    pub push_basic_auth: Option<(String, String)>,
    /// `prometheus_push_ca`: the CA file's path, read once the block is.
    pub push_ca: Option<String>,
    /// `prometheus_max_renders` / `prometheus_max_pinned`: scrapes and bytes held per
    /// worker (`None`: the defaults in `limits`).
    pub max_renders: Option<usize>,
    pub max_pinned: Option<usize>,
    /// Every `prometheus_record`, for the checks once the block is read.
    pub records: Vec<record::Recorder>,
}

/// `location {}` level.
#[derive(Default, Clone)]
pub struct LocConf {
    /// Zone served by `prometheus_metrics` here; `None` when the location serves none.
    pub metrics_zone: Option<String>,
    /// Groups served here (`prometheus_metrics [zone] group=a,b`); empty: all.
    pub groups: Vec<String>,
    /// `prometheus_allow` / `prometheus_deny`, inherited from the enclosing level when
    /// a location sets neither.
    pub access: Option<AccessRules>,
    /// `prometheus_auth_file`: `Some(None)` is an explicit `off`; inherited when unset.
    pub credentials: Option<Option<Arc<Credentials>>>,
    /// `prometheus_trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<IpCidr>>,
    /// `prometheus_protect`: apply the rules above to the location's own content.
    pub protect: Option<bool>,
    /// Where scrapes render (nginx's default thread pool), when available.
    pub thread_pool: Option<std::ptr::NonNull<ngx::ffi::ngx_thread_pool_t>>,
    /// `prometheus_record`: `Some(None)` is an explicit `off`; inherited when unset.
    pub record: Option<Option<std::rc::Rc<record::RecordConf>>>,
    /// `prometheus_record_location`: the `location` label; inherited when unset.
    pub record_location: Option<String>,
}

impl Merge for LocConf {
    fn merge(&mut self, prev: &LocConf) -> Result<(), MergeConfigError> {
        if self.access.is_none() {
            self.access = prev.access.clone();
        }
        if self.credentials.is_none() {
            self.credentials = prev.credentials.clone();
        }
        if self.trusted_proxies.is_none() {
            self.trusted_proxies = prev.trusted_proxies.clone();
        }
        if self.protect.is_none() {
            self.protect = prev.protect;
        }
        if self.record.is_none() {
            self.record = prev.record.clone();
        }
        if self.record_location.is_none() {
            self.record_location = prev.record_location.clone();
        }
        Ok(())
    }
}

static mut COMMANDS: [ngx_command_t; 19] = [
    ngx_command_t {
        name: ngx_string!("prometheus_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(zone::directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE12) as ngx_uint_t,
        set: Some(handler::metrics_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_max_renders"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(limits::max_renders_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_max_pinned"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(limits::max_pinned_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_allow"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_1MORE)
            as ngx_uint_t,
        set: Some(handler::allow_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_deny"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_1MORE)
            as ngx_uint_t,
        set: Some(handler::deny_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_auth_file"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(handler::auth_file_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_trusted_proxies"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_1MORE)
            as ngx_uint_t,
        set: Some(handler::trusted_proxies_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_protect"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1)
            as ngx_uint_t,
        set: Some(handler::protect_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_node_id_file"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(identity::node_id_file_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_const_labels"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(identity::const_labels_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_process_metrics"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(process::directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_push"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(push::push_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_push_header"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(push::header_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_push_basic_auth"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE2) as ngx_uint_t,
        set: Some(push::basic_auth_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_push_ca"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(push::ca_directive),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_record"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_ANY)
            as ngx_uint_t,
        set: Some(record::record_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("prometheus_record_location"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(record::location_directive),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];

static CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: None,
    postconfiguration: Some(postconfiguration),
    create_main_conf: Some(Module::create_main_conf),
    init_main_conf: Some(Module::init_main_conf),
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(Module::create_loc_conf),
    merge_loc_conf: Some(Module::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_prometheus_module);

#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_prometheus_module: ngx_module_t = ngx_module_t {
    ctx: &raw const CTX as _,
    // SAFETY: taking the address of a static; nginx reads the table, never frees it.
    commands: unsafe { &raw mut COMMANDS[0] },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    init_process: Some(init_process),
    exit_process: Some(exit_process),
    ..ngx_module_t::default()
};

/// The module's phase handlers: access (metrics locations' rules) and log (recorders).
extern "C" fn postconfiguration(cf: *mut ngx::ffi::ngx_conf_t) -> ngx::ffi::ngx_int_t {
    if handler::add_access_handler(cf) != ngx::core::Status::NGX_OK.0 {
        return ngx::core::Status::NGX_ERROR.0;
    }
    // SAFETY: nginx calls postconfiguration with the http {} configuration being read.
    match record::add_log_handler(unsafe { &*cf }) {
        Ok(()) => ngx::core::Status::NGX_OK.0,
        Err(()) => ngx::core::Status::NGX_ERROR.0,
    }
}

/// In every new worker: process metrics, and the pusher and the expiry sweep in worker 0.
unsafe extern "C" fn init_process(cycle: *mut ngx::ffi::ngx_cycle_t) -> ngx::ffi::ngx_int_t {
    // SAFETY: nginx calls init_process with the running cycle, in the new process.
    let p = unsafe { NewProcess::of(cycle) };
    process::remember_worker_count(p.workers);
    let rc = process::init_process(&p);
    push::start(&p);
    sweep::start(&p);
    quiesce::start(&p);
    rc
}

/// What the module's `init_process` parts need to know of a new process, read once.
pub(crate) struct NewProcess {
    /// The cycle's log, valid as long as the process.
    pub log: *mut ngx::ffi::ngx_log_t,
    /// `ngx_worker`: the worker's number (0 with `master_process off`).
    pub worker: ngx::ffi::ngx_uint_t,
    /// A worker or the single process, not a helper (cache manager, loader).
    pub serves: bool,
    /// `worker_processes` of the running configuration, when readable.
    pub workers: Option<ngx::ffi::ngx_int_t>,
}

impl NewProcess {
    /// # Safety
    /// `cycle` is the running cycle, as nginx passes it to `init_process`, in the
    /// process that runs it.
    unsafe fn of(cycle: *mut ngx::ffi::ngx_cycle_t) -> NewProcess {
        // SAFETY: per the contract, `cycle` and its `conf_ctx` are valid; nginx set
        // `ngx_worker` and `ngx_process` before calling init_process; the core module's
        // configuration is made for every cycle and lives as long (`conf_ctx` is indexed
        // by module index, as `ngx_get_conf` does).
        unsafe {
            debug_assert!(!cycle.is_null() && !(*cycle).conf_ctx.is_null());
            let ccf = *(*cycle)
                .conf_ctx
                .add(ngx::ffi::ngx_core_module.index)
                .cast::<*const ngx::ffi::ngx_core_conf_t>();
            let process = ngx::ffi::ngx_process as u32;
            NewProcess {
                log: (*cycle).log,
                worker: ngx::ffi::ngx_worker,
                serves: process == ngx::ffi::NGX_PROCESS_WORKER
                    || process == ngx::ffi::NGX_PROCESS_SINGLE,
                workers: ccf.as_ref().map(|c| c.worker_processes),
            }
        }
    }
}

unsafe extern "C" fn exit_process(_cycle: *mut ngx::ffi::ngx_cycle_t) {
    push::stop();
    quiesce::stop();
}

/// The directive's arguments, after the directive name.
///
/// # Safety
/// `cf` is the configuration being parsed, as nginx passes it to directive handlers.
pub(crate) unsafe fn args<'a>(cf: *mut ngx::ffi::ngx_conf_t) -> Vec<&'a str> {
    // SAFETY: nginx fills `cf.args` with the directive's words (an array of `ngx_str_t`,
    // allocated from the configuration pool that outlives the handler call).
    unsafe {
        debug_assert!(!(*cf).args.is_null());
        (*(*cf).args).as_slice::<ngx::ffi::ngx_str_t>()[1..]
            .iter()
            .map(|s| s.to_str().unwrap_or("\u{fffd}"))
            .collect()
    }
}

/// A directive's file argument made absolute the way nginx's own directives do it
/// (`ngx_conf_full_name`): against the configuration directory (`conf_dir`, as for
/// `auth_basic_user_file` or `ssl_certificate`) or against the prefix (as for `pid` or
/// `error_log`, files nginx writes). Never against the directory nginx was started from.
pub(crate) fn full_name(
    cf: *mut ngx::ffi::ngx_conf_t,
    path: &str,
    conf_dir: bool,
) -> Result<String, String> {
    let mut name = ngx::ffi::ngx_str_t {
        len: path.len(),
        data: path.as_ptr().cast_mut(),
    };
    // SAFETY: `cf.cycle` is the cycle being configured (its prefixes are set);
    // `ngx_conf_full_name` only reads `name` and, for a relative path, points it at a
    // new string from the cycle's pool, which outlives this call.
    let rc = unsafe { ngx::ffi::ngx_conf_full_name((*cf).cycle, &mut name, conf_dir.into()) };
    if rc != ngx::ffi::NGX_OK as ngx::ffi::ngx_int_t {
        return Err(format!("cannot make \"{path}\" absolute"));
    }
    // SAFETY: on success `name` describes `len` readable bytes (the original or the
    // pool copy).
    let bytes = unsafe { std::slice::from_raw_parts(name.data, name.len) };
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// An nginx time (`5s`, `500ms`, `1m`) in milliseconds; `None` unless positive.
pub(crate) fn parse_time_ms(t: &str) -> Option<u64> {
    let mut s = ngx::ffi::ngx_str_t {
        len: t.len(),
        data: t.as_ptr().cast_mut(),
    };
    // SAFETY: ngx_parse_time only reads `len` bytes of the string.
    let ms = unsafe { ngx::ffi::ngx_parse_time(&mut s, 0) };
    (ms > 0 && ms != ngx::ffi::NGX_ERROR as ngx::ffi::ngx_int_t).then_some(ms as u64)
}

/// An nginx size (`10m`, `512k`) in bytes; `None` when it is not one.
pub(crate) fn parse_size(t: &str) -> Option<usize> {
    let mut s = ngx::ffi::ngx_str_t {
        len: t.len(),
        data: t.as_ptr().cast_mut(),
    };
    // SAFETY: ngx_parse_size only reads `len` bytes of the string.
    let size = unsafe { ngx::ffi::ngx_parse_size(&mut s) };
    usize::try_from(size).ok()
}

/// Adds `handler` to phase `phase` of the `http {}` block being read (in a
/// postconfiguration, once the core module made its phase arrays).
pub(crate) fn add_phase_handler(
    cf: &ngx::ffi::ngx_conf_t,
    phase: ngx::ffi::ngx_http_phases,
    handler: unsafe extern "C" fn(*mut ngx::ffi::ngx_http_request_t) -> ngx::ffi::ngx_int_t,
) -> Result<(), ()> {
    use ngx::http::HttpModuleMainConf;
    let cmcf = ngx::http::NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    let handlers = &mut cmcf.phases[phase as usize].handlers;
    // SAFETY: the core module made `handlers` (an array of `ngx_http_handler_pt`, in the
    // configuration pool) in its preconfiguration; a push returns room for one of them.
    unsafe {
        let slot = ngx::ffi::ngx_array_push(handlers).cast::<ngx::ffi::ngx_http_handler_pt>();
        if slot.is_null() {
            return Err(());
        }
        *slot = Some(handler);
    }
    Ok(())
}

/// This module's main configuration while a directive of `cf` is read, and where that
/// directive is (`file:line`): what checks made once `http {}` is read name.
pub(crate) fn main_conf_at(
    cf: *mut ngx::ffi::ngx_conf_t,
) -> Option<(&'static mut MainConf, String)> {
    use ngx::http::HttpModuleMainConf;
    // SAFETY: a directive handler's `cf` is the configuration being parsed and its
    // `conf_file` the file being read, both valid for the call; nothing else holds our
    // main conf during a directive handler.
    let (mcf, file) = unsafe {
        let cf = &*cf;
        (Module::main_conf_mut(cf)?, &*cf.conf_file)
    };
    let name = file.file.name.to_str().unwrap_or("?");
    Some((mcf, format!("{name}:{}", file.line)))
}

/// Logs a configuration error (nginx appends the file and line) and fails the directive.
pub(crate) fn conf_error(cf: *mut ngx::ffi::ngx_conf_t, msg: &str) -> *mut std::ffi::c_char {
    ngx::ngx_conf_log_error!(ngx::ffi::NGX_LOG_EMERG, cf, "{}", msg);
    ngx::core::NGX_CONF_ERROR
}
