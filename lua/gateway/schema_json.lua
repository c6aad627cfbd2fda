-- gateway.schema_json: a plugin's schema as Kong's `GET /schemas/plugins/{name}` answers it,
-- made from the definitions that validate plugins (gateway.entities and the plugin's
-- module): `{ fields = { { name = {...} }, ..., { config = { type = "record",
-- fields = <the plugin's> } } } }`. Functions (custom checks) have no JSON form and are
-- left out.
local entities = require "gateway.entities"
local core = require "ngx_prometheus"

local array_mt = core.array_mt
local pairs, ipairs, type, next, setmetatable = pairs, ipairs, type, next, setmetatable

local _M = {}

-- A JSON-ready copy of a schema table: functions dropped, empty tables as arrays.
local function plain(v)
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do
        if type(x) ~= "function" then out[k] = plain(x) end
    end
    if next(out) == nil then return setmetatable(out, array_mt) end
    return out
end

-- The schema of plugin `name`, or nil when there is no such plugin.
function _M.plugin(name)
    local mod = entities.plugin_module(name)
    if not mod then return nil end
    local fields = {}
    for _, f in ipairs(entities.defs.plugins.schema.fields) do
        local fname, def = next(f)
        if fname == "config" then
            def = { type = "record", required = true, fields = mod.schema.fields }
        elseif mod["no_" .. fname] then
            -- A scope the plugin refuses: Kong says it must be null.
            def = { type = def.type, reference = def.reference, eq = core.null }
        end
        fields[#fields + 1] = { [fname] = plain(def) }
    end
    return { fields = fields }
end

return _M
