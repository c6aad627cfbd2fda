-- gateway.entities: the schemas of the gateway's entities (Kong's shapes) and the
-- relations the store enforces between them. Everything else about an entity is
-- derived from its definition here (see "Adding an entity" below the definitions).
--
-- Each definition: { schema, endpoint_key (the field `/services/{id or name}`
-- accepts besides the id), endpoint_key_scope (the foreign field the endpoint key is
-- unique within, if not globally), unique_together (fields unique as a combination),
-- per_parent ({ field, limit }: at most `limit` entities per referenced parent),
-- path (its Admin API collection, /<path>; default the kind, false for none) and
-- nested_path (its name under a parent, /<parent>/{p}/<nested_path>; default path) }.
-- A foreign field relates an entity to its parent: { type = "foreign", reference =
-- <kind>, on_delete = "restrict" (default: the parent cannot go while referenced) or
-- "cascade" (the child goes with it) }.
-- Derived: name (the kind), fields (by name), foreign ({ field, reference, on_delete }
-- per foreign field), unique (fields), children ({ kind, field }: the kinds that
-- reference this one, and through which field), updated_at (whether the store stamps it).

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local plugins = require "gateway.plugins"

local null, as_array, shown = core.null, schema.as_array, schema.shown
local ipairs, pairs, next, pcall, tonumber, tostring, type = ipairs, pairs, next, pcall, tonumber, tostring, type
local fmt, concat = string.format, table.concat

local _M = {}

--------------------------------------------------------------------------------
-- Field types shared by several entities.

local function id_field()
    return { id = { type = "string", uuid = true, default = core.uuid } }
end

local function created_at()
    return { created_at = { type = "integer", between = { 0, 2 ^ 53 }, default = ngx.time } }
end

-- Stamped by the store on every write; accepted as input so that files round-trip.
local function updated_at()
    return { updated_at = { type = "integer", between = { 0, 2 ^ 53 } } }
end

-- How long the lists an Admin call can grow may be (README: "Limits"). Each one is
-- read on every request or every scrape (routes, buckets, address rules) or stored in
-- every copy of the configuration, so none may grow without bound.
local LIMITS = {
    tags = 64,
    paths = 64,
    hosts = 64,
    methods = 16,
    http_statuses = 32,
}
_M.LIMITS = LIMITS

-- Kong's tag rule: printable ASCII but for ',' and '/' (they separate tags in the
-- Admin API's ?tags= filter) and space, or UTF-8 beyond ASCII (what every string
-- stored may hold: gateway.schema).
local function valid_tag(tag)
    if tag:find("[ ,/]") then
        return nil, fmt("invalid tag '%s': expected printable ascii (except `,`, `/` and space) "
            .. "or valid utf-8 sequences", shown(tag))
    end
    return true
end

local TAG = { type = "string", len_min = 1, len_max = 128, custom = valid_tag,
              description = "A tag: printable ASCII but `,`, `/` and space, or UTF-8 beyond ASCII." }
_M.TAG = TAG

local function tags()
    return { tags = { type = "set", len_max = LIMITS.tags, elements = TAG } }
end

local NAME = {
    type = "string",
    len_min = 1,
    len_max = 128,
    match = "^[%w%.%-_~]+$",
    match_err = "the only accepted ascii characters are alphanumerics or ., -, _, and ~",
}

local function name_field(required)
    local def = { unique = true, required = required }
    for k, v in pairs(NAME) do def[k] = v end
    return { name = def }
end

-- A DNS name or an IPv4 address (labels of letters, digits, '-' and '_').
local function valid_host(h)
    if #h == 0 or #h > 253 then return nil, "invalid hostname: " .. shown(h) end
    for label in (h .. "."):gmatch("([^.]*)%.") do
        if not label:find("^[%w_][%w_%-]*$") or #label > 63 then
            return nil, "invalid hostname: " .. shown(h)
        end
    end
    return true
end

-- Route hosts may carry one wildcard, as the leftmost or rightmost label.
local function valid_route_host(h)
    local bare = h:gsub("^%*%.", "", 1)
    if bare == h then bare = h:gsub("%.%*$", "", 1) end
    if bare:find("*", 1, true) then
        return nil, "invalid wildcard: must be placed at leftmost or rightmost label"
    end
    return valid_host(bare)
end

