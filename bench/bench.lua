-- bench/bench.lua: the Lua side of the steps of ./bench/run.sh that measure in the
-- benchmark server (bench/bench-nginx.sh), loaded in init_by_lua (bench.conf).
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
    -- The same shapes keeping exemplars: what an exemplar adds to an update.
    S.req_x = z:counter("bench_x_requests_total", "Hot-path counter, exemplars.",
        { "method", "route" }, { exemplars = true })
    S.lat_x = z:histogram("bench_x_latency_seconds", "Hot-path histogram, exemplars.",
        { "route" }, { exemplars = true })
    S.logger = require("ngxprom.log").new(z, { namespace = "bench_log", labels = { "service", "route" } })
    -- The ngx.var equivalent of the log helper records into families of the same shape.
    S.var = {
        requests = z:counter("bench_var_requests_total", "ngx.var log equivalent.", { "service", "route", "code" }),
        latency = z:histogram("bench_var_request_duration_seconds", "ngx.var log equivalent.", { "service", "route" }),
        upstream = z:histogram("bench_var_upstream_duration_seconds", "ngx.var log equivalent.", { "service", "route" }),
        received = z:counter("bench_var_received_bytes_total", "ngx.var log equivalent.", { "service", "route" }),
        sent = z:counter("bench_var_sent_bytes_total", "ngx.var log equivalent.", { "service", "route" }),
    }

    -- Hot-path variants: 1 vs 3 labels, counter / gauge / histogram (default precision).
    S.c1 = z:counter("bench_c1_total", "Counter, 1 label.", { "route" })
    S.c3 = z:counter("bench_c3_total", "Counter, 3 labels.", { "service", "route", "method" })
    S.g1 = z:gauge("bench_g1", "Gauge, 1 label.", { "route" })
    S.g3 = z:gauge("bench_g3", "Gauge, 3 labels.", { "service", "route", "method" })
    S.h1 = z:histogram("bench_h1_seconds", "Histogram, 1 label.", { "route" })
    S.h3 = z:histogram("bench_h3_seconds", "Histogram, 3 labels.", { "service", "route", "method" })

    -- Scrape sizes (1k/10k/100k series, grown in place): per route one counter and one
    -- default-precision histogram (1 us..60 s, 2 digits).
    local sz = prom.zone("sizes")
    S.size_hist = sz:histogram("bench_size_latency_seconds", "Latency per route.", { "route" })
    S.size_cnt = sz:counter("bench_size_requests_total", "Requests per route.", { "route" })

    -- Zone bytes per series: one family per type and histogram precision.
    S.mem_zone = prom.zone("mem")
    S.mem = {
        counter = S.mem_zone:counter("bench_mem_total", "Bytes probe: counter.", { "route" }),
        gauge = S.mem_zone:gauge("bench_mem_gauge", "Bytes probe: gauge.", { "route" }),
        p1 = S.mem_zone:histogram("bench_mem_p1_seconds", "Bytes probe: precision 1.", { "route" }, { precision = 1 }),
        p2 = S.mem_zone:histogram("bench_mem_p2_seconds", "Bytes probe: precision 2.", { "route" }, { precision = 2 }),
        p3 = S.mem_zone:histogram("bench_mem_p3_seconds", "Bytes probe: precision 3.", { "route" }, { precision = 3 }),
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
        child_x = S.req_x:labels(METHOD, ROUTE),
        hchild_x = S.lat_x:labels(ROUTE),
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

-- The same with a 32-hex-digit trace id as the exemplar (the id a `$request_id` gives).
local TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
function L.ours_inc_x(n, c)
    local child = c.child_x
    for _ = 1, n do child:inc(1, TRACE_ID) end
end

function L.ours_observe_x(n, c)
    local h = c.hchild_x
    for i = 1, n do h:observe(band(i, 1023) * 0.0005, TRACE_ID) end
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

-- Variants through `family:labels(...)` on every call (the per-request form of a
-- plugin): 1 vs 3 labels; counter inc, gauge set, histogram observe. The label values
-- come from the case context (see case_ctx): the same series in both workers, one
-- series per worker, or one per worker placed far apart in the zone. Each value is
-- read from a 2-slot array at a varying index (both slots hold the same string):
-- with constant keys LuaJIT hoists the cache lookups out of the loop, and the loop
-- would no longer measure them.
function L.c1(n, c)
    local f, a = c.fam, c.av
    for i = 1, n do f:labels(a[band(i, 1) + 1]):inc() end
end

function L.c3(n, c)
    local f, a, b, m = c.fam, c.av, c.bv, c.mv
    for i = 1, n do
        local k = band(i, 1) + 1
        f:labels(a[k], b[k], m[k]):inc()
    end
end

function L.g1(n, c)
    local f, a = c.fam, c.av
    for i = 1, n do f:labels(a[band(i, 1) + 1]):set(band(i, 1023) * 0.0005) end
end

function L.g3(n, c)
    local f, a, b, m = c.fam, c.av, c.bv, c.mv
    for i = 1, n do
        local k = band(i, 1) + 1
        f:labels(a[k], b[k], m[k]):set(band(i, 1023) * 0.0005)
    end
end

function L.h1(n, c)
    local f, a = c.fam, c.av
    for i = 1, n do f:labels(a[band(i, 1) + 1]):observe(band(i, 1023) * 0.0005) end
end

function L.h3(n, c)
    local f, a, b, m = c.fam, c.av, c.bv, c.mv
    for i = 1, n do
        local k = band(i, 1) + 1
        f:labels(a[k], b[k], m[k]):observe(band(i, 1023) * 0.0005)
    end
end

local OVERHEAD = {
    ours_inc = "empty", ours_labels_inc = "empty", ffi_inc = "empty", dict_incr = "empty",
    ours_observe = "empty_v", standin_observe = "empty_v",
    ours_inc_x = "empty", ours_observe_x = "empty_v",
    log_native = "empty", log_var = "empty",
}

-- case -> { loop, mode }: <kind><labels>_<mode>, e.g. c3_diff. Names have no "-"
-- (bench/hot-path.sh splits jit.v file names on it).
local VARIANTS = {}
for _, fn in ipairs({ "c1", "c3", "g1", "g3", "h1", "h3" }) do
    for _, mode in ipairs({ "same", "diff" }) do
        local case = fn .. "_" .. mode
        VARIANTS[case] = { fn = fn, mode = mode }
        L[case] = L[fn]
        OVERHEAD[case] = "empty_v"
    end
end
-- Counter, 1 label, one series per worker with other series between them (>= 256
-- bytes apart), to tell cache-line sharing between neighbours from a shared series.
VARIANTS.c1_apart = { fn = "c1", mode = "apart" }
L.c1_apart = L.c1
OVERHEAD.c1_apart = "empty_v"
local APART_PADDING = 4

-- The label values of a variant: "same" is one label set for both workers; "diff" and
-- "apart" one per worker (ngx.worker.id() in the route). Every worker resolves the
-- series of every worker in the same order, so the zone holds them in that order
-- (each made once, by whichever worker gets there first): "diff" series are
-- neighbours in the arena, "apart" ones have APART_PADDING series between them.
local FAMILY_OF = { c1 = "c1", c3 = "c3", g1 = "g1", g3 = "g3", h1 = "h1", h3 = "h3" }
local function labels_for(fn, route)
    if fn:sub(2, 2) == "1" then return route end
    return SERVICE, route, METHOD
end

local function resolve_variants()
    for _, fn in ipairs({ "c1", "c3", "g1", "g3", "h1", "h3" }) do
        local f = S[FAMILY_OF[fn]]
        f:labels(labels_for(fn, ROUTE))
        f:labels(labels_for(fn, ROUTE .. "/w0"))
        f:labels(labels_for(fn, ROUTE .. "/w1"))
    end
    S.c1:labels("/apart/w0")
    for i = 1, APART_PADDING do S.c1:labels("/apart/pad" .. i) end
    S.c1:labels("/apart/w1")
end

local case_ctxs = {}
local function case_ctx(case)
    local cc = case_ctxs[case]
    if cc then return cc end
    local v = VARIANTS[case]
    resolve_variants()
    local route = ROUTE
    if v.mode == "diff" then
        route = ROUTE .. "/w" .. ngx.worker.id()
    elseif v.mode == "apart" then
        route = "/apart/w" .. ngx.worker.id()
    end
    local a, b, m = labels_for(v.fn, route)
    cc = { fam = S[FAMILY_OF[v.fn]], av = { a, a }, bv = { b, b }, mv = { m, m } }
    case_ctxs[case] = cc
    return cc
end

-- GET /series_layout: how far apart (bytes between value words) the two workers'
-- series of each variant are.
function M.series_layout()
    resolve_variants()
    for _, fn in ipairs({ "c1", "c3", "g1", "g3", "h1", "h3" }) do
        local f = S[FAMILY_OF[fn]]
        local h0 = f:labels(labels_for(fn, ROUTE .. "/w0")).handle
        local h1 = f:labels(labels_for(fn, ROUTE .. "/w1")).handle
        ngx.say(fmt("%s_diff %d", fn, math.abs(tonumber(h1) - tonumber(h0)) * 8))
    end
    local a0, a1 = S.c1:labels("/apart/w0").handle, S.c1:labels("/apart/w1").handle
    ngx.say(fmt("c1_apart %d", math.abs(tonumber(a1) - tonumber(a0)) * 8))
    ngx.say("padding ", APART_PADDING)
end

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
    if VARIANTS[case] then c = case_ctx(case) end
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

-- GET /count?case=&n=: the case's loop alone (after a warm-up), untimed: for counting
-- instructions under callgrind (bench/profile.sh zeroes the counters before, dumps them after).
function M.count()
    local args = ngx.req.get_uri_args()
    local case, n = args.case, tonumber(args.n)
    if type(case) ~= "string" or not L[case] or not OVERHEAD[case] or not n then return ngx.exit(400) end
    local c = context()
    if VARIANTS[case] then c = case_ctx(case) end
    local f = L[case]
    if args.warm then
        f(20000, c)
    else
        f(n, c)
    end
    ngx.say("ok")
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
    if VARIANTS[case] then case_ctx(case) end
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

-- GET /setup_sizes?from=&to=: routes /r/<from>../r/<to> in the "sizes" zone, each one
-- counter series and one default-precision histogram series (3 observations).
function M.setup_sizes()
    local args = ngx.req.get_uri_args()
    local from, to = tonumber(args.from), tonumber(args.to)
    if not from or not to then return ngx.exit(400) end
    local hist, cnt = S.size_hist, S.size_cnt
    local a = now_s()
    for i = from, to do
        local route = "/r/" .. i
        cnt:labels(route):inc(1 + i % 7)
        local h = hist:labels(route)
        h:observe(0.002 * (1 + i % 5))
        h:observe(0.04)
        h:observe(0.7 + i % 3)
    end
    local b = now_s()
    local st = prom.zone("sizes"):status()
    ngx.say(fmt("pid=%d setup_s=%.4f zone_used=%d zone_capacity=%d series=%d errors_zone_full=%d",
        ngx.worker.pid(), b - a, st.used_bytes, st.capacity_bytes, st.series, st.errors.zone_full or 0))
end

-- GET /setup_mem?kind=counter|gauge|p1|p2|p3|p1w|p2n|p2w|p3w&from=&to=: series of 13
-- bytes of label value each in that family of the "mem" zone. Counters and gauges get
-- one update, p1/p2/p3 histograms one value (the least a histogram series takes), and
-- the spread kinds 200 values each, log-spaced: "n" over 10-100 ms (one decade), "w"
-- over 1 ms-1 s (three); their routes differ from the one-value series of the family.
-- kind=attach only registers the zone's families in this worker (nothing else made).
-- Answers the zone's used bytes before and after, as nginx_metric_zone_bytes shows it.
local MEM_SPREAD = { n = { 0.010, 10, "/narow/" }, w = { 0.001, 1000, "/wider/" } }

function M.setup_mem()
    local args = ngx.req.get_uri_args()
    local kind = args.kind
    local z = S.mem_zone
    local before = z:status()   -- attaches: the families are registered from here on
    if kind == "attach" then
        ngx.say(fmt("pid=%d used=%d", ngx.worker.pid(), before.used_bytes))
        return
    end
    local f = S.mem[kind] or S.mem[kind:sub(1, 2)]
    local spread = #kind == 3 and MEM_SPREAD[kind:sub(3)] or nil
    local from, to = tonumber(args.from), tonumber(args.to)
    if not f or (#kind == 3 and not spread) or not from or not to then return ngx.exit(400) end
    local label_bytes = 0
    for i = from, to do
        local route = fmt("%s%06d", spread and spread[3] or "/route/", i)
        label_bytes = label_bytes + #route
        local child = f:labels(route)
        if kind == "counter" then child:inc()
        elseif kind == "gauge" then child:set(i)
        elseif spread then
            for k = 0, 199 do child:observe(spread[1] * spread[2] ^ (k / 199)) end
        else child:observe(0.001 * (1 + i % 100)) end
    end
    local after = z:status()
    ngx.say(fmt("pid=%d kind=%s n=%d label_bytes=%d used_before=%d used_after=%d series=%d errors_zone_full=%d",
        ngx.worker.pid(), kind, to - from + 1, label_bytes, before.used_bytes, after.used_bytes,
        after.series, after.errors.zone_full or 0))
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
