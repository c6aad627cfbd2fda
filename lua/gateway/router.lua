-- Routes requests to routes: by path prefix (longest wins), host and method.
-- Built once per configuration snapshot; matching walks a list sorted so that the
-- first match is the best one.

local _M = {}
local Router = {}
Router.__index = Router

local function lower_set(list)
    if not list or #list == 0 then return nil end
    local s = {}
    for _, v in ipairs(list) do s[v:lower()] = true end
    return s
end

function _M.build(snapshot)
    local candidates = {}
    for _, route in ipairs(snapshot.list.routes or {}) do
        local hosts = lower_set(route.hosts)
        local methods = nil
        if route.methods and #route.methods > 0 then
            methods = {}
            for _, m in ipairs(route.methods) do methods[m:upper()] = true end
        end
        local paths = (route.paths and #route.paths > 0) and route.paths or { "/" }
        for _, path in ipairs(paths) do
            candidates[#candidates + 1] = {
                route = route, prefix = path, hosts = hosts, methods = methods,
                -- Longest prefix first; then routes that say more (hosts, methods).
                weight = #path * 4 + (hosts and 2 or 0) + (methods and 1 or 0),
                order = #candidates,
            }
        end
    end
    table.sort(candidates, function(a, b)
        if a.weight ~= b.weight then return a.weight > b.weight end
        return a.order < b.order
    end)
    return setmetatable({ candidates = candidates }, Router)
end

-- The best route for a request, and the prefix it matched; nil when none does.
function Router:match(method, host, path)
    if host then
        host = host:lower():gsub(":%d+$", "")
    end
    for _, c in ipairs(self.candidates) do
        if path:sub(1, #c.prefix) == c.prefix
            and (not c.hosts or (host and c.hosts[host]))
            and (not c.methods or c.methods[method])
        then
            return c.route, c.prefix
        end
    end
    return nil
end

return _M
