-- gateway.db.index: a configuration document and the indexes over it. A worker's
-- snapshot and a writer's working copy are both an index:
--   { node_id, list = { <kind> = { entities in creation order } },
--     <kind> = { [id] = entity }, unique = { <kind> = { <field> = { [value] = entity } } },
--     together = { <kind> = { [together_key] = entity } },
--     by_name = { <kind> = { [endpoint key] = entity } } (kinds whose key is global) }
-- Entities are shared between indexes and never changed in place.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local entities = require "gateway.entities"

local defs, kinds = entities.defs, entities.kinds
local is_uuid, as_array = schema.is_uuid, schema.as_array
local ipairs, type, tostring = ipairs, type, tostring
local concat = table.concat

local _M = {}

-- What the store writes as `_format_version`.
_M.FORMAT_VERSION = "1"

-- The key of `row` in its kind's unique_together index.
local function together_key(def, row)
    local parts = {}
    for i, f in ipairs(def.unique_together) do
        local v = row[f]
        if type(v) == "table" then v = v.id end
        parts[i] = v == nil and "" or tostring(v)
    end
    return concat(parts, "\0")
end
_M.together_key = together_key

function _M.add_keys(s, kind, row)
    local def = defs[kind]
    s[kind][row.id] = row
    for _, f in ipairs(def.unique) do
        if row[f] ~= nil then s.unique[kind][f][row[f]] = row end
    end
    if def.unique_together then s.together[kind][together_key(def, row)] = row end
end

function _M.remove_keys(s, kind, row)
    local def = defs[kind]
    s[kind][row.id] = nil
    for _, f in ipairs(def.unique) do
        local index = s.unique[kind][f]
        if row[f] ~= nil and index[row[f]] == row then index[row[f]] = nil end
    end
    if def.unique_together then
        local k = together_key(def, row)
        if s.together[kind][k] == row then s.together[kind][k] = nil end
    end
end

-- The index of a document (whose lists it adopts).
function _M.build(doc)
    local s = { node_id = doc.node_id, list = {}, by_name = {}, unique = {}, together = {} }
    for _, kind in ipairs(kinds) do
        local def = defs[kind]
        s[kind], s.unique[kind], s.together[kind] = {}, {}, {}
        s.list[kind] = doc[kind] or as_array({})
        for _, f in ipairs(def.unique) do s.unique[kind][f] = {} end
        for _, row in ipairs(s.list[kind]) do _M.add_keys(s, kind, row) end
        if def.endpoint_key and not def.endpoint_key_scope then
            s.by_name[kind] = s.unique[kind][def.endpoint_key]
        end
    end
    return s
end

function _M.empty_document(node_id)
    local doc = { _format_version = _M.FORMAT_VERSION, node_id = node_id }
    for _, kind in ipairs(kinds) do doc[kind] = as_array({}) end
    return doc
end

-- The document of index `s`, as JSON: text | nil, err.
function _M.encode(s)
    local doc = { _format_version = _M.FORMAT_VERSION, node_id = s.node_id }
    for _, kind in ipairs(kinds) do doc[kind] = s.list[kind] end
    return core.json_encode(doc)
end

-- A working copy of snapshot `snap`: new lists and indexes over the same entities
-- (no decoding). Entities are never changed in place (a change makes a new one), so
-- the snapshot the worker serves from stays as it was.
function _M.working_copy(snap)
    local doc = { node_id = snap.node_id }
    for _, kind in ipairs(kinds) do
        local list = as_array({})
        for i, row in ipairs(snap.list[kind]) do list[i] = row end
        doc[kind] = list
    end
    return _M.build(doc)
end

-- find(s, kind, key, scope) -> entity | nil: by id, else by endpoint key (a name);
-- with scope = { field = "service", id = ... }, only an entity that belongs to it.
function _M.find(s, kind, key, scope)
    local def = defs[kind]
    local row = is_uuid(key) and s[kind][key] or nil
    if not row and def.endpoint_key then
        if not def.endpoint_key_scope then
            row = s.unique[kind][def.endpoint_key][key]
        elseif scope and scope.field == def.endpoint_key_scope then
            row = s.together[kind][together_key(def, { [scope.field] = scope, [def.endpoint_key] = key })]
        end
    end
    if row and scope then
        local ref = row[scope.field]
        if not ref or ref.id ~= scope.id then return nil end
    end
    return row
end

return _M
