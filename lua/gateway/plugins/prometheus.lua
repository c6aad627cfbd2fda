-- prometheus: request, latency, bandwidth and upstream health metrics, Kong's plugin
-- of the same name. This file is the schema and the phase hook; the families and the
-- recording live in gateway.exporter, loaded when first used: the schema is also read
-- outside nginx (gateway.openapi's generator, the unit tests), where the exporter's
-- FFI cannot load. Inside nginx the Admin API has loaded it in the master already.
local exporter

local _M = {
    name = "prometheus",
    -- Last among log handlers: sees what the others decided.
    priority = 13,
}

local KONG_LATENCY_MS = { 1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000 }
local KONG_UPSTREAM_MS = { 25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000 }

-- Every bound is one sample line per series in every scrape.
local MAX_BUCKETS = 64

local function buckets_field(default, what)
    return { type = "array", len_max = MAX_BUCKETS, elements = { type = "number", between = { 0, 3600000 } },
        default = default,
        description = "Bucket bounds in milliseconds for the " .. what .. " histogram. "
            .. "Can change at any time: counts are kept at full resolution and re-cut." }
end

_M.schema = {
    fields = {
        { per_consumer = { type = "boolean", default = false,
            description = "Label request and bandwidth series with the consumer's username." } },
        { status_code_metrics = { type = "boolean", default = false,
            description = "Count requests by service, route, status code and source." } },
        { latency_metrics = { type = "boolean", default = false,
            description = "Histograms of request, upstream and gateway latency." } },
        { bandwidth_metrics = { type = "boolean", default = false,
            description = "Count bytes received from and sent to clients." } },
        { upstream_health_metrics = { type = "boolean", default = false,
            description = "One gauge per upstream target and health state (1 or 0)." } },
        { naming = { type = "string", default = "prometheus", one_of = { "prometheus", "kong" },
            description = "'prometheus': base units (seconds, bytes) and `_total` counters under "
                .. "`namespace`; 'kong': Kong's exact family names, units and labels." } },
        { namespace = { type = "string", default = "gateway", match = "^[a-zA-Z_][a-zA-Z0-9_]*$",
            description = "Family name prefix in 'prometheus' naming." } },
        { request_latency_buckets = buckets_field(KONG_UPSTREAM_MS, "request latency") },
        { upstream_latency_buckets = buckets_field(KONG_UPSTREAM_MS, "upstream latency") },
        { gateway_latency_buckets = buckets_field(KONG_LATENCY_MS, "gateway's own latency") },
        { expire = { type = "integer", default = 0, between = { 0, 31536000 },
            description = "Seconds after their last request that request, latency and bandwidth series "
                .. "are deleted (0: never), as APISIX's `expire`." } },
        { series_limit = { type = "integer", default = 0, between = { 0, 10000000 },
            description = "New series beyond this many per family are refused and counted (0: no limit)." } },
    },
    entity_checks = function(conf)
        for _, f in ipairs({ "request_latency_buckets", "upstream_latency_buckets", "gateway_latency_buckets" }) do
            local b = conf[f]
            if b then
                for i = 2, #b do
                    if b[i] <= b[i - 1] then
                        return nil, { [f] = "bounds must increase" }
                    end
                end
            end
        end
        return true
    end,
}

-- Two instances whose families would meet without being the same families (the
-- Admin API refuses the second, naming both): `namespace = "foo"` and
-- `namespace = "foo_request"` would both write `foo_request_latency_seconds`, and
-- `namespace = "kong"` would write Kong naming's families with other labels.
function _M.conflict(conf, other)
    exporter = exporter or require "gateway.exporter"
    local mine, theirs = exporter.clash(conf, other)
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
                   "upstream_health_metrics", "per_consumer" }
function _M.turns_off(narrow, wide)
    local off = {}
    for _, f in ipairs(SWITCHES) do
        if wide[f] and not narrow[f] then off[#off + 1] = f end
    end
    return off
end

function _M.log(conf, ctx)
    exporter = exporter or require "gateway.exporter"
    exporter.log(conf, ctx)
end

return _M