local TIMEOUT = { type = "integer", default = 60000, between = { 1, 2 ^ 31 - 2 } }
-- Paths are stored escaped, as they are sent upstream: RFC 3986 path characters and
-- %XX escapes only (Kong's rule), and no control character even escaped (a stored
-- CR LF must never become a header, whatever later decodes it).
local function valid_path(p)
    local bad = p:find("[^%w%-%._~!$&'()*+,;=:@/%%]")
    if bad then
        return nil, fmt("invalid path: '%s' (characters outside of the reserved list of RFC 3986 found)", shown(p))
    end
    for esc in p:gmatch("%%(.?.?)") do
        if not esc:find("^%x%x$") then
            return nil, fmt("invalid path: '%s' (a %% must start an escape: %%XX)", shown(p))
        end
        local b = tonumber(esc, 16)
        if b < 32 or b == 127 then
            return nil, fmt("invalid path: '%s' (control characters are not allowed, even escaped)", shown(p))
        end
    end
    return true
end

local PATH = { type = "string", match = "^/", match_err = "should start with: /", len_max = 1024,
               custom = valid_path }
local PROTOCOL = { type = "string", one_of = { "http", "https" } }

--------------------------------------------------------------------------------
-- Services.

local DEFAULT_PORT = { http = 80, https = 443 }

-- `url` is shorthand for protocol, host, port and path; a missing path unsets it.
local function expand_url(url)
    if type(url) ~= "string" then return nil, "expected a string" end
    local scheme, authority, path = url:match("^(%a[%w+.-]*)://([^/?#]+)([^?#]*)$")
    if not scheme then return nil, "invalid url: " .. shown(url) end
    scheme = scheme:lower()
    local host, port = authority:match("^(.-):(%d+)$")
    host = host or authority
    return {
        protocol = scheme,
        host = host,
        port = port and tonumber(port) or DEFAULT_PORT[scheme] or 80,
        path = path ~= "" and path or null,
    }
end

local services = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            updated_at(),
            name_field(false),
            { retries = { type = "integer", default = 5, between = { 0, 32767 } } },
            { protocol = { type = "string", required = true, default = "http", one_of = PROTOCOL.one_of } },
            { host = { type = "string", required = true, custom = valid_host } },
            { port = { type = "integer", required = true, default = 80, between = { 0, 65535 } } },
            { path = PATH },
            { connect_timeout = TIMEOUT },
            { write_timeout = TIMEOUT },
            { read_timeout = TIMEOUT },
            -- TLS to the service (protocol https only; conf/gateway.conf @https).
            { tls_verify = { type = "boolean",
                description = "Verify the service's certificate (unset: verified; false: not)." } },
            { tls_verify_depth = { type = "integer", between = { 0, 64 },
                description = "Refused when set: the depth is proxy_ssl_verify_depth (4)." } },
            { ca_certificates = { type = "array", len_max = 64, elements = { type = "string", uuid = true },
                description = "Refused when not empty: there are no CA certificate entities." } },
            tags(),
        },
        shorthands = { url = { type = "string", expand = expand_url,
            description = "Shorthand for protocol, host, port and path (a URL without a path unsets path)." } },
        entity_checks = function(service)
            local errs
            local function refuse(field, why)
                errs = errs or {}
                errs[field] = why
            end
            local depth, cas = service.tls_verify_depth, service.ca_certificates
            local has_cas = cas ~= nil and cas ~= null and #cas > 0
            if service.protocol ~= "https" then
                if service.tls_verify ~= nil and service.tls_verify ~= null then
                    refuse("tls_verify", "value must be null (only for protocol 'https')")
                end
                if depth ~= nil and depth ~= null then
                    refuse("tls_verify_depth", "value must be null (only for protocol 'https')")
                end
                if has_cas then refuse("ca_certificates", "value must be null (only for protocol 'https')") end
            else
                -- nginx checks the certificate's DNS names only (X509_check_host): an
                -- address would fail every handshake.
                if service.tls_verify ~= false and type(service.host) == "string"
                    and service.host:find("^%d+%.%d+%.%d+%.%d+$") then
                    refuse("host", "an IP address cannot be verified against a certificate "
                        .. "(nginx matches DNS names only): use a DNS name, or set tls_verify to false")
                end
                if depth ~= nil and depth ~= null then
                    refuse("tls_verify_depth", "not supported: certificate chains are verified to "
                        .. "depth 4 (proxy_ssl_verify_depth in conf/gateway.conf)")
                end
                if has_cas then
                    refuse("ca_certificates", "not supported: there are no CA certificate entities; "
                        .. "certificates are verified against proxy_ssl_trusted_certificate in conf/gateway.conf")
                end
            end
            if errs then return nil, errs end
            return true
        end,
    },
    endpoint_key = "name",
}

