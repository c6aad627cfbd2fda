-- test-metrics: a metrics-like plugin that exists only in the unit tests
-- (t/lua/plugins_spec.lua). It is found on the specs' package path, made known with
-- gateway.plugins.add, and driven by the core through the phases alone: a request
-- count per route label, dropped when the route is removed, and shown in /status.
local _M = {
    name = "test-metrics",
    priority = 10,
    schema = require "gateway.plugins.test-metrics.schema",
}

-- Label value -> requests, as a family's series; and what the core handed over.
_M.series = {}
_M.seen = {}

function _M.configure(instances, snapshot)
    _M.seen.instances, _M.seen.snapshot = instances, snapshot
end

function _M.log(conf, ctx)
    local label = conf.prefix .. (ctx.route.name or ctx.route.id)
    _M.series[label] = (_M.series[label] or 0) + 1
end

function _M.entities_removed(removed, configs)
    _M.seen.configs = configs
    for _, g in ipairs(removed) do
        if g.kind == "routes" then
            for _, conf in ipairs(configs) do _M.series[conf.prefix .. (g.row.name or g.row.id)] = nil end
        end
    end
end

function _M.status()
    local n = 0
    for _ in pairs(_M.series) do n = n + 1 end
    return { test_metrics = { series = n } }
end

return _M
