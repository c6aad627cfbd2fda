-- bench/bench.lua: the Lua side of ./bench/run.sh, loaded in init_by_lua (bench.conf).
--
-- Every timed loop lives in its own function below so that LuaJIT traces it on its
-- own and jit.v names it by line. Times come from clock_gettime(CLOCK_MONOTONIC)
-- through the FFI; each timed loop is surrounded by "overhead" loops of the same
-- length (the same loop, empty) whose lower cost is subtracted.
--
-- Baselines marked "stand-in" are NOT nginx-lua-prometheus: they are small pieces of
-- code written for this benchmark that do what that library does at its core
-- (shared-dict incr per update, linear bucket search, get_keys + sort + concat).

local ffi = require "ffi"
local bit = require "bit"
local prom = require "ngxprom"

local C = ffi.C
local band = bit.band
local tonumber, tostring, fmt = tonumber, tostring, string.format
local sort = table.sort

-- Renamed with __asm__ so that another cdef of clock_gettime cannot clash with ours.
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } ngxbench_timespec_t;
int ngxbench_clock_gettime(int clk_id, ngxbench_timespec_t *tp) __asm__("clock_gettime");
]]
local CLOCK_MONOTONIC = 1
local t0, t1 = ffi.new("ngxbench_timespec_t"), ffi.new("ngxbench_timespec_t")

local counter_inc = C.ngx_prom_counter_inc
local counter_add = C.ngx_prom_counter_add
local histogram_observe = C.ngx_prom_histogram_observe

local M = {}

-- Names used by every case: one label set, the same in both workers (so both
-- workers hit the same series / the same dict keys, as two workers serving the same
-- route would).
local METHOD, ROUTE, SERVICE = "GET", "/api/items", "bench"

-- 15 bounds for the stand-in histogram (nginx-lua-prometheus searches its bucket list
-- linearly; 15 is the order of its usual bucket counts).
local BOUNDS = { 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30 }
local NBOUNDS = #BOUNDS

local S = {}   -- state built in init (master) and completed per worker on first use

function M.init(opts)
    S.jitdir = opts.jitdir
    S.prefix = opts.prefix
    local ok, jv = pcall(require, "jit.v")
    S.jitv = ok and jv or nil
    S.jitv_err = not ok and tostring(jv) or nil

    local z = prom.zone("bench")
    S.req = z:counter("bench_requests_total", "Hot-path counter.", { "method", "route" })
    S.lat = z:histogram("bench_latency_seconds", "Hot-path histogram.", { "route" })
    S.logger = require("ngxprom.log").new(z, { namespace = "bench_log", labels = { "service", "route" } })
    -- The ngx.var equivalent of the log helper records into families of the same shape.
    S.var = {
        requests = z:counter("bench_var_requests_total", "ngx.var log equivalent.", { "service", "route", "code" }),
        latency = z:histogram("bench_var_request_duration_seconds", "ngx.var log equivalent.", { "service", "route" }),
        upstream = z:histogram("bench_var_upstream_duration_seconds", "ngx.var log equivalent.", { "service", "route" }),
        received = z:counter("bench_var_received_bytes_total", "ngx.var log equivalent.", { "service", "route" }),
        sent = z:counter("bench_var_sent_bytes_total", "ngx.var log equivalent.", { "service", "route" }),
    }

    local s = prom.zone("scrape")
    S.route_hist = s:histogram("bench_route_latency_seconds", "Latency per route.", { "route" })
    S.route_cnt = s:counter("bench_route_requests_total", "Requests per route.", { "route" })

    -- Stand-in keys, nginx-lua-prometheus style.
    S.dict_key = 'bench_requests_total{method="GET",route="/api/items"}'
    S.bucket_keys = {}
    for i = 1, NBOUNDS do
        S.bucket_keys[i] = 'bench_latency_seconds_bucket{route="/api/items",le="' .. BOUNDS[i] .. '"}'
    end
    S.inf_key = 'bench_latency_seconds_bucket{route="/api/items",le="+Inf"}'
    S.sum_key = 'bench_latency_seconds_sum{route="/api/items"}'
    S.count_key = 'bench_latency_seconds_count{route="/api/items"}'