--------------------------------------------------------------------------------
-- Routes.

local routes = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            updated_at(),
            name_field(false),
            { protocols = { type = "set", elements = PROTOCOL, len_min = 1,
                            default = as_array({ "http", "https" }) } },
            { methods = { type = "set", len_max = LIMITS.methods,
                          elements = { type = "string", match = "^%u+$", len_max = 32,
                                       match_err = "invalid method: must be uppercase letters" } } },
            { hosts = { type = "array", len_max = LIMITS.hosts,
                        elements = { type = "string", custom = valid_route_host } } },
            { paths = { type = "array", len_max = LIMITS.paths, elements = PATH } },
            { strip_path = { type = "boolean", required = true, default = true } },
            { preserve_host = { type = "boolean", required = true, default = false } },
            -- A service cannot go while routes use it (on_delete's default, Kong's choice).
            { service = { type = "foreign", reference = "services" } },
            tags(),
        },
        entity_checks = function(route)
            for _, f in ipairs({ "methods", "hosts", "paths" }) do
                if route[f] and #route[f] > 0 then return true end
            end
            return nil, { ["@entity"] = as_array({
                "must set one of 'methods', 'hosts', 'paths' when 'protocols' is 'http' or 'https'",
            }) }
        end,
    },
    endpoint_key = "name",
}

--------------------------------------------------------------------------------
-- Consumers.

local consumers = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            updated_at(),
            { username = { type = "string", unique = true, len_min = 1, len_max = 256 } },
            { custom_id = { type = "string", unique = true, len_min = 1, len_max = 256 } },
            tags(),
        },
        entity_checks = function(consumer)
            if consumer.username or consumer.custom_id then return true end
            return nil, { ["@entity"] = as_array({
                "at least one of these fields must be non-empty: 'custom_id', 'username'",
            }) }
        end,
    },
    endpoint_key = "username",
}

--------------------------------------------------------------------------------
-- Plugins.

-- The plugin module for `name`, or nil and why not. A module that fails to load is
-- reported as not enabled (and logged: its author wants the reason).
local function plugin_module(name)
    if type(name) ~= "string" then return nil end
    local ok, mod = pcall(plugins.get, name)
    if not ok then
        ngx.log(ngx.ERR, "gateway: plugin '", name, "' failed to load: ", mod)
        return nil
    end
    return mod
end
_M.plugin_module = plugin_module

local function plugin_enabled(name)
    if plugin_module(name) then return true end
    return nil, fmt("plugin '%s' not enabled; available plugins: %s", shown(name), concat(plugins.names(), ", "))
end

local plugin_entity = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            updated_at(),
            { name = { type = "string", required = true, custom = plugin_enabled } },
            -- A plugin goes with what it is applied to.
            { service = { type = "foreign", reference = "services", on_delete = "cascade" } },
            { route = { type = "foreign", reference = "routes", on_delete = "cascade" } },
            { consumer = { type = "foreign", reference = "consumers", on_delete = "cascade" } },
            { config = { type = "record", schema_for = function(plugin)
                local mod = plugin_module(plugin.name)
                return mod and mod.schema
            end, variants = { field = "name", schemas = function()
                local out = {}
                for _, n in ipairs(plugins.names()) do
                    local mod = plugin_module(n)
                    out[n] = mod and mod.schema
                end
                return out
            end } } },
            { enabled = { type = "boolean", required = true, default = true } },
            tags(),
        },
        -- A plugin may refuse a scope (key-auth identifies consumers, so it cannot be
        -- applied to one): its module says `no_consumer = true` (or no_service, no_route).
        entity_checks = function(plugin)
            local mod = plugin_module(plugin.name)
            local errs
            for _, scope in ipairs({ "consumer", "service", "route" }) do
                if mod and mod["no_" .. scope] and plugin[scope] then
                    errs = errs or {}
                    errs[scope] = "value must be null"
                end
            end
            if errs then return nil, errs end
            return true
        end,
    },
    -- One plugin of a name per (service, route, consumer) combination.
    unique_together = { "name", "service", "route", "consumer" },
}

