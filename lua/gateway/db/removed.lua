-- gateway.db.removed: what a change of configuration removed, worked out once for the
-- plugins' entities_removed phase (gateway.plugins), the same way whether the change
-- is an Admin API write or a reload: every entity of the old configuration that the
-- new one lacks, or names otherwise (its endpoint key: a name, a username, a target),
-- since whatever showed its old name (a metric label) names nothing any more.
local entities = require "gateway.entities"

local ipairs = ipairs

local _M = {}

-- The rows of `list` by id.
local function by_id(list)
    local out = {}
    for _, row in ipairs(list or {}) do out[row.id] = row end
    return out
end

-- between(old, new) -> { { kind, row, refs = { <foreign field> = row } }, ... }:
-- `old` is a configuration's lists (kind -> rows: a document, a snapshot's `list`),
-- `new` an index (kind -> id -> row, gateway.db.index). `refs` holds, from the old
-- configuration, the entities a removed one referenced (a target's upstream).
function _M.between(old, new)
    local removed, ids = {}, {}
    for _, kind in ipairs(entities.kinds) do
        local def = entities.defs[kind]
        local key, now = def.endpoint_key, new[kind] or {}
        for _, row in ipairs(old[kind] or {}) do
            local cur = now[row.id]
            if not cur or (key and cur[key] ~= row[key]) then
                local refs = {}
                for _, f in ipairs(def.foreign) do
                    local ref = row[f.field]
                    if ref and ref.id then
                        ids[f.reference] = ids[f.reference] or by_id(old[f.reference])
                        refs[f.field] = ids[f.reference][ref.id]
                    end
                end
                removed[#removed + 1] = { kind = kind, row = row, refs = refs }
            end
        end
    end
    return removed
end

return _M
