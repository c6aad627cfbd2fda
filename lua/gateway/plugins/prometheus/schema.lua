-- The prometheus plugin's configuration: which metrics, their naming, buckets and limits.
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

return {
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
        { exemplars = { type = "boolean", default = false,
            description = "Link the request count and latency buckets to one request each: the "
                .. "trace id of its W3C `traceparent` header, else `$request_id` (OpenMetrics "
                .. "and protobuf scrapes). Costs zone memory per series made while on." } },
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