--------------------------------------------------------------------------------
-- Upstreams and targets.

-- Seconds between probes: 0 (none in that state) or from 0.1 s (ten probes a second
-- per target at most).
local function probe_interval(v)
    if v ~= 0 and v < 0.1 then return nil, "value should be 0 (no probes) or between 0.1 and 65535" end
    return true
end
local INTERVAL = { type = "number", default = 0, between = { 0, 65535 }, custom = probe_interval,
                   description = "Seconds between probes of a target in this state: 0 (none) or 0.1 to 65535." }
local function statuses(default)
    return { type = "set", default = as_array(default), len_max = LIMITS.http_statuses,
             elements = { type = "integer", between = { 100, 999 } } }
end
-- A consecutive-outcome threshold; 0 turns that transition off.
local COUNTER = { type = "integer", default = 0, between = { 0, 255 },
                  description = "Outcomes in a row that change the target's state (0: never)." }

local ACTIVE_HEALTHCHECKS = { type = "record", fields = {
    { type = { type = "string", default = "http", one_of = { "http", "https", "tcp" },
               description = "http (https: over TLS): GET http_path, judged by its status; "
                   .. "tcp: a connection that opens is a success." } },
    { http_path = { type = "string", default = "/", match = PATH.match, match_err = PATH.match_err,
                    len_max = PATH.len_max, custom = PATH.custom,
                    description = "The path probed: escaped (RFC 3986 characters and %XX), no query." } },
    { timeout = { type = "number", default = 1, between = { 0.001, 60 },
                  description = "Seconds a whole probe may take (connect, request, status line)." } },
    { concurrency = { type = "integer", default = 10, between = { 1, 256 },
                      description = "Targets of the upstream probed at the same time." } },
    { https_verify_certificate = { type = "boolean", default = true,
        description = "https: verify the target's certificate (against lua_ssl_trusted_certificate)." } },
    { https_sni = { type = "string", custom = valid_host,
        description = "https: the name sent as SNI and verified (unset: the target's host, if a name)." } },
    { healthy = { type = "record", fields = {
        { interval = INTERVAL },
        { successes = COUNTER },
        { http_statuses = statuses({ 200, 302 }) },
    } } },
    { unhealthy = { type = "record", fields = {
        { interval = INTERVAL },
        { http_failures = COUNTER },
        { tcp_failures = COUNTER },
        { timeouts = COUNTER },
        { http_statuses = statuses({ 429, 404, 500, 501, 502, 503, 504, 505 }) },
    } } },
} }

local upstreams = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            updated_at(),
            { name = { type = "string", required = true, unique = true, custom = valid_host } },
            { algorithm = { type = "string", default = "round-robin", one_of = { "round-robin" } } },
            { healthchecks = { type = "record", fields = {
                { passive = { type = "record", fields = {
                    { unhealthy = { type = "record", fields = {
                        -- Consecutive failures before a target is taken out; 0 disables.
                        { failures = { type = "integer", default = 3, between = { 0, 255 } } },
                        { http_statuses = { type = "set", default = as_array({ 500, 502, 503, 504 }),
                                            len_max = LIMITS.http_statuses,
                                            elements = { type = "integer", between = { 100, 999 } } } },
                        { timeouts = { type = "integer", default = 3, between = { 0, 255 } } },
                    } } },
                    -- Seconds after which an unhealthy target gets traffic again.
                    { readmit_after = { type = "number", default = 10, between = { 0, 65535 } } },
                } } },
                -- Probes of every target (Kong's fields and defaults; gateway.healthcheck).
                { active = ACTIVE_HEALTHCHECKS },
            } } },
            tags(),
        },
    },
    endpoint_key = "name",
}

-- "host[:port]" -> "host:port" (Kong's default port, 8000).
local function normalize_target(t)
    local host, port = t:match("^%[([%x:.]+)%]:?(%d*)$")
    if host then
        host = "[" .. host .. "]"
    else
        host, port = t:match("^([^:]+):?(%d*)$")
        if not host or not valid_host(host) then
            return nil, fmt("Invalid target ('%s'); not a valid hostname or ip address", shown(t))
        end
    end
    port = port == "" and 8000 or tonumber(port)
    if port < 1 or port > 65535 then
        return nil, fmt("Invalid target ('%s'); port must be between 1 and 65535", shown(t))
    end
    return host .. ":" .. port
end

local targets = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            updated_at(),
            { upstream = { type = "foreign", reference = "upstreams", required = true } },
            { target = { type = "string", required = true, normalize = normalize_target } },
            { weight = { type = "integer", default = 100, between = { 0, 65535 } } },
            tags(),
        },
    },
    -- `/upstreams/{u}/targets/{host:port}` names a target within its upstream.
    endpoint_key = "target",
    -- Only under their upstream: /upstreams/{u}/targets.
    path = false,
    -- The balancer looks at every target of an upstream on every request.
    per_parent = { field = "upstream", limit = 256 },
    endpoint_key_scope = "upstream",
    unique_together = { "upstream", "target" },
}

