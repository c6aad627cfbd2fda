-- gateway.db.crud: changes to an index (a writer's working copy, gateway.db.index):
-- insert, update (PUT; PATCH through merge) and delete with what goes with it. Every
-- check passes before anything changes: a refused change leaves the index as it was.
-- Errors are gateway.db.errors' { status, body }.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local entities = require "gateway.entities"
local index = require "gateway.db.index"
local errors = require "gateway.db.errors"

local defs, kinds = entities.defs, entities.kinds
local as_array, together_key = schema.as_array, index.together_key
local ipairs, pairs = ipairs, pairs
local fmt = string.format

local _M = {}

-- The entity `input` describes, validated, with references resolved to ids and
-- uniqueness checked; `old` is the entity it replaces (its id and creation time stay).
-- `now` stamps updated_at; without it (loading a file) the input's stamp is kept.
-- What an entity keeps when it is replaced or changed, whatever the input says.
_M.KEPT = { "id", "created_at" }

local function prepare(s, kind, input, old, now)
    local def = defs[kind]
    if old then
        local copy = {}
        for k, v in pairs(input) do copy[k] = v end
        for _, f in ipairs(_M.KEPT) do copy[f] = old[f] end
        input = copy
    end
    local row, errs = entities.validate(kind, input)
    if not row then return nil, errors.schema(errs) end
    if def.updated_at then row.updated_at = now or row.updated_at or row.created_at end

    for _, fk in ipairs(def.foreign) do
        local ref = row[fk.field]
        if ref then
            local target = ref.id and s[fk.reference][ref.id]
                or ref.name and s.by_name[fk.reference][ref.name]
            if not target then return nil, errors.foreign_key(fk.field, fk.reference, ref) end
            row[fk.field] = { id = target.id }
        end
    end

    local cap = def.per_parent
    if cap and row[cap.field] then
        local parent, n = row[cap.field].id, 0
        for _, r in ipairs(s.list[kind]) do
            if r.id ~= row.id and r[cap.field] and r[cap.field].id == parent then n = n + 1 end
        end
        if n >= cap.limit then
            return nil, errors.schema({ [cap.field] = fmt("at most %d %s per %s", cap.limit, kind, cap.field) })
        end
    end

    if kind == "plugins" then
        local mod = entities.plugin_module(row.name)
        if mod and mod.conflict then
            for _, other in ipairs(s.list.plugins) do
                if other.name == row.name and other.id ~= row.id then
                    local why = mod.conflict(row.config, other.config)
                    if why then return nil, errors.plugin_conflict(row, other, why) end
                end
            end
        end
    end

    if not old and s[kind][row.id] then return nil, errors.primary_key(row.id) end
    for _, f in ipairs(def.unique) do
        local other = row[f] ~= nil and s.unique[kind][f][row[f]]
        if other and other.id ~= row.id then return nil, errors.unique({ [f] = row[f] }) end
    end
    if def.unique_together then
        local other = s.together[kind][together_key(def, row)]
        if other and other.id ~= row.id then
            local fields = {}
            for _, f in ipairs(def.unique_together) do fields[f] = row[f] or core.null end
            return nil, errors.unique(fields)
        end
    end
    return row
end

local function position(list, row)
    for i, r in ipairs(list) do
        if r == row then return i end
    end
end

-- insert(s, kind, input, now) -> entity | nil, err
function _M.insert(s, kind, input, now)
    local row, err = prepare(s, kind, input, nil, now)
    if not row then return nil, err end
    local list = s.list[kind]
    list[#list + 1] = row
    index.add_keys(s, kind, row)
    s.changed = true
    return row
end

-- update(s, kind, old, input, now) -> entity | nil, err: `input` replaces `old`
-- entirely (PUT); for PATCH pass merge(kind, old, patch).
function _M.update(s, kind, old, input, now)
    local row, err = prepare(s, kind, input, old, now)
    if not row then return nil, err end
    s.list[kind][position(s.list[kind], old)] = row
    index.remove_keys(s, kind, old)
    index.add_keys(s, kind, row)
    s.changed = true
    return row
end

-- merge(kind, old, patch) -> the input for update(): patch over old, records merged
-- field by field (Kong's PATCH), everything else replaced; null unsets.
function _M.merge(kind, old, patch)
    return schema.merge(defs[kind].schema, old, patch)
end

-- Every entity that goes with `row`, or an error if something refuses to let it go
-- (a foreign field's on_delete: "cascade" takes the child along, "restrict" refuses).
local function dependents(s, kind, row, out)
    out[#out + 1] = { kind = kind, row = row }
    for _, child in ipairs(kinds) do
        for _, fk in ipairs(defs[child].foreign) do
            if fk.reference == kind then
                for _, c in ipairs(s.list[child]) do
                    local ref = c[fk.field]
                    if ref and ref.id == row.id then
                        if fk.on_delete == "restrict" then return nil, errors.referenced(kind, child) end
                        local ok, err = dependents(s, child, c, out)
                        if not ok then return nil, err end
                    end
                end
            end
        end
    end
    return out
end

-- delete(s, kind, row) -> gone | nil, err: with the plugins and credentials that
-- belong to it; refused while routes (targets) reference a service (upstream). `gone`
-- lists every entity deleted, as { kind, row }.
function _M.delete(s, kind, row)
    local gone, err = dependents(s, kind, row, {})
    if not gone then return nil, err end
    local doomed = {}
    for _, d in ipairs(gone) do
        doomed[d.row] = true
        index.remove_keys(s, d.kind, d.row)
    end
    for _, k in ipairs(kinds) do
        local kept = as_array({})
        for _, r in ipairs(s.list[k]) do
            if not doomed[r] then kept[#kept + 1] = r end
        end
        s.list[k] = kept
    end
    s.changed = true
    return gone
end

return _M
