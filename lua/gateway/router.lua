-- Routes requests to routes: by path prefix (longest wins), host and method.
--
-- Built once per configuration snapshot into an index, so that matching costs the
-- same however many routes and paths the Admin API was given: candidates are kept by
-- their exact prefix, and a request looks up only the prefixes of its own path whose
-- lengths some route uses (longest first). Within one prefix, routes naming the
-- request's host come first (exact host, then wildcard hosts), then routes for any
-- host; among those, routes that name methods first, then creation order.

local ipairs, pairs, next, sort = ipairs, pairs, next, table.sort
local sub, find, lower = string.sub, string.find, string.lower

local _M = {}
local Router = {}

local function unescape(p)
    if not find(p, "%", 1, true) then return p end
    return (p:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end
Router.__index = Router

local function by_specificity(a, b)
    if a.has_methods ~= b.has_methods then return a.has_methods end
    return a.order < b.order
end

local function append(map, key, c)
    local list = map[key]
    if not list then
        list = {}
        map[key] = list
    end
    list[#list + 1] = c
end

function _M.build(snapshot)
    -- prefix -> { exact = { host -> list }, wildcard = { "*.x" | "x.*" -> list }, any = list }
    local buckets, lengths, seen_length, order = {}, {}, {}, 0
    for _, route in ipairs(snapshot.list.routes or {}) do
        local methods
        if route.methods and #route.methods > 0 then
            methods = {}
            for _, m in ipairs(route.methods) do methods[m:upper()] = true end
        end
        local hosts = route.hosts and #route.hosts > 0 and route.hosts or nil
        local paths = (route.paths and #route.paths > 0) and route.paths or { "/" }
        for _, stored in ipairs(paths) do
            -- Route paths are stored escaped; requests match in nginx's decoded `$uri`.
            local path = unescape(stored)
            order = order + 1
            local c = { route = route, prefix = path, methods = methods, has_methods = methods ~= nil, order = order }
            local b = buckets[path]
            if not b then
                b = { exact = {}, wildcard = {}, any = {} }
                buckets[path] = b
            end
            if hosts then
                for _, h in ipairs(hosts) do
                    h = lower(h)
                    append(find(h, "*", 1, true) and b.wildcard or b.exact, h, c)
                end
            else
                b.any[#b.any + 1] = c
            end
            if not seen_length[#path] then
                seen_length[#path] = true
                lengths[#lengths + 1] = #path
            end
        end
    end
    for _, b in pairs(buckets) do
        for _, list in pairs(b.exact) do sort(list, by_specificity) end
        for _, list in pairs(b.wildcard) do sort(list, by_specificity) end
        sort(b.any, by_specificity)
    end
    sort(lengths, function(a, b) return a > b end)
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
    if not next(wildcard) then return nil end
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
function Router:match(method, host, path)
    if host then
        host = lower(host):gsub(":%d+$", "")
    end
    local buckets, n = self.buckets, #path
    for _, len in ipairs(self.lengths) do
        if len <= n then
            local b = buckets[sub(path, 1, len)]
            if b then
                local c = host and (first(b.exact[host], method) or wildcard_match(b.wildcard, host, method))
                    or first(b.any, method)
                if c then return c.route, c.prefix end
            end
        end
    end
    return nil
end

return _M
