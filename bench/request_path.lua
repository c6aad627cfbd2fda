-- The request-path shapes of bench/request-path.sh: what a user writes in log_by_lua*,
-- once with ngx-prometheus, once with nginx-lua-prometheus (the peer, when present),
-- and once with the metric calls left out (the baseline each shape is measured over).
-- Every variant of a shape reads the same ngx.var values; only the metric calls differ.

local M = {}

local ours, peer, dropin
local children = {}
local trace = { tag = "none", counts = {} }
local compile_all -- below, with the shapes

-- Families with the same names, labels and buckets in both libraries.
local BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local BUCKETS21 = { 0.001, 0.002, 0.005, 0.007, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
    0.06, 0.07, 0.08, 0.09, 0.1, 0.2, 0.3, 0.4, 0.5, 1 }

function M.init_worker(opts)
    local zone = require("ngxprom").zone("rp")
    ours = {
        requests = zone:counter("rp_requests_total", "Requests.", { "method", "code", "route" }),
        latency = zone:histogram("rp_latency_seconds", "Latency.", { "route" }, { buckets = BUCKETS }),
        sent = zone:counter("rp_sent_bytes_total", "Bytes sent.", { "route" }),
        received = zone:counter("rp_received_bytes_total", "Bytes received.", { "route" }),
    }
    -- Shape 8: the four updates under service, route and code, a 21-bucket histogram,
    -- through ngxprom (ours8), the drop-in require("prometheus") (drop8) and the peer.
    local svc = { "service", "route", "code" }
    ours.s8 = {
        requests = zone:counter("rp8_requests_total", "Requests.", svc),
        latency = zone:histogram("rp8_latency_seconds", "Latency.", svc, { buckets = BUCKETS21 }),
        sent = zone:counter("rp8_sent_bytes_total", "Bytes sent.", svc),
        received = zone:counter("rp8_received_bytes_total", "Bytes received.", svc),
    }
    local dropin_lib = assert(loadfile(opts.dropin))().init("rp", { prefix = "dropin_" })
    dropin = {
        requests = dropin_lib:counter("rp8_requests_total", "Requests.", svc),
        latency = dropin_lib:histogram("rp8_latency_seconds", "Latency.", svc, BUCKETS21),
        sent = dropin_lib:counter("rp8_sent_bytes_total", "Bytes sent.", svc),
        received = dropin_lib:counter("rp8_received_bytes_total", "Bytes received.", svc),
    }
    children.requests = ours.requests:labels("GET", "200", "/r")
    ours.http = require("ngxprom.log").new(zone, { labels = { "route" }, namespace = "rp_log" })
    if opts.peer then
        local peer_lib = require("prometheus").init("rp_peer", { sync_interval = 1 })
        peer = {
            requests = peer_lib:counter("rp_requests_total", "Requests.", { "method", "code", "route" }),
            latency = peer_lib:histogram("rp_latency_seconds", "Latency.", { "route" }, BUCKETS),
            sent = peer_lib:counter("rp_sent_bytes_total", "Bytes sent.", { "route" }),
            received = peer_lib:counter("rp_received_bytes_total", "Bytes received.", { "route" }),
        }
        local svc = { "service", "route", "code" }
        peer.s8 = {
            requests = peer_lib:counter("rp8_requests_total", "Requests.", svc),
            latency = peer_lib:histogram("rp8_latency_seconds", "Latency.", svc, BUCKETS21),
            sent = peer_lib:counter("rp8_sent_bytes_total", "Bytes sent.", svc),
            received = peer_lib:counter("rp8_received_bytes_total", "Bytes received.", svc),
        }
    end
    compile_all()
    -- Trace events by tag (the shape being measured), for the report: what compiled,
    -- what aborted and why.
    local ok, vmdef = pcall(require, "jit.vmdef")
    jit.attach(function(what, tr, func, pc, otr, oex)
        local c = trace.counts[trace.tag]
        if not c then c = { start = 0, stop = 0, abort = 0, reasons = {} }; trace.counts[trace.tag] = c end
        if what == "abort" then
            local why = ok and vmdef.traceerr[otr] or tostring(otr)
            if type(why) == "string" and oex then why = why:gsub("%%d", tostring(oex)):gsub("%%s", tostring(oex)) end
            c.reasons[why] = (c.reasons[why] or 0) + 1
        end
        if c[what] then c[what] = c[what] + 1 end
    end, "trace")
end

