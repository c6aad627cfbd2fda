-- Routes requests to routes: by path prefix (longest wins), host and method.
--
-- Built once per configuration snapshot into an index, so that matching costs the
-- same however many routes and paths the Admin API was given: candidates are kept by
-- their exact prefix, and a request looks up only the prefixes of its own path whose
-- lengths some route uses (longest first). Within one prefix, routes naming the
-- request's host come first (exact host, then wildcard hosts), then routes for any
-- host; among those, routes that name methods first, then creation order.

local ipairs, sort = ipairs, table.sort
local sub, find, lower = string.sub, string.find, string.lower

local _M = {}
local Router = {}

-- `p` with its %XX escapes decoded (what nginx's `$uri` holds for a path).
local function hex_char(hex) return string.char(tonumber(hex, 16)) end
local function unescape(p)
    if not find(p, "%", 1, true) then return p end
    return (p:gsub("%%(%x%x)", hex_char))   -- no closure here: LuaJIT compiles it (proxy.lua)
end
_M.unescape = unescape
Router.__index = Router

-- Adds candidate `c` to `list`, keeping routes with methods first and, within each
-- kind, creation order (candidates arrive in creation order: no sort needed).
local function add(list, c)
    local n = #list
    if c.has_methods then
        local i = n
        while i > 0 and not list[i].has_methods do
            list[i + 1] = list[i]
            i = i - 1
        end
        list[i + 1] = c
    else
        list[n + 1] = c
    end
end

-- A host as nginx's `$host` holds it: lowercased, without the port (even an empty
-- one) or the trailing dot of a fully qualified name. Requests and route `hosts` are
-- both compared in this form.
local function normalize_host(h)
    h = lower(h)
    local colon = find(h, ":%d*$")
    if colon then h = sub(h, 1, colon - 1) end
    if sub(h, -1) == "." then h = sub(h, 1, -2) end
    return h
end
_M.normalize_host = normalize_host

local function add_for_host(bucket, h, c)
    h = normalize_host(h)
    local field = find(h, "*", 1, true) and "wildcard" or "exact"
    local map = bucket[field]
    if not map then
        map = {}
        bucket[field] = map
    end
    local list = map[h]
    if not list then
        list = {}
        map[h] = list
    end
    add(list, c)
end

-- A bucket is the list of candidates for any host (its array part) plus, when some
-- route names hosts for that prefix, `exact` and `wildcard` maps of host -> list. One
-- candidate per route, shared by all its paths: building costs about one table per
-- distinct path.
function _M.build(snapshot)
    local buckets, lengths, seen_length = {}, {}, {}
    for order, route in ipairs(snapshot.list.routes or {}) do
        local methods
        if route.methods and #route.methods > 0 then
            methods = {}
            for _, m in ipairs(route.methods) do methods[m:upper()] = true end
        end
        local c = { route = route, methods = methods, has_methods = methods ~= nil, order = order }
        local hosts = route.hosts and #route.hosts > 0 and route.hosts or nil
        local paths = (route.paths and #route.paths > 0) and route.paths or { "/" }
        for _, stored in ipairs(paths) do
            -- Route paths are stored escaped; requests match in nginx's decoded `$uri`.
            local path = unescape(stored)
            local b = buckets[path]
            if not b then
                b = {}
                buckets[path] = b
                local len = #path
                if not seen_length[len] then
                    seen_length[len] = true
                    lengths[#lengths + 1] = len
                end
            end
            if hosts then
                for _, h in ipairs(hosts) do add_for_host(b, h, c) end
            else
                add(b, c)
            end
        end
    end
    sort(lengths, function(x, y) return x > y end)
    return setmetatable({ buckets = buckets, lengths = lengths }, Router)
end

-- The first candidate of `list` whose methods allow `method`.
local function first(list, method)
    if not list then return nil end
    for _, c in ipairs(list) do
        if not c.methods or c.methods[method] then return c end
    end
    return nil
end

-- Wildcard hosts that cover `host`: "*.b.c" and "*.c" for "a.b.c" (leftmost
-- wildcard, any depth), then "a.*" and "a.b.*" (rightmost).
local function wildcard_match(wildcard, host, method)
    if not wildcard then return nil end
    local dot = find(host, ".", 1, true)
    while dot do
        local c = first(wildcard["*" .. sub(host, dot)], method)
        if c then return c end
        dot = find(host, ".", dot + 1, true)
    end
    dot = find(host, ".", 1, true)
    while dot do
        local c = first(wildcard[sub(host, 1, dot) .. "*"], method)
        if c then return c end
        dot = find(host, ".", dot + 1, true)
    end
    return nil
end

-- The best route for a request, and the prefix it matched; nil when none does.
-- `host` is best nginx's `$host` (the absolute request URI's host, else the Host
-- header's); it is normalized again here for other callers.
function Router:match(method, host, path)
    if host then
        host = normalize_host(host)
    end
    local buckets, n = self.buckets, #path
    for _, len in ipairs(self.lengths) do
        if len <= n then
            local prefix = sub(path, 1, len)
            local b = buckets[prefix]
            if b then
                local c = host and (b.exact and first(b.exact[host], method)
                    or wildcard_match(b.wildcard, host, method)) or first(b, method)
                if c then return c.route, prefix end
            end
        end
    end
    return nil
end

return _M
