-- prometheus: request, latency, bandwidth and upstream health metrics, Kong's plugin
-- of the same name. This file is the phase hooks; the schema is schema.lua, the
-- families and the recording exporter.lua, loaded when first used: the schema is also
-- read outside nginx (gateway.openapi's generator, the unit tests), where the
-- exporter's FFI cannot load. Inside nginx the master loads it (the init phase).
local exporter

local function loaded()
    exporter = exporter or require "gateway.plugins.prometheus.exporter"
    return exporter
end

local _M = {
    name = "prometheus",
    -- Last among log handlers: sees what the others decided.
    priority = 13,
}

_M.schema = require "gateway.plugins.prometheus.schema"

-- Two instances whose families would meet without being the same families (the
-- Admin API refuses the second, naming both): `namespace = "foo"` and
-- `namespace = "foo_request"` would both write `foo_request_latency_seconds`, and
-- `namespace = "kong"` would write Kong naming's families with other labels.
function _M.conflict(conf, other)
    local mine, theirs = loaded().clash(conf, other)
    if not mine then return nil end
    local function naming(c)
        return c.naming == "kong" and "naming kong" or ('namespace "' .. c.namespace .. '"')
    end
    if mine == theirs then
        return string.format("both would write family %s (%s, %s)", mine, naming(conf), naming(other))
    end
    return string.format("family %s (%s) and family %s (%s) would expose the same names",
        mine, naming(conf), theirs, naming(other))
end

-- The switches a narrower instance (`narrow`) turns off that a wider one (`wide`)
-- turns on: the narrower one wins, so its requests lose them.
local SWITCHES = { "status_code_metrics", "latency_metrics", "bandwidth_metrics",
                   "upstream_health_metrics", "per_consumer", "exemplars" }
function _M.turns_off(narrow, wide)
    local off = {}
    for _, f in ipairs(SWITCHES) do
        if wide[f] and not narrow[f] then off[#off + 1] = f end
    end
    return off
end

function _M.log(conf, ctx)
    exporter = exporter or require "gateway.plugins.prometheus.exporter"
    exporter.log(conf, ctx)
end

-- The phases the core calls for every plugin (gateway.plugins): the exporter's.
function _M.init() loaded() end
function _M.init_worker() loaded().init_worker() end
function _M.configure(instances, snapshot) loaded().configure(instances, snapshot) end
function _M.entities_removed(removed, configs) loaded().forget(removed, configs) end
function _M.metrics() loaded().refresh() end

-- /status's `metrics`: the zone's capacity, usage, families, series and errors.
function _M.status()
    local zone = loaded().status() or {}
    return { metrics = {
        zone = "metrics",
        capacity_bytes = zone.capacity_bytes, used_bytes = zone.used_bytes,
        families = zone.families, series = zone.series, errors = zone.errors,
    } }
end

return _M