--------------------------------------------------------------------------------
-- Key-auth credentials.

local function random_key()
    return (core.uuid():gsub("-", ""))
end

local keyauth_credentials = {
    schema = {
        fields = {
            id_field(),
            created_at(),
            { consumer = { type = "foreign", reference = "consumers", required = true, on_delete = "cascade" } },
            { key = { type = "string", unique = true, len_min = 1, len_max = 1024, default = random_key } },
            tags(),
        },
    },
    endpoint_key = "key",
    -- Kong's names: /key-auths, /consumers/{c}/key-auth.
    path = "key-auths",
    nested_path = "key-auth",
}

--------------------------------------------------------------------------------

-- Adding an entity: one definition above and one line in DEFINITIONS below. From it
-- follow its list in the document and the state file (gateway.db.index), its checks,
-- references and deletes (gateway.db.crud), its children nested in declarative files
-- (gateway.db.declarative) and its Admin API routes (gateway.endpoints): /<path>,
-- /<path>/{id or endpoint_key}, and, under every kind a foreign field references,
-- /<parent path>/{p}/<nested_path>[/{id or endpoint_key}]. Every list an Admin call can
-- grow needs a len_max (a LIMITS entry, documented in README's "Limits"), and
-- children a per_parent cap when something reads all of a parent's on every request.
-- Only code that gives an entity meaning names its kind: the proxy and balancer, the
-- plugins' conflict check (gateway.db.crud) and the plugins themselves (the prometheus
-- plugin's exporter says which kinds label its series). What a change removed is
-- every kind's (gateway.db.removed): a row gone, or its endpoint key changed.
--
-- In load order: a kind comes after every kind its foreign fields reference (checked
-- below), so that a document loads in one pass.
local DEFINITIONS = {
    { "services", services },
    { "routes", routes },
    { "consumers", consumers },
    { "keyauth_credentials", keyauth_credentials },
    { "upstreams", upstreams },
    { "targets", targets },
    { "plugins", plugin_entity },
}

local ON_DELETE = { restrict = true, cascade = true }

_M.defs, _M.kinds = {}, {}
for i, d in ipairs(DEFINITIONS) do
    local kind, def = d[1], d[2]
    def.name = kind
    def.fields = schema.fields_by_name(def.schema.fields)
    def.foreign, def.unique, def.children = {}, {}, {}
    for _, f in ipairs(def.schema.fields) do
        local name, field = next(f)
        if field.type == "foreign" then
            local parent = _M.defs[field.reference]
            if not parent then
                error(fmt("gateway.entities: %s.%s references '%s', which is not defined before it",
                    kind, name, tostring(field.reference)), 0)
            end
            local on_delete = field.on_delete or "restrict"
            if not ON_DELETE[on_delete] then
                error(fmt("gateway.entities: %s.%s: on_delete must be 'restrict' or 'cascade'", kind, name), 0)
            end
            for _, other in ipairs(def.foreign) do
                -- /<parent>/{p}/<children> must say which field it scopes.
                if other.reference == field.reference then
                    error(fmt("gateway.entities: %s references %s twice", kind, field.reference), 0)
                end
            end
            def.foreign[#def.foreign + 1] = { field = name, reference = field.reference, on_delete = on_delete }
            parent.children[#parent.children + 1] = { kind = kind, field = name }
        end
        if field.unique then def.unique[#def.unique + 1] = name end
    end
    def.updated_at = def.fields.updated_at ~= nil
    if def.path == nil then def.path = kind end
    if def.nested_path == nil then def.nested_path = def.path or kind end
    _M.defs[kind], _M.kinds[i] = def, kind
end

function _M.validate(kind, input, opts)
    return schema.validate(_M.defs[kind].schema, input, opts)
end

return _M