end

-- Per-worker context: children resolved once (series creation is not timed).
local ctx
local function context()
    if ctx then return ctx end
    local v = S.var
    ctx = {
        family = S.req,
        child = S.req:labels(METHOD, ROUTE),
        hchild = S.lat:labels(ROUTE),
        dict = ngx.shared.bench_dict,
        logger = S.logger,
        var_entry = {
            codes = {},
            latency = v.latency:labels(SERVICE, ROUTE).handle,
            upstream = v.upstream:labels(SERVICE, ROUTE).handle,
            received = v.received:labels(SERVICE, ROUTE).handle,
            sent = v.sent:labels(SERVICE, ROUTE).handle,
        },
    }
    return ctx
end

--------------------------------------------------------------------------------
-- The ngx.var equivalent of require("ngxprom.log"):log(...): reads the same five
-- request facts through ngx.var and records them with the same FFI functions.

local var_entries = {}
local function var_log(c, service, route)
    local var = ngx.var
    -- One cached entry per label set, as the log helper keeps.
    local by_service = var_entries[service]
    if not by_service then by_service = {}; var_entries[service] = by_service end
    local e = by_service[route]
    if not e then e = c.var_entry; by_service[route] = e end
    local status = var.status
    local code = e.codes[status]
    if not code then
        code = S.var.requests:labels(service, route, status).handle
        e.codes[status] = code
    end
    counter_inc(code, 1)
    local rt = tonumber(var.request_time)
    if rt then histogram_observe(e.latency, rt) end
    local urt = var.upstream_response_time
    if urt then
        local u = tonumber(urt)
        if not u then
            -- Several tries: "0.001, 0.002 : 0.003"; the log helper sums them too.
            u = 0
            for x in urt:gmatch("[%d.]+") do u = u + tonumber(x) end
        end
        histogram_observe(e.upstream, u)
    end
    counter_inc(e.received, tonumber(var.request_length) or 0)
    counter_inc(e.sent, tonumber(var.bytes_sent) or 0)
end

--------------------------------------------------------------------------------
-- Timed loops. Each takes (n, ctx).

local L = {}

function L.empty(n)
    for _ = 1, n do end
end

-- The value expression of the observe loops, summed so that it is not dropped.
function L.empty_v(n)
    local s = 0.0
    for i = 1, n do s = s + band(i, 1023) * 0.0005 end
    return s
end

-- ngx-prometheus: child resolved once.
function L.ours_inc(n, c)
    local child = c.child
    for _ = 1, n do child:inc() end
end

-- ngx-prometheus: cached label lookup on every call.
function L.ours_labels_inc(n, c)
    local f = c.family
    for _ = 1, n do f:labels("GET", "/api/items"):inc() end
end

-- The floor: the FFI call alone, no Lua wrapper.
function L.ffi_inc(n, c)
    local h = c.child.handle
    for _ = 1, n do counter_add(h, 1) end
end

-- Stand-in (a): one shared-dict incr per counter update.
function L.dict_incr(n, c)
    local d, k = c.dict, S.dict_key
    for _ = 1, n do d:incr(k, 1, 0) end
end

function L.ours_observe(n, c)
    local h = c.hchild
    for i = 1, n do h:observe(band(i, 1023) * 0.0005) end
end

-- Stand-in (b): linear search over 15 bounds, then bucket, sum and count incr.
function L.standin_observe(n, c)
    local d = c.dict
    local keys, inf, sum, count = S.bucket_keys, S.inf_key, S.sum_key, S.count_key
    for i = 1, n do
        local v = band(i, 1023) * 0.0005
        local k = inf
        for j = 1, NBOUNDS do
            if v <= BOUNDS[j] then k = keys[j]; break end
        end
        d:incr(k, 1, 0)
        d:incr(sum, v, 0)
        d:incr(count, 1, 0)
    end
end

-- Log helper, native read of the request through the FFI.
function L.log_native(n, c)
    local lg = c.logger
    for _ = 1, n do lg:log("bench", "/api/items") end
end

