-- gateway.dns: the host names of services and upstream targets, resolved off the
-- request path.
--
-- Each worker keeps its own cache (as nginx's `resolver` does): the names the current
-- configuration uses, at most `cache_size` of them, each with the addresses of its last
-- good answer. A timer resolves a name when its TTL runs out, with lua-resty-dns over
-- cosockets (nothing blocks the worker); the request path and the balancer phase only
-- read the cache. The hosts file is read first, once, at start (Kong's order): a name
-- it lists is never queried. A failed resolution keeps the last good addresses for
-- `stale_ttl` seconds past their TTL, then the name has none (requests to it get 503,
-- its targets `dns_error`) until an answer comes back.
--
--   configure(opts)   init phase: resolvers, hosts file, limits (errors are the caller's)
--   init_worker()     the background timer
--   track(hosts)      a new configuration: the hosts it uses (names and addresses)
--   get(host)         the cache entry of a tracked host: .addresses (nil: none usable)
--   wait(entry)       waits (yields) for a name's first answer, bounded
--   on_change(fn)     fn() after a name's addresses change

local semaphore = require "ngx.semaphore"

local ngx, ipairs, pairs, tonumber, tostring, type = ngx, ipairs, pairs, tonumber, tostring, type
local min, max, floor = math.min, math.max, math.floor
local concat, sort = table.concat, table.sort

local _M = {}

-- Kong's defaults (dns_stale_ttl, dns_error_ttl, dns_not_found_ttl, dns_cache_size).
local conf = {
    nameservers = nil,     -- { { host, port }, ... }
    hosts = {},            -- name -> addresses (peer form), from the hosts file
    stale_ttl = 3600,
    error_ttl = 1,
    not_found_ttl = 30,
    cache_size = 10000,
    timeout = 2000,        -- ms per try
    tries = 2,
}
_M.conf = conf

-- At most this many addresses of one answer become peers (the lowest, sorted), and
-- at most this many names are resolved at once per worker.
local MAX_ADDRESSES = 64
local MAX_IN_FLIGHT = 32

local TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28

--------------------------------------------------------------------------------
-- Addresses and names.

local function ipv4(s)
    local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if not a then return false end
    for _, o in ipairs({ a, b, c, d }) do
        if #o > 3 or tonumber(o) > 255 then return false end
    end
    return true
end

-- RFC 4291 text: eight groups of 1-4 hex digits, one "::" for a run of zeros, the
-- last two groups possibly a dotted quad.
local function ipv6(s)
    if not s:find("^[%x:.]+$") or not s:find(":.*:") then return false end
    local v4 = s:match(":(%d+%.%d+%.%d+%.%d+)$")
    if v4 then
        if not ipv4(v4) then return false end
        s = s:sub(1, #s - #v4) .. "0:0"
    end
    if s:find("%.") then return false end
    local _, double = s:gsub("::", "")
    if double > 1 or s:find(":::") then return false end
    if (s:find("^:") and not s:find("^::")) or (s:find(":$") and not s:find("::$")) then return false end
    local groups = 0
    for g in s:gmatch("[^:]+") do
        if #g > 4 then return false end
        groups = groups + 1
    end
    if double == 1 then return groups < 8 end
    return groups == 8
end

-- Whether a host is an address literal, not a name. A dotted quad that is not a valid
-- IPv4 address (999.1.1.1) counts as one too: nginx refuses it, nobody resolves it.
local function is_address(host)
    return host:find("^%d+%.%d+%.%d+%.%d+$") ~= nil or ipv6(host)
end
_M.is_address = is_address

-- An address as nginx's balancer takes it: IPv6 in brackets.
local function peer_form(addr)
    if addr:find(":", 1, true) and addr:sub(1, 1) ~= "[" then return "[" .. addr .. "]" end
    return addr
end
_M.peer_form = peer_form

--------------------------------------------------------------------------------
-- Configuration (init phase, in the master: files are read before workers drop
-- privileges).

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local s = f:read("*a")
    f:close()
    return s
end

-- "addr", "addr:port", "[v6]", "[v6]:port" or a bare IPv6 address -> { host, port }.
local function nameserver(s)
    local host, port = s:match("^%[([%x:.]+)%]:?(%d*)$")
    if not host then
        if ipv6(s) then
            host, port = s, ""
        else
            host, port = s:match("^([%d.]+):?(%d*)$")
        end
    end
    if not host or not (ipv4(host) or ipv6(host)) then return nil end
    port = port == "" and 53 or tonumber(port)
    if port < 1 or port > 65535 then return nil end
    return { peer_form(host), port }
end

-- The nameservers and options of a resolv.conf (resolv.conf(5): no nameserver line
-- means the local machine's).
local function resolv_conf(text)
    local servers, timeout, attempts = {}, nil, nil
    for line in (text or ""):gmatch("[^\n]+") do
        local addr = line:match("^%s*nameserver%s+(%S+)")
        if addr then
            local s = nameserver((addr:gsub("%%.*$", "")))
            if s and #servers < 3 then servers[#servers + 1] = s end
        end
        local options = line:match("^%s*options%s+(.*)$")
        if options then
            timeout = tonumber(options:match("timeout:(%d+)")) or timeout
            attempts = tonumber(options:match("attempts:(%d+)")) or attempts
        end
    end
    if #servers == 0 then servers[1] = { "127.0.0.1", 53 } end
    return servers, timeout, attempts
end
_M.parse_resolv_conf = resolv_conf
_M.parse_nameserver = nameserver

-- name -> addresses (peer form): IPv4 addresses when the file has any for the name,
-- else its IPv6 ones (A before AAAA, as for DNS answers). The first line naming an
-- address family of a name wins for that family (Kong's rule).
local function hosts_file(text)
    local v4, v6 = {}, {}
    for line in (text or ""):gmatch("[^\n]+") do
        line = line:gsub("#.*$", "")
        local addr, names = line:match("^%s*(%S+)%s+(.-)%s*$")
        if addr then
            addr = addr:gsub("%%.*$", "")
            local family = ipv4(addr) and v4 or (ipv6(addr) and v6) or nil
            if family then
                for name in names:gmatch("%S+") do
                    name = name:lower()
                    if not family[name] then family[name] = { peer_form(addr) } end
                end
            end
        end
    end
    for name, addrs in pairs(v6) do
        if not v4[name] then v4[name] = addrs end
    end
    return v4
end
_M.parse_hosts = hosts_file

local function number_opt(opts, key, lo, hi)
    local v = opts[key]
    if v == nil or v == "" then return nil end
    local n = tonumber(v)
    if not n or n < lo or n > hi or n ~= floor(n) then
        return nil, ("dns %s: '%s' is not an integer between %d and %d"):format(key, tostring(v), lo, hi)
    end
    return n
end

local resolver_mod

-- Kong's resolver is OpenResty's lua-resty-dns; Debian packages the same library as
-- `nginx.dns.resolver` (lua-nginx-dns).
local function load_resolver()
    for _, name in ipairs({ "resty.dns.resolver", "nginx.dns.resolver" }) do
        local ok, mod = pcall(require, name)
        if ok and type(mod) == "table" and mod.new then return mod end
    end
    return nil
end

-- opts: resolver ("" or nil: resolv.conf's nameservers; else addresses separated by
-- spaces or commas), resolv_conf, hostsfile, stale_ttl, timeout (ms), cache_size.
-- Returns true, or nil and what is wrong.
function _M.configure(opts)
    opts = opts or {}
    resolver_mod = load_resolver()
    if not resolver_mod then
        return nil, "dns: lua-resty-dns is not installed (Debian: lua-nginx-dns; OpenResty: resty.dns.resolver)"
    end
    local rc_timeout, rc_attempts
    local spec = opts.resolver
    if spec and spec ~= "" then
        local servers = {}
        for s in spec:gmatch("[^%s,]+") do
            local ns = nameserver(s)
            if not ns then
                return nil, ("dns resolver: '%s' is not an address[:port]"):format(s)
            end
            servers[#servers + 1] = ns
        end
        if #servers == 0 then return nil, "dns resolver: no address" end
        conf.nameservers = servers
    else
        local path = opts.resolv_conf or "/etc/resolv.conf"
        local text = read_file(path)
        conf.nameservers, rc_timeout, rc_attempts = resolv_conf(text)
    end
    local hostsfile = opts.hostsfile
    if hostsfile == nil or hostsfile == "" then hostsfile = "/etc/hosts" end
    local text, err = read_file(hostsfile)
    if not text then
        ngx.log(ngx.WARN, "gateway: dns: cannot read the hosts file ", hostsfile, ": ", err)
    end
    conf.hosts = hosts_file(text)
    local n
    n, err = number_opt(opts, "stale_ttl", 0, 2 ^ 31 - 1)
    if err then return nil, err end
    conf.stale_ttl = n or conf.stale_ttl
    n, err = number_opt(opts, "timeout", 1, 60000)
    if err then return nil, err end
    conf.timeout = n or (rc_timeout and min(max(rc_timeout, 1), 60) * 1000) or conf.timeout
    conf.tries = rc_attempts and min(max(rc_attempts, 1), 5) or conf.tries
    n, err = number_opt(opts, "cache_size", 1, 1000000)
    if err then return nil, err end
    conf.cache_size = n or conf.cache_size
    return true
end

--------------------------------------------------------------------------------
-- The cache: lowercased name -> entry; and each configured spelling of a host (names
-- and address literals alike, so both take the same path per request) -> its entry.
--
-- entry: name, addresses (peer form, sorted; nil while there are none to use),
-- state ("static" | "pending" | "ok" | "stale" | "error"), err, expires (end of the
-- TTL), stale_until, next_try, in_flight, rr (round-robin position for services).

local entries = {}
local by_host = {}
local in_flight = 0
local listeners = {}

function _M.get(host)
    return by_host[host]
end

function _M.on_change(fn)
    listeners[#listeners + 1] = fn
end

local function changed()
    for _, fn in ipairs(listeners) do
        local ok, err = pcall(fn)
        if not ok then ngx.log(ngx.ERR, "gateway: dns: ", tostring(err)) end
    end
end

local function static(addresses)
    return { addresses = addresses, state = "static", rr = 0 }
end

local tick

-- The hosts of a new configuration: entries for new names (resolved at once, in the
-- background), the cache entries of names still in use kept, the rest dropped.
function _M.track(hosts)
    local new_entries, new_by_host, count, over = {}, {}, 0, 0
    for _, host in ipairs(hosts) do
        if not new_by_host[host] then
            local name = host:lower()
            local e = new_entries[name]
            if not e then
                if is_address(name) then
                    e = static({ peer_form(name) })
                elseif conf.hosts[name] then
                    e = static(conf.hosts[name])
                elseif name == "localhost" or name:find("%.localhost$") then
                    -- RFC 6761: loopback, whatever a resolver says.
                    e = static({ "127.0.0.1" })
                elseif name == "invalid" or name:find("%.invalid$") then
                    -- RFC 6761: never exists; not worth a query.
                    e = { name = name, state = "error", err = "name error (.invalid)", rr = 0 }
                elseif count >= conf.cache_size then
                    over = over + 1
                    e = { name = name, state = "error", rr = 0,
                          err = "more host names than the dns cache holds (" .. conf.cache_size .. ")" }
                else
                    count = count + 1
                    e = entries[name] or { name = name, state = "pending", next_try = 0, rr = 0 }
                end
                new_entries[name] = e
            end
            new_by_host[host] = e
        end
    end
    if over > 0 then
        ngx.log(ngx.WARN, "gateway: dns: ", over, " host names over the cache size (", conf.cache_size,
            ") are not resolved")
    end
    entries, by_host = new_entries, new_by_host
    if count > 0 and tick then
        local ok, err = ngx.timer.at(0, tick)
        if not ok then ngx.log(ngx.WARN, "gateway: dns: cannot start a resolution: ", err) end
    end
end

-- Waits (yields: the worker goes on) until a pending name has had its first answer.
function _M.wait(e)
    if e.state ~= "pending" then return e end
    local sema = e.sema
    if not sema then
        sema = semaphore.new(0)
        e.sema = sema
    end
    -- Two queries (A, then AAAA), each its tries.
    sema:wait(2 * conf.timeout * conf.tries / 1000 + 1)
    return e
end

local function wake(e)
    local sema = e.sema
    if sema then
        e.sema = nil
        local n = sema:count()
        if n < 0 then sema:post(-n) end
    end
end

--------------------------------------------------------------------------------
-- Resolution, in a timer.

-- The addresses of one record type: a sorted list (nil if none) and the lowest TTL;
-- or nil, the error, and whether the name does not exist (as opposed to a failure).
local function query(r, name, qtype)
    -- pcall: the library raises on some malformed answers.
    local ok, answers, err = pcall(r.query, r, name, { qtype = qtype })
    if not ok then return nil, nil, "bad answer: " .. tostring(answers), false end
    if not answers then return nil, nil, tostring(err), false end
    if answers.errcode then
        return nil, nil, "server error: " .. answers.errcode .. " " .. tostring(answers.errstr),
            answers.errcode == 3
    end
    -- Only records of the name asked, or of the names its CNAME records lead to: a
    -- record of another name (or of an undecodable one) is not an answer.
    local owners = { [name] = true }
    for _ = 1, 8 do
        local grew = false
        for _, a in ipairs(answers) do
            local cname = a.type == TYPE_CNAME and type(a.cname) == "string" and a.cname:lower()
            if cname and owners[tostring(a.name):lower()] and not owners[cname] then
                owners[cname], grew = true, true
            end
        end
        if not grew then break end
    end
    local list, seen, ttl = {}, {}, nil
    for _, a in ipairs(answers) do
        local addr = a.type == qtype and owners[tostring(a.name):lower()] and a.address
        if type(addr) == "string" then
            if qtype == TYPE_AAAA then addr = resolver_mod.compress_ipv6_addr(addr) end
            addr = peer_form(addr)
            if not seen[addr] then
                seen[addr] = true
                list[#list + 1] = addr
                local t = tonumber(a.ttl) or 0
                ttl = ttl and min(ttl, t) or t
            end
        end
    end
    if #list == 0 then return nil, nil end
    sort(list)
    for i = MAX_ADDRESSES + 1, #list do list[i] = nil end
    return list, ttl
end

-- A records; AAAA only for a name that has no A record (Kong's order, A before AAAA).
local function resolve(name)
    local r, err = resolver_mod:new({
        nameservers = conf.nameservers, timeout = conf.timeout, retrans = conf.tries,
    })
    if not r then return nil, nil, "resolver: " .. tostring(err), false end
    local list, ttl, not_found
    list, ttl, err, not_found = query(r, name, TYPE_A)
    if list then return list, ttl end
    if err then return nil, nil, err, not_found end
    list, ttl, err, not_found = query(r, name, TYPE_AAAA)
    if list then return list, ttl end
    if err then return nil, nil, err, not_found end
    return nil, nil, "no A or AAAA record", true
end

local function same(a, b)
    if not a or not b then return a == b end
    if #a ~= #b then return false end
    for i = 1, #a do
        if a[i] ~= b[i] then return false end
    end
    return true
end

local function resolved(premature, e)
    if premature then
        in_flight = in_flight - 1
        return
    end
    -- pcall: whatever happens, the name is asked again later (in_flight cleared).
    local ok, list, ttl, err, not_found = pcall(resolve, e.name)
    if not ok then list, err = nil, "resolver error: " .. tostring(list) end
    in_flight = in_flight - 1
    e.in_flight = false
    local now = ngx.now()
    local before, was = e.addresses, e.state
    if list then
        ttl = max(ttl, 1)
        e.addresses, e.state, e.err = list, "ok", nil
        e.expires = now + ttl
        e.stale_until = e.expires + conf.stale_ttl
        e.next_try = e.expires
        if was == "stale" or was == "error" then
            ngx.log(ngx.NOTICE, "gateway: dns: ", e.name, " resolves again: ", concat(list, " "))
        end
    else
        e.err = err
        e.next_try = now + ((not_found and not before) and conf.not_found_ttl or conf.error_ttl)
        if before and now < (e.stale_until or 0) then
            e.state = "stale"
            if was ~= "stale" then
                ngx.log(ngx.WARN, "gateway: dns: ", e.name, ": ", err, "; its last addresses (",
                    concat(before, " "), ") are kept for up to ", floor(e.stale_until - now), " s")
            end
        else
            e.addresses, e.state = nil, "error"
            if was ~= "error" then
                ngx.log(ngx.WARN, "gateway: dns: ", e.name, ": ", err,
                    "; requests to it get 503 until it resolves")
            end
        end
    end
    if not same(before, e.addresses) then changed() end
    wake(e)
end

-- Every second (and at once on a new configuration): starts the resolution of each
-- name whose time has come, and drops addresses kept past their stale time.
tick = function(premature)
    if premature then return end
    local now = ngx.now()
    local dropped = false
    for _, e in pairs(entries) do
        if e.state == "stale" and now >= e.stale_until then
            ngx.log(ngx.WARN, "gateway: dns: ", e.name, ": ", tostring(e.err),
                "; its last addresses expired ", conf.stale_ttl, " s ago: requests to it get 503 until it resolves")
            e.addresses, e.state = nil, "error"
            dropped = true
        elseif e.state == "ok" and now >= e.stale_until then
            -- A refresh that has not come back (a hanging resolver) within the stale time.
            e.addresses, e.state, e.err = nil, "error", "no answer"
            dropped = true
        end
        if e.next_try and not e.in_flight and now >= e.next_try and in_flight < MAX_IN_FLIGHT then
            local ok, err = ngx.timer.at(0, resolved, e)
            if ok then
                e.in_flight = true
                in_flight = in_flight + 1
            else
                ngx.log(ngx.WARN, "gateway: dns: cannot resolve ", e.name, ": ", err)
                break
            end
        end
    end
    if dropped then changed() end
end

function _M.init_worker()
    local ok, err = ngx.timer.every(1, tick)
    if not ok then ngx.log(ngx.ERR, "gateway: dns: no refresh timer: ", err) end
end

return _M
