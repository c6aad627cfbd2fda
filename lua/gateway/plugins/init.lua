-- The plugins the gateway knows, by name. A plugin module returns
--   { name, priority, schema = <config record schema, see gateway.schema>,
--     access = function(conf, ctx) ... end,   -- optional, runs by priority (high first)
--     log = function(conf, ctx) ... end }      -- optional
local _M = {}

local MODULES = {
    ["prometheus"] = "gateway.plugins.prometheus",
    ["key-auth"] = "gateway.plugins.key_auth",
    ["ip-restriction"] = "gateway.plugins.ip_restriction",
}

local names = {}
for name in pairs(MODULES) do names[#names + 1] = name end
table.sort(names)

-- The plugin module for `name`, or nil when no such plugin exists.
function _M.get(name)
    local mod = MODULES[name]
    if not mod then return nil end
    return require(mod)
end

-- Every plugin name, sorted.
function _M.names()
    return names
end

return _M