-- Log helper equivalent through ngx.var.
function L.log_var(n, c)
    for _ = 1, n do var_log(c, "bench", "/api/items") end
end

local OVERHEAD = {
    ours_inc = "empty", ours_labels_inc = "empty", ffi_inc = "empty", dict_incr = "empty",
    ours_observe = "empty_v", standin_observe = "empty_v",
    log_native = "empty", log_var = "empty",
}

local function elapsed_ns(f, n, c)
    C.ngxbench_clock_gettime(CLOCK_MONOTONIC, t0)
    f(n, c)
    C.ngxbench_clock_gettime(CLOCK_MONOTONIC, t1)
    return tonumber(t1.tv_sec - t0.tv_sec) * 1e9 + tonumber(t1.tv_nsec - t0.tv_nsec)
end

local function jit_on(tag)
    if not S.jitv then return "unavailable" end
    local path = fmt("%s/jit/%s-%d.log", S.prefix, tag, ngx.worker.pid())
    local ok, err = pcall(S.jitv.on, path)
    if not ok then return "error:" .. tostring(err):gsub("%s", "_") end
    return path
end

local function jit_off()
    if S.jitv then S.jitv.off() end
end

-- Runs one case: warm-up, overhead loop, timed loop, overhead loop again. Returns the
-- result line.
local function run_case(case, n, tag)
    local c = context()
    local f, o = L[case], L[OVERHEAD[case]]
    collectgarbage()
    local jv = jit_on(tag)
    local warm = n < 20000 and n or 20000
    o(warm, c); f(warm, c)
    -- The overhead loop runs before and after; the lower time is the one not
    -- interrupted by the scheduler.
    local e = elapsed_ns(o, n, c)
    local t = elapsed_ns(f, n, c)
    local e2 = elapsed_ns(o, n, c)
    if e2 < e then e = e2 end
    jit_off()
    return fmt("pid=%d case=%s n=%d loop_ns=%.4f empty_ns=%.4f net_ns=%.4f jitv=%s",
        ngx.worker.pid(), case, n, t / n, e / n, (t - e) / n, jv)
end

local function arg_check(args)
    local case, n = args.case, tonumber(args.n)
    if type(case) ~= "string" or not L[case] or not OVERHEAD[case] or not n or n < 1 then
        return nil
    end
    return case, n
end

-- GET /hot?case=&n=&round=: waits until a request of the same round runs in the other
-- worker (the two start within about a millisecond), then runs the case. A second
-- request of a round that lands on a worker already holding one gets 409 and the
-- client retries on a new connection (reuseport spreads connections over workers).
-- With solo=1 there is no barrier: one worker runs the case alone.
function M.hot()
    local args = ngx.req.get_uri_args()
    local case, n = arg_check(args)
    local round = args.round
    if not case or type(round) ~= "string" then return ngx.exit(400) end
    local sync = ngx.shared.bench_sync
    local pid = ngx.worker.pid()
    if not sync:add("w:" .. round .. ":" .. pid, true, 600) then
        return ngx.exit(409)
    end
    context()   -- resolve series before the barrier
    if case:sub(1, 4) == "log_" then ngx.status = 200 end
    if not args.solo then
        sync:incr("n:" .. round, 1, 0, 600)
        local deadline = ngx.now() + 30
        while (sync:get("n:" .. round) or 0) < 2 do
            if ngx.now() > deadline then return ngx.exit(504) end
            ngx.sleep(0.001)
        end
    end
    local line = run_case(case, n, case .. "-" .. round)
    ngx.status = 200
    ngx.say(line)
end

-- log_by_lua of GET /lp?case=&n=&id= (proxied): the same log cases in a real log
-- phase, upstream state included. The result is left in bench_sync for GET /result.
function M.logphase()
    local args = ngx.req.get_uri_args()
    local case, n = arg_check(args)
    local id = args.id
    local sync = ngx.shared.bench_sync
    if not case or type(id) ~= "string" then
        sync:set("res:" .. tostring(id), "error: bad arguments", 600)
        return
    end
    local ok, line = pcall(run_case, case, n, "lp-" .. case .. "-" .. id)
    sync:set("res:" .. id, ok and line or ("error: " .. tostring(line)), 600)
