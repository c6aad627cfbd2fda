-- The Admin API's /status (its /metrics is the module's handler: conf/gateway.conf).
local plugins = require "gateway.plugins"
local core = require "ngx_prometheus"

local _M = {}

-- { server = nginx connection counters, memory = shared dicts, configuration_version }
-- and the fields the plugins' status phase adds (gateway.plugins).
function _M.status()
    local dicts = {}
    for _, name in ipairs({ "gateway_config", "gateway_state" }) do
        local d = ngx.shared[name]
        if d then
            dicts[name] = { capacity = d:capacity(), allocated = d:capacity() - d:free_space() }
        end
    end
    local s = core.stub_status() or {}
    local out = {
        server = {
            connections_accepted = s.accepted, connections_handled = s.handled,
            total_requests = s.requests, connections_active = s.active,
            connections_reading = s.reading, connections_writing = s.writing,
            connections_waiting = s.waiting,
        },
        memory = { lua_shared_dicts = dicts, workers_lua_vm_bytes = collectgarbage("count") * 1024 },
        configuration_version = require("gateway.db").snapshot() and require("gateway.db").snapshot().version,
    }
    for k, v in pairs(plugins.status()) do out[k] = v end
    return out
end

return _M