-- GET /rp_trace?tag=X: counts for the tag so far (start stop abort; reasons), then
-- makes X the current tag.
function M.trace_tag()
    local c = trace.counts[trace.tag]
    local out = { trace.tag }
    if c then
        out[#out + 1] = string.format("start=%d stop=%d abort=%d", c.start, c.stop, c.abort)
        for why, n in pairs(c.reasons) do out[#out + 1] = n .. "x " .. why end
    end
    trace.tag = ngx.var.arg_tag or "none"
    ngx.say(table.concat(out, "; "))
end

-- Shapes, by number (see bench/request-path.sh): what each reads from the request, and
-- the metric calls of each library. Every (shape, library) is compiled on its own with
-- load(), so that no two locations share a Lua function of their own (LuaJIT keeps
-- traces per function): each is measured at its own JIT steady state.
local READ1 = "local code = ngx.var.status"
local READ4 = "local v = ngx.var; local code, t = v.status, tonumber(v.request_time); "
    .. "local sent, received = tonumber(v.bytes_sent), tonumber(v.request_length)"
local FOUR = [[
    lib.requests:inc(1, { "GET", code, "/r" })
    lib.latency:observe(t, { "/r" })
    lib.sent:inc(sent, { "/r" })
    lib.received:inc(received, { "/r" })]]
local FOUR7 = [[
    lib.requests:inc(1, { "svc1", "route1", code })
    lib.latency:observe(t, { "svc1", "route1", code })
    lib.sent:inc(sent, { "svc1", "route1", code })
    lib.received:inc(received, { "svc1", "route1", code })]]
-- `use` ends every variant of a shape (none included): it keeps what was read, as the
-- rest of a real block would. Without it LuaJIT drops the unused reads from the
-- baseline's trace (no string made for ngx.var.status), while an FFI call's snapshot
-- keeps them alive in ours: the baseline would be cheaper for a reason that is not
-- the metric calls.
local USE1, USE4 = "S[1] = code", "S[1], S[2], S[3], S[4] = code, t, sent, received"
local SHAPES = {
    -- (1) inc(1, {a, b, c}) with a fresh table per request.
    { read = READ1, use = USE1, ours = 'lib.requests:inc(1, { "GET", code, "/r" })',
      peer = 'lib.requests:inc(1, { "GET", code, "/r" })' },
    -- (2) labels(a, b, c):inc(); the peer has no labels(): its form of (1).
    { read = READ1, use = USE1, ours = 'lib.requests:labels("GET", code, "/r"):inc()',
      peer = 'lib.requests:inc(1, { "GET", code, "/r" })' },
    -- (3) a child resolved once, in init_worker; the peer's nearest: constant labels.
    { read = READ1, use = USE1, ours = "child:inc()",
      peer = 'lib.requests:inc(1, { "GET", "200", "/r" })' },
    -- (4) observe(tonumber(ngx.var.request_time), {route}).
    { read = "local t = tonumber(ngx.var.request_time)", use = "S[1] = t",
      ours = 'lib.latency:observe(t, { "/r" })', peer = 'lib.latency:observe(t, { "/r" })' },
    -- (5) the four updates of a typical log_by_lua block.
    { read = READ4, use = USE4, ours = FOUR, peer = FOUR },
    -- (6) ngxprom.log: one call, the request read natively (so no reads); the peer's
    -- form of it is (5).
    { read = "", use = "", ours = 'lib.http:log("/r")', peer = nil },
    -- (7) the gateway's plugin: bench/e2e.sh measures it; nothing here.
    { read = "", use = "" },
    -- (8) the four updates under { "svc1", "route1", status }, a 21-bucket histogram:
    -- the same calls through ngxprom, the drop-in and the peer.
    { read = READ4, use = USE4, ours = FOUR7, dropin = FOUR7, peer = FOUR7, lib = "s8" },
}

-- M.f.ours1, M.f.peer1, M.f.none1, ...: log_by_lua_block { rp.f.ours1() } calls its own.
M.f = {}

local function compile(shape, who, lib)
    local s = SHAPES[shape]
    local call = who == "none" and "" or s[who]
    if not call then return nil end
    local src = "local lib, child, S = ...\nreturn function()\n" .. s.read .. "\n" .. call .. "\n"
        .. s.use .. "\nend"
    return assert(load(src, "=rp" .. shape .. who))(lib, children.requests, {})
end

function compile_all()
    for shape = 1, #SHAPES do
        local sub = SHAPES[shape].lib
        local function of(lib) return lib and sub and lib[sub] or lib end
        M.f["ours" .. shape] = compile(shape, "ours", of(ours))
        M.f["none" .. shape] = compile(shape, "none", nil)
        M.f["drop" .. shape] = compile(shape, "dropin", dropin)
        if peer then M.f["peer" .. shape] = compile(shape, "peer", of(peer)) end
    end
end

return M
