-- The plugins the gateway knows, by name. Each is a directory, as Kong's are:
-- gateway/plugins/<name>/handler.lua (what the core calls), schema.lua (its config
-- record, see gateway.schema) and any modules of its own. A handler returns
--   { name, priority, schema = require "gateway.plugins.<name>.schema",
--     access = function(conf, ctx) ... end,   -- optional, runs by priority (high first)
--     log = function(conf, ctx) ... end }      -- optional
local _M = {}

-- The plugins shipped with the gateway (Kong's bundled plugins).
local names = { "ip-restriction", "key-auth", "prometheus" }
local known = {}
for _, name in ipairs(names) do known[name] = true end

-- The plugin module for `name`, or nil when no such plugin exists.
function _M.get(name)
    if not known[name] then return nil end
    return require("gateway.plugins." .. name .. ".handler")
end

local SCOPES = { "service", "route", "consumer" }

-- Whether instance `a`'s scope is strictly inside `b`'s: every scope field `b` sets, `a`
-- sets to the same entity, and `a` sets more (so `a` wins wherever both apply).
local function narrower(a, b)
    local more = false
    for _, f in ipairs(SCOPES) do
        local x, y = a[f] and a[f].id, b[f] and b[f].id
        if y and x ~= y then return false end
        if x and not y then more = true end
    end
    return more
end

local function scope_of(p)
    local parts = {}
    for _, f in ipairs(SCOPES) do
        if p[f] and p[f].id then parts[#parts + 1] = f .. " " .. p[f].id end
    end
    return #parts > 0 and table.concat(parts, ", ") or "global"
end

-- Warnings about instance `row` (just stored) and the other enabled instances of its
-- plugin in `others` (rows by id): where a narrower instance turns off what a wider
-- one records (the plugin's `turns_off(narrow_conf, wide_conf)` names the fields),
-- the requests both apply to lose it. Kong behaves the same; it is a trap there too.
function _M.shadow_warnings(row, others)
    local mod = _M.get(row.name)
    local out = {}
    if not (mod and mod.turns_off) or row.enabled == false then return out end
    for _, other in pairs(others) do
        if other.id ~= row.id and other.name == row.name and other.enabled ~= false then
            local narrow, wide
            if narrower(row, other) then narrow, wide = row, other
            elseif narrower(other, row) then narrow, wide = other, row end
            local fields = narrow and mod.turns_off(narrow.config, wide.config)
            if fields and #fields > 0 then
                out[#out + 1] = string.format(
                    "%s plugin %s (%s) turns off %s, which %s (%s) records, for the requests both apply to",
                    row.name, narrow.id, scope_of(narrow), table.concat(fields, ", "), wide.id, scope_of(wide))
            end
        end
    end
    table.sort(out)
    return out
end

-- Every plugin name, sorted.
function _M.names()
    return names
end

return _M
