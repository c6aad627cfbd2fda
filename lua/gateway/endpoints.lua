-- gateway.endpoints: the Admin API's entity routes, derived from the entity
-- definitions (gateway.entities) as Kong derives its endpoints from its DAO schemas:
--   /<path>                                   a collection: GET (a page), POST
--   /<path>/{id or endpoint key}              an entity: GET, PATCH, PUT, DELETE
--   /<parent path>/{p}/<nested path>          the children of one parent
--   /<parent path>/{p}/<nested path>/{id or endpoint key}
-- A kind is nested under every kind one of its foreign fields references, as that
-- field (POST /services/{s}/routes sets the route's `service`). Pure: no nginx.

local entities = require "gateway.entities"

local ipairs, tostring = ipairs, tostring
local fmt = string.format

local _M = {}

-- A page of a collection: `size` entities, 1 to max (README "Limits").
_M.PAGE = { default = 100, max = 1000 }
-- Tags one ?tags= filter may name (Kong's limit).
_M.MAX_FILTER_TAGS = 5

-- URL segment -> kind, for the kinds with a top-level collection.
local collections = {}
-- parent kind -> { [nested path] = { kind, field } }
local nested = {}

-- Two kinds at one path would make one unreachable: a definition error, raised when
-- the gateway loads.
local function claim(map, path, value, where)
    if map[path] then
        error(fmt("gateway.endpoints: %s/%s is both %s and %s", where, path, map[path].kind or map[path],
            value.kind or value), 0)
    end
    map[path] = value
end

for _, kind in ipairs(entities.kinds) do
    local def = entities.defs[kind]
    if def.path then claim(collections, def.path, kind, "") end
    local under = {}
    for _, child in ipairs(def.children) do
        claim(under, entities.defs[child.kind].nested_path, child, "/" .. tostring(def.path) .. "/{p}")
    end
    nested[kind] = under
end
_M.collections, _M.nested = collections, nested

-- resolve(segments) -> endpoint | nil (no such route): for the path's segments
-- (non-empty, as split on "/"), { kind, key (the last segment of an entity's path,
-- else nil), parent = { kind, key, field } (a nested path, else nil) }.
function _M.resolve(segs)
    local n = #segs
    local kind = collections[segs[1]]
    if not kind or n > 4 then return nil end
    local endpoint = { kind = kind }
    if n >= 3 then
        local child = nested[kind][segs[3]]
        if not child then return nil end
        endpoint.parent = { kind = kind, key = segs[2], field = child.field }
        endpoint.kind = child.kind
    end
    if n == 2 or n == 4 then endpoint.key = segs[n] end
    return endpoint
end

return _M
