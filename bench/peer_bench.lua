-- The measurements of bench/peer.sh, each made with ngx-prometheus ("ours") and with
-- nginx-lua-prometheus ("peer", loaded from ../shared/peers when present): the same
-- family names, labels and buckets, the same Lua calls.

local M = {}

local band = bit.band

-- Same buckets as bench/request_path.lua: the peer's default list, up to 10 s.
local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local libs = {}

local function families(counter, histogram, gauge)
    return {
        loop_requests = counter("loop_requests_total", "Tight loop.", { "route", "code", "method" }),
        loop_latency = histogram("loop_latency_seconds", "Tight loop.", { "route" }),
        loop_inflight = gauge("loop_inflight", "Tight loop.", { "route" }),
        requests = counter("scrape_requests_total", "Requests by route.", { "route" }),
        latency = histogram("scrape_latency_seconds", "Latency by route.", { "route" }),
        visible = counter("visible_total", "Series recorded just before a scrape.", { "batch", "id" }),
    }
end

function M.init_worker(opts)
    local zone = require("ngxprom").zone("peer_ours")
    local h = { buckets = BUCKETS }
    libs.ours = families(
        function(n, help, l) return zone:counter(n, help, l) end,
        function(n, help, l) return zone:histogram(n, help, l, h) end,
        function(n, help, l) return zone:gauge(n, help, l) end)
    if opts.peer then
        local p = require("prometheus").init("peer_dict", { sync_interval = 1 })
        libs.peer = families(
            function(n, help, l) return p:counter(n, help, l) end,
            function(n, help, l) return p:histogram(n, help, l, BUCKETS) end,
            function(n, help, l) return p:gauge(n, help, l) end)
        libs.peer_registry = p
    end
end

local function lib_arg()
    local lib = libs[ngx.var.arg_lib]
    if not lib then ngx.exit(400) end
    return lib
end

-- Tight loops: the loop bodies, each compiled on its own (per library) so that no two
-- share a trace. A is 8 label values, V 8 observations; `i` picks one of each.
local LOOPS = {
    empty = "local s = 0; for i = 1, n do s = s + #A[band(i, 7) + 1] end; return s",
    counter = 'for i = 1, n do lib.loop_requests:inc(1, { A[band(i, 7) + 1], "200", "GET" }) end',
    observe = "for i = 1, n do local k = band(i, 7) + 1; lib.loop_latency:observe(V[k], { A[k] }) end",
    gauge = "for i = 1, n do lib.loop_inflight:set(i, { A[band(i, 7) + 1] }) end",
}
local A = { "/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h" }
local V = { 0.003, 0.02, 0.07, 0.2, 0.6, 1.5, 4, 8 }
local compiled = {}

-- GET /loop?lib=ours&what=counter&n=N: CPU ns per iteration of that loop, over N
-- iterations after a warm-up of N/10 (os.clock: this worker's CPU time).
function M.loop()
    local who, what = ngx.var.arg_lib, ngx.var.arg_what
    local lib = what == "empty" and {} or lib_arg()
    local n = tonumber(ngx.var.arg_n) or 1000000
    local key = who .. ":" .. what
    local f = compiled[key]
    if not f then
        local src = assert(LOOPS[what], "no such loop")
        f = assert(load("local lib, A, V, band = ...\nreturn function(n)\n" .. src .. "\nend",
            "=loop:" .. key))(lib, A, V, band)
        compiled[key] = f
    end
    f(math.floor(n / 10))
    -- Each loop starts on a collected heap: the garbage of one library's loop is not
    -- collected on the other's time.
    collectgarbage()
    local t0 = os.clock()
    f(n)
    ngx.say(string.format("%.3f", (os.clock() - t0) / n * 1e9))
end

-- GET /fill?lib=ours&routes=N: N routes, each with one counter series and one
-- histogram series holding 3 observations.
function M.fill()
    local lib = lib_arg()
    local n = tonumber(ngx.var.arg_routes) or 10000
    for i = 1, n do
        local route = "/r/" .. i
        lib.requests:inc(1, { route })
        lib.latency:observe(0.004 * (i % 7), { route })
        lib.latency:observe(0.03 * (i % 5), { route })
        lib.latency:observe(1.7, { route })
    end
    ngx.say(n)
end

-- GET /record?lib=ours&batch=B&from=F&n=N: N new series of visible_total, ids F..F+N-1.
function M.record()
    local lib = lib_arg()
    local batch, from = ngx.var.arg_batch, tonumber(ngx.var.arg_from)
    for i = from, from + tonumber(ngx.var.arg_n) - 1 do
        lib.visible:inc(1, { batch, tostring(i) })
    end
    ngx.say("ok")
end

-- GET /metrics_peer: the peer's exposition, as its README has users serve it.
function M.collect()
    libs.peer_registry:collect()
end

-- GET /pid: which worker answered (the visible-series driver checks it reached both).
function M.pid() ngx.say(ngx.worker.pid()) end

return M
