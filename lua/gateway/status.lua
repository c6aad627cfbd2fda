-- The Admin API's /status (its /metrics is the module's handler: nginx/gateway.conf).
local exporter = require "gateway.plugins.prometheus.exporter"
local core = require "ngx_prometheus"

local _M = {}

-- { server = nginx connection counters, metrics = the zone's capacity, usage, series
-- and errors, memory = shared dicts }.
function _M.status()
    local zone = exporter.status() or {}
    local dicts = {}
    for _, name in ipairs({ "gateway_config", "gateway_state" }) do
        local d = ngx.shared[name]
        if d then
            dicts[name] = { capacity = d:capacity(), allocated = d:capacity() - d:free_space() }
        end
    end
    local s = core.stub_status() or {}
    return {
        server = {
            connections_accepted = s.accepted, connections_handled = s.handled,
            total_requests = s.requests, connections_active = s.active,
            connections_reading = s.reading, connections_writing = s.writing,
            connections_waiting = s.waiting,
        },
        metrics = {
            zone = "metrics",
            capacity_bytes = zone.capacity_bytes, used_bytes = zone.used_bytes,
            families = zone.families, series = zone.series, errors = zone.errors,
        },
        memory = { lua_shared_dicts = dicts, workers_lua_vm_bytes = collectgarbage("count") * 1024 },
        configuration_version = require("gateway.db").snapshot() and require("gateway.db").snapshot().version,
    }
end

return _M
