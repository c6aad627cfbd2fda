-- The proxy: routes a request (access), runs the access-phase plugins, picks the peer
-- (balancer), and records the outcome (log: passive health, log-phase plugins).

local db = require "gateway.db"
local router_mod = require "gateway.router"
local balancer = require "gateway.balancer"
local dns = require "gateway.dns"
local error_page = require "gateway.error_page"
local plugins = require "gateway.plugins"
local ngx_balancer = require "ngx.balancer"
local get_request = require("resty.core.base").get_request
local ffi = require "ffi"

local cast, uintptr_t = ffi.cast, ffi.typeof("uintptr_t")

local ngx, ipairs, tonumber, tostring = ngx, ipairs, tonumber, tostring

local _M = {}

-- Per worker, rebuilt on every configuration snapshot.
local current = {
    snapshot = nil, router = nil, index = {}, access_plugins = {}, log_plugins = {},
    -- Memoized `resolve` results: name -> route id -> service id -> consumer id -> plugin | false.
    resolved = {},
}

-- Enabled plugins by name and scope key "route|service|consumer" (ids or "").
local function build_index(snapshot)
    local index, access, log = {}, {}, {}
    local seen = {}
    for _, p in ipairs(snapshot.list.plugins or {}) do
        if p.enabled ~= false then
            local key = (p.route and p.route.id or "") .. "|" .. (p.service and p.service.id or "")
                .. "|" .. (p.consumer and p.consumer.id or "")
            index[p.name] = index[p.name] or {}
            index[p.name][key] = p
            if not seen[p.name] then
                seen[p.name] = true
                local mod = plugins.get(p.name)
                if mod and mod.access then access[#access + 1] = mod end
                if mod and mod.log then log[#log + 1] = mod end
            end
        end
    end
    local by_priority = function(a, b) return a.priority > b.priority end
    table.sort(access, by_priority)
    table.sort(log, by_priority)
    return index, access, log
end

-- The hosts a configuration proxies to (names and addresses): services' that name no
-- upstream, and targets'.
local function hosts(snapshot)
    local out = {}
    local upstreams = snapshot.by_name.upstreams or {}
    for _, s in ipairs(snapshot.list.services or {}) do
        if s.host and not upstreams[s.host] then out[#out + 1] = s.host end
    end
    return balancer.hosts(snapshot, out)
end

local function install(snapshot)
    current.snapshot = snapshot
    dns.track(hosts(snapshot))
    current.router = router_mod.build(snapshot)
    current.index, current.access_plugins, current.log_plugins = build_index(snapshot)
    current.resolved = {}
    balancer.build(snapshot)
    plugins.configure(snapshot)
end

function _M.init_worker()
    dns.init_worker()
    db.on_change(install)
end

-- The plugin `name` that applies, by Kong's precedence: consumer+route+service,
-- consumer+route, consumer+service, route+service, consumer, route, service, global.
local function lookup(name, r, s, c)
    local scoped = current.index[name]
    if not scoped then return false end
    local p = (c ~= ""
            and (scoped[r .. "|" .. s .. "|" .. c] or scoped[r .. "||" .. c] or scoped["|" .. s .. "|" .. c]))
        or scoped[r .. "|" .. s .. "|"]
        or (c ~= "" and scoped["||" .. c])
        or scoped[r .. "||"] or scoped["|" .. s .. "|"] or scoped["||"]
    return p or false
end

-- Memoized per snapshot: the log phase asks for every request, and the answer only
-- changes with the configuration.
local function resolve(name, route_id, service_id, consumer_id)
    local r, s, c = route_id or "", service_id or "", consumer_id or ""
    local by_name = current.resolved[name]
    if not by_name then by_name = {}; current.resolved[name] = by_name end
    local by_route = by_name[r]
    if not by_route then by_route = {}; by_name[r] = by_route end
    local by_service = by_route[s]
    if not by_service then by_service = {}; by_route[s] = by_service end
    local p = by_service[c]
    if p == nil then
        p = lookup(name, r, s, c)
        by_service[c] = p
    end
    return p or nil
end
_M.resolve = resolve

-- The gateway's own answer (no route, a plugin's refusal...): the response is out, and
-- the request ends without a second (error page) body.
local function exit_json(status, message)
    return error_page.send(status, message)
end

-- Joins the service path and what is left of the request path (both escaped).
local function upstream_path(service_path, rest)
    if not service_path or service_path == "" or service_path == "/" then
        return rest ~= "" and rest or "/"
    end
    if rest == "" then return service_path end
    if service_path:sub(-1) == "/" and rest:sub(1, 1) == "/" then
        return service_path .. rest:sub(2)
    end
    return service_path .. rest
end

--------------------------------------------------------------------------------
-- The path sent upstream. Routes match nginx's decoded, normalized `$uri`; what is
-- forwarded is the client's own escaped form of the same path (Kong's behaviour), so
-- `%20`, `%3F`, `%2F` and `%0D%0A` reach the upstream as escapes, never as raw bytes
-- that would end the request line or start a header.

local byte, fmt = string.byte, string.format

-- RFC 3986 pchar plus "/": what may stand unescaped in a path.
local UNSAFE = "[^%w%-%._~!$&'()*+,;=:@/]"
local UNSAFE_OR_PERCENT = "[^%w%-%._~!$&'()*+,;=:@/%%]"

local function escape_byte(c)
    return fmt("%%%02X", byte(c))
end

-- gsub callback: a "%" followed by fewer than two hex digits, written as %25.
local function lone_percent(hex)
    if #hex == 2 then return nil end
    return "%25" .. hex
end

-- An escaped path with every byte outside pchar escaped, and every "%" that does not
-- start a valid escape written as %25 (nginx refuses those in the request line, so
-- this only guards against a future change). Callbacks are module functions, not
-- closures made here: a function that makes a closure is not compiled by LuaJIT (its
-- early return is a UCLO), and this runs on every proxied request.
local function reescape(raw)
    if not raw:find(UNSAFE_OR_PERCENT) and not raw:find("%", 1, true) then return raw end
    raw = raw:gsub("%%(%x?%x?)", lone_percent)
    return (raw:gsub(UNSAFE_OR_PERCENT, escape_byte))
end

-- A decoded path, escaped.
local function escape(decoded)
    return (decoded:gsub(UNSAFE, escape_byte))
end


-- The escaped form of `uri:sub(skip + 1)` (what is left of the decoded path after the
-- route's prefix): taken from the raw request path when decoding it gives `uri`
-- back, else (nginx merged slashes or resolved dot segments) `uri`'s rest escaped.
local function escaped_rest(uri, skip)
    local raw = ngx.var.request_uri or ""
    local q = raw:find("?", 1, true)
    if q then raw = raw:sub(1, q - 1) end
    if not raw:find("%", 1, true) then
        if raw == uri then return reescape(raw:sub(skip + 1)) end
        return escape(uri:sub(skip + 1))
    end
    if router_mod.unescape(raw) ~= uri then return escape(uri:sub(skip + 1)) end
    local i = 1
    for _ = 1, skip do
        i = i + (byte(raw, i) == 37 and 3 or 1)
    end
    return reescape(raw:sub(i))
end

-- The query string as received, with anything that could end the request line escaped.
local function safe_args(args)
    if not args or not args:find("[%c ]") then return args end
    return (args:gsub("[%c ]", escape_byte))
end

-- Whether a route's `protocols` (unset: http and https) take a request's scheme.
local function accepts_scheme(protocols, scheme)
    if not protocols then return true end
    for i = 1, #protocols do
        if protocols[i] == scheme then return true end
    end
    return false
end

--------------------------------------------------------------------------------
-- A request's context (ngx.ctx) is lost when nginx moves it to another location: the
-- jump of an https service to its own location (ngx.exec), and nginx's error page for
-- an upstream that fails or times out, a refusal in the balancer phase or a Lua error.
-- So it waits here from the start of the access phase until the log phase (which
-- always runs, once, and drops it), under the address of nginx's request, which both
-- moves keep. (No nginx variable: setting one costs a lookup by name per request.)

local stashed = {}

local function request_key()
    return tonumber(cast(uintptr_t, get_request()))
end

local function stash(ctx)
    local key = request_key()
    stashed[key] = ctx
    ctx.ref = key
end

-- The stashed context of this request, made ngx.ctx again; nil if there is none (a
-- request nginx refused before the access phase).
local function restore()
    local ctx = stashed[request_key()]
    if not ctx then return nil end
    ngx.ctx = ctx
    return ctx
end

function _M.resume()
    if not restore() then
        ngx.log(ngx.ERR, "gateway: an https location was entered without a routed request")
        return ngx.exit(500)
    end
end

-- The content handler of the proxy's error location: nginx's error status, or the
-- balancer's own refusal (which nginx can only pass on as a 500), as JSON.
function _M.error_page()
    local ctx = restore()
    if ctx and ctx.balancer_status then
        return error_page.send(ctx.balancer_status, ctx.balancer_message)
    end
    return error_page.answer(ngx.status)
end

function _M.access()
    local ctx = ngx.ctx
    stash(ctx)
    local snapshot = current.snapshot
    if not snapshot then
        ctx.exit_status = 503
        return exit_json(503, "the gateway is starting, no configuration yet")
    end
    ctx.snapshot = snapshot
    local uri = ngx.var.uri
    -- `$host`, not the Host header: nginx lowercases it, drops the port and a trailing
    -- dot, and takes an absolute request URI's host over the header's (RFC 9112 3.2.2).
    local host = ngx.var.host
    local route, prefix = current.router:match(ngx.req.get_method(), host, uri)
    if not route then
        ctx.exit_status = 404
        return exit_json(404, "no Route matched with those values")
    end
    ctx.route = route
    local service = route.service and snapshot.services[route.service.id]
    ctx.service = service
    ctx.route_label = route.name or route.id
    ctx.service_label = service and (service.name or service.id) or ""
    -- A route for https only is not served over cleartext (Kong's 426).
    if not accepts_scheme(route.protocols, ngx.var.scheme) then
        ctx.exit_status = 426
        ngx.header["Upgrade"] = "TLS/1.2, HTTP/1.1"
        return exit_json(426, "Please use HTTPS protocol")
    end
    local route_id, service_id = route.id, service and service.id
    for _, plugin in ipairs(current.access_plugins) do
        local p = resolve(plugin.name, route_id, service_id, nil)
        if p and not plugin.access(p.config, ctx) then
            return exit_json(ctx.exit_status or 403, ctx.exit_message or "forbidden")
        end
    end
    if not service then
        ctx.exit_status = 503
        return exit_json(503, "no Service found with those values")
    end
    local rest = escaped_rest(uri, route.strip_path ~= false and #prefix or 0)
    -- "/" stripped from "/x" leaves "x": keep the path absolute.
    if rest ~= "" and rest:sub(1, 1) ~= "/" then rest = "/" .. rest end
    local path = upstream_path(service.path, rest)
    local args = safe_args(ngx.var.args)
    ngx.var.upstream_uri = (args and args ~= "") and (path .. "?" .. args) or path
    if route.preserve_host then
        -- The client's Host header (port included) when it names the host that was
        -- routed on; else (an absolute request URI naming another host) that host.
        local http_host = ngx.var.http_host
        if http_host and router_mod.normalize_host(http_host) == host then
            ngx.var.upstream_host = http_host
        else
            ngx.var.upstream_host = host ~= "" and host or service.host
        end
    else
        local default_port = service.protocol == "https" and 443 or 80
        ngx.var.upstream_host = (service.port and service.port ~= default_port)
            and (service.host .. ":" .. service.port) or service.host
    end
    local upstream = snapshot.by_name.upstreams and snapshot.by_name.upstreams[service.host]
    ctx.upstream = upstream
    if upstream then
        -- The first peer is picked here, where the gateway can still answer (Kong's 503):
        -- a refusal in the balancer phase could only be nginx's 500.
        local target, err = balancer.pick(upstream.id)
        if not target and balancer.wait_pending(upstream.id) then
            target, err = balancer.pick(upstream.id)
        end
        if not target then
            ngx.log(ngx.ERR, "gateway: upstream ", upstream.name, ": ", err)
            ctx.exit_status = 503
            return exit_json(503, err)
        end
        ctx.target = target
    else
        -- The service's own host: its addresses as last resolved (a name's first answer
        -- waited for), taken in turn; answered here when there are none, as Kong does.
        local entry = dns.get(service.host)
        if entry and entry.state == "pending" then dns.wait(entry) end
        local addresses = entry and entry.addresses
        if not addresses then
            ngx.log(ngx.ERR, "gateway: service ", ctx.service_label, ": ", service.host, ": ",
                entry and entry.err or "not resolved")
            ctx.exit_status = 503
            return exit_json(503, "name resolution failed")
        end
        local n = #addresses
        local rr = entry.rr % n + 1
        entry.rr = rr
        ctx.addresses, ctx.address_index = addresses, rr
    end
    if service.protocol == "https" then
        -- Kong's choice: the name the client asked for when the Host is preserved.
        ngx.var.upstream_sni = (route.preserve_host and host ~= "") and host or service.host
        return ngx.exec(service.tls_verify == false and "@https_unverified" or "@https")
    end
end

function _M.balancer()
    local ctx = ngx.ctx
    local service, upstream = ctx.service, ctx.upstream
    if not ctx.tries then
        ctx.tries = 0
        ngx_balancer.set_timeouts((service.connect_timeout or 60000) / 1000,
            (service.write_timeout or 60000) / 1000, (service.read_timeout or 60000) / 1000)
        local retries = service.retries or 5
        if retries > 0 then ngx_balancer.set_more_tries(retries) end
    elseif upstream and ctx.target then
        -- The previous try failed (connection error or timeout): a passive failure.
        balancer.report(upstream, ctx.target, false)
    end
    ctx.tries = ctx.tries + 1
    local ip, port
    if upstream then
        -- The first try's peer was picked in the access phase.
        local target = ctx.target
        if ctx.tries > 1 then
            local err
            target, err = balancer.pick(upstream.id)
            if not target then
                ngx.log(ngx.ERR, "gateway: upstream ", upstream.name, ": ", err)
                ctx.balancer_status, ctx.balancer_message = 503, err
                return ngx.exit(503)
            end
            ctx.target = target
        end
        ip, port = target.ip, target.port
    else
        -- A retry takes the service's next address.
        local addresses = ctx.addresses
        ip = addresses[(ctx.address_index + ctx.tries - 2) % #addresses + 1]
        port = service.port or (service.protocol == "https" and 443 or 80)
    end
    local ok, err = ngx_balancer.set_current_peer(ip, port)
    if not ok then
        ngx.log(ngx.ERR, "gateway: cannot proxy to ", ip, ":", port, ": ", err)
        -- An address nginx cannot read: not a valid IPv4 address (999.1.1.1).
        ctx.balancer_status = 503
        ctx.balancer_message = "cannot proxy to " .. ip .. ":" .. port .. ": " .. tostring(err)
        return ngx.exit(503)
    end
end

function _M.log()
    local ctx = ngx.ctx
    local ref = ctx.ref
    if not ref then
        -- In the error location, if its content handler did not restore the context.
        ctx = restore() or ctx
        ref = ctx.ref
    end
    if ref then stashed[ref] = nil end
    local upstream, target = ctx.upstream, ctx.target
    if upstream and target then
        local statuses = ngx.var.upstream_status
        local status = statuses and tonumber(statuses:match("(%d+)$") or "")
        balancer.report(upstream, target, status ~= nil and not balancer.failed_status(upstream, status))
    end
    local route, service, consumer = ctx.route, ctx.service, ctx.consumer
    for _, plugin in ipairs(current.log_plugins) do
        local p = resolve(plugin.name, route and route.id, service and service.id, consumer and consumer.id)
        if p then
            local ok, err = pcall(plugin.log, p.config, ctx)
            if not ok then
                require("ngxprom").log_once("plugin " .. plugin.name .. ": " .. tostring(err))
            end
        end
    end
end

return _M