end

function M.result()
    local v = ngx.shared.bench_sync:get("res:" .. tostring(ngx.var.arg_id))
    if not v then return ngx.exit(404) end
    ngx.say(v)
end

-- What ran: versions and whether jit.v loaded.
function M.info()
    ngx.say("luajit=", (jit.version:gsub(" ", "_")), " ngx_lua=", ngx.config.ngx_lua_version,
        " nginx=", ngx.config.nginx_version, " jitv=", S.jitv and "yes" or "no",
        " jitv_err=", S.jitv_err and S.jitv_err:gsub("%s+", "_"):sub(1, 120) or "-")
end

--------------------------------------------------------------------------------
-- Scrape: the same routes in our zone and, knyar-style, in a lua_shared_dict.

local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

local function now_s()
    C.ngxbench_clock_gettime(CLOCK_MONOTONIC, t0)
    return tonumber(t0.tv_sec) + tonumber(t0.tv_nsec) / 1e9
end

-- GET /setup_scrape?from=&to=: routes /r/<from>../r/<to>, each one histogram series
-- (3 observations) and one counter, in both stores.
function M.setup_scrape()
    local args = ngx.req.get_uri_args()
    local from, to = tonumber(args.from), tonumber(args.to)
    if not from or not to then return ngx.exit(400) end
    local hist, cnt = S.route_hist, S.route_cnt
    local a = now_s()
    for i = from, to do
        local route = "/r/" .. i
        local h = hist:labels(route)
        h:observe(0.002 * (1 + i % 5))
        h:observe(0.04)
        h:observe(0.7 + i % 3)
        cnt:labels(route):inc(1 + i % 7)
    end
    local b = now_s()
    local d = ngx.shared.bench_knyar
    local failed = 0
    for i = from, to do
        local lbl = '{route="/r/' .. i .. '"'
        local obs = { 0.002 * (1 + i % 5), 0.04, 0.7 + i % 3 }
        local sum = obs[1] + obs[2] + obs[3]
        for j = 1, #DEFAULT_BUCKETS do
            local le, c = DEFAULT_BUCKETS[j], 0
            for k = 1, 3 do if obs[k] <= le then c = c + 1 end end
            local ok = d:set("bench_route_latency_seconds_bucket" .. lbl .. ',le="' .. le .. '"}', c)
            if not ok then failed = failed + 1 end
        end
        local ok1 = d:set("bench_route_latency_seconds_bucket" .. lbl .. ',le="+Inf"}', 3)
        local ok2 = d:set("bench_route_latency_seconds_sum" .. lbl .. "}", sum)
        local ok3 = d:set("bench_route_latency_seconds_count" .. lbl .. "}", 3)
        local ok4 = d:set("bench_route_requests_total" .. lbl .. "}", 1 + i % 7)
        if not (ok1 and ok2 and ok3 and ok4) then failed = failed + 1 end
    end
    local c = now_s()
    local st = prom.zone("scrape"):status()
    local dict_used = d.capacity and (d:capacity() - d:free_space()) or -1
    ngx.say(fmt("ours_s=%.4f dict_s=%.4f dict_failed=%d zone_used=%d zone_capacity=%d series=%d errors_zone_full=%d dict_used=%d",
        b - a, c - b, failed, st.used_bytes, st.capacity_bytes, st.series, st.errors.zone_full or 0, dict_used))
end

-- GET /knyar_metrics: stand-in for nginx-lua-prometheus's collect(): every key of the
-- dict, sorted, "key value\n" each.
function M.knyar_collect()
    local d = ngx.shared.bench_knyar
    local keys = d:get_keys(0)
    sort(keys)
    local out, n = {}, 0
    for i = 1, #keys do
        local k = keys[i]
        local v = d:get(k)
        if v ~= nil then
            n = n + 1
            out[n] = k .. " " .. v .. "\n"
        end
    end
    ngx.header.content_type = "text/plain; version=0.0.4; charset=utf-8"
    ngx.print(out)
end

return M
