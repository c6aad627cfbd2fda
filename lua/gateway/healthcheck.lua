-- Active health checks (Kong's `healthchecks.active`): probes of upstream targets.
--
-- One worker probes (worker 0: a timer started in its init_worker, so a worker that
-- replaces it after a crash or a reload probes again); every worker reads the outcome
-- in lua_shared_dict gateway_state, where the passive checks (gateway.balancer) keep
-- theirs:
--   unhealthy|<key>      the target is out of the ring (either check set it; the value
--                        is when). It expires after passive.readmit_after seconds,
--                        unless active checks probe unhealthy targets (unhealthy.interval
--                        and healthy.successes both set): then only they clear it.
--   hc_ok|<key>          active successes in a row while unhealthy
--   hc_http|<key>, hc_tcp|<key>, hc_timeout|<key>
--                        active failures of each kind in a row while healthy
--   hc_at|<key>          when the target was last probed: a worker 0 that replaces
--                        one that died (or a reload's) keeps the intervals
-- where <key> is "<upstream id>|<target>", so that health survives every change of
-- configuration that keeps the target (a PATCH of its upstream, a reload).
--
-- A probe never blocks a worker: it is a cosocket in a timer, bounded as a whole by
-- `timeout`; at most `concurrency` targets of an upstream and MAX_BATCHES upstreams
-- are probed at once, and a target is never probed twice at the same time. The probe
-- is a minimal HTTP/1.0 request over ngx.socket.tcp, as Kong's own checker
-- (lua-resty-healthcheck) makes it: only its status line is read.

local db = require "gateway.db"
local dns = require "gateway.dns"
local core = require "ngx_prometheus"

local state = ngx.shared.gateway_state
local printable = core.printable
local ngx, ipairs, tonumber, tostring, type, pcall = ngx, ipairs, tonumber, tostring, type, pcall
local min, floor = math.min, math.floor

local _M = {}

-- How often worker 0 looks for targets due for a probe (intervals are at least 0.1 s).
local TICK = 0.05
-- Upstreams probed at the same time (each a timer with up to `concurrency` threads).
local MAX_BATCHES = 32
-- The longest status line read from a target.
local MAX_STATUS_LINE = 1024

-- What a target sees of a probe (so that its logs tell probes from traffic).
local USER_AGENT = "ngx-prometheus-gateway-healthcheck"

local EMPTY = {}

-- The upstream's active settings, with Kong's defaults for what a stored entity lacks.
local function active_of(upstream)
    local hc = upstream.healthchecks
    return hc and hc.active or EMPTY
end

local function healthy_of(a) return a.healthy or EMPTY end
local function unhealthy_of(a) return a.unhealthy or EMPTY end

-- Whether an upstream's targets are probed at all.
function _M.enabled(upstream)
    local a = active_of(upstream)
    return (healthy_of(a).interval or 0) > 0 or (unhealthy_of(a).interval or 0) > 0
end

-- Whether active checks bring unhealthy targets back (they are probed, and successes
-- count): then a target marked unhealthy stays so until they do.
function _M.readmits(upstream)
    local a = active_of(upstream)
    return (unhealthy_of(a).interval or 0) > 0 and (healthy_of(a).successes or 0) > 0
end

-- Seconds an unhealthy mark lasts (0: until active successes clear it).
function _M.mark_ttl(upstream)
    if _M.readmits(upstream) then return 0 end
    local passive = upstream.healthchecks and upstream.healthchecks.passive
    return passive and passive.readmit_after or 10
end

local COUNTERS = { "hc_ok|", "hc_http|", "hc_tcp|", "hc_timeout|" }

local function clear_counters(key)
    for _, c in ipairs(COUNTERS) do state:delete(c .. key) end
end

-- Everything the checks keep about a target (its upstream id and target string).
local function forget(key)
    clear_counters(key)
    state:delete("hc_at|" .. key)
    state:delete("unhealthy|" .. key)
    state:delete("fails|" .. key)
end

--------------------------------------------------------------------------------
-- Outcomes.

-- Which failure counter and threshold an outcome is.
local FAILURES = {
    http_failure = { counter = "hc_http|", field = "http_failures" },
    tcp_failure = { counter = "hc_tcp|", field = "tcp_failures" },
    timeout = { counter = "hc_timeout|", field = "timeouts" },
}

-- Records a probe's outcome ("success", "http_failure", "tcp_failure", "timeout" or
-- "neutral": a status in neither list) for `target` (a ring entry) of `upstream`, as
-- Kong counts them: in a row, a success resetting the failures and a failure the
-- successes; a threshold of 0 never changes the state.
function _M.record(upstream, target, outcome, detail)
    local key = target.key
    local mark = "unhealthy|" .. key
    local healthy = not state:get(mark)
    local a = active_of(upstream)
    if outcome == "success" then
        if healthy then
            clear_counters(key)
            return
        end
        local threshold = healthy_of(a).successes or 0
        if threshold == 0 then return end
        for i = 2, #COUNTERS do state:delete(COUNTERS[i] .. key) end
        local n = state:incr("hc_ok|" .. key, 1, 0)
        if n and n >= threshold then
            state:delete(mark)
            clear_counters(key)
            ngx.log(ngx.WARN, "gateway: target ", target.target, " of upstream ", upstream.name,
                " is healthy after ", n, " active check successes in a row")
        end
        return
    end
    local failure = FAILURES[outcome]
    if not failure then return end
    state:delete("hc_ok|" .. key)
    if not healthy then return end
    local threshold = unhealthy_of(a)[failure.field] or 0
    if threshold == 0 then return end
    local n = state:incr(failure.counter .. key, 1, 0)
    if n and n >= threshold then
        state:set(mark, ngx.now(), _M.mark_ttl(upstream))
        clear_counters(key)
        ngx.log(ngx.WARN, "gateway: target ", target.target, " of upstream ", upstream.name,
            " is unhealthy after ", n, " active check ", (outcome:gsub("_", " ")), "s in a row",
            detail and (": " .. printable(tostring(detail))) or "")
    end
end

--------------------------------------------------------------------------------
-- The probe.

-- The status code of an HTTP status line ("HTTP/1.1 200 OK"), or nil.
function _M.status_of(line)
    if type(line) ~= "string" then return nil end
    local code = line:match("^HTTP/%d%.%d +(%d%d%d)[ \r]") or line:match("^HTTP/%d%.%d +(%d%d%d)$")
    return tonumber(code)
end

local function contains(list, v)
    for i = 1, #(list or EMPTY) do
        if list[i] == v then return true end
    end
    return false
end

-- The outcome of a status, by the lists of the upstream's active settings.
local function classify(a, status)
    if contains(healthy_of(a).http_statuses or { 200, 302 }, status) then return "success" end
    if contains(unhealthy_of(a).http_statuses or { 429, 404, 500, 501, 502, 503, 504, 505 }, status) then
        return "http_failure"
    end
    return "neutral"
end

-- The milliseconds left before `deadline` (at least 1), or nil when it has passed.
local function left(deadline)
    local ms = floor((deadline - ngx.now()) * 1000)
    if ms <= 0 then return nil end
    return ms
end

local function failed(err)
    return err == "timeout" and "timeout" or "tcp_failure", err
end

-- probe(target, active settings) -> outcome, detail. Connect, send and read share
-- one deadline of `timeout` seconds, however slowly the target answers.
local function probe(target, a)
    ngx.update_time()
    local deadline = ngx.now() + (a.timeout or 1)
    local sock = ngx.socket.tcp()
    local ms = left(deadline) or 1
    sock:settimeouts(ms, ms, ms)
    local ok, err = sock:connect(target.ip, target.port)
    if not ok then return failed(err) end
    local kind = a.type or "http"
    if kind == "tcp" then
        sock:close()
        return "success"
    end
    if kind == "https" then
        -- A handshake that fails (or a certificate refused) is a TCP failure, as in Kong.
        local host = target.target:match("^(.*):%d+$")
        local sni = a.https_sni
        if sni == nil and not host:find("^%d+%.%d+%.%d+%.%d+$") and not host:find(":", 1, true) then sni = host end
        ms = left(deadline)
        if not ms then sock:close(); return "timeout" end
        sock:settimeouts(ms, ms, ms)
        -- No session kept (false): nothing is resumed between probes.
        ok, err = sock:sslhandshake(false, sni, a.https_verify_certificate ~= false)
        if not ok then sock:close(); return failed(err) end
    end
    local req = "GET " .. (a.http_path or "/") .. " HTTP/1.0\r\nHost: " .. target.target
        .. "\r\nUser-Agent: " .. USER_AGENT .. "\r\nConnection: close\r\n\r\n"
    ms = left(deadline)
    if not ms then sock:close(); return "timeout" end
    sock:settimeouts(ms, ms, ms)
    ok, err = sock:send(req)
    if not ok then sock:close(); return failed(err) end
    local got = ""
    while true do
        ms = left(deadline)
        if not ms then sock:close(); return "timeout" end
        sock:settimeouts(ms, ms, ms)
        local data, rerr = sock:receiveany(MAX_STATUS_LINE - #got)
        if not data then
            sock:close()
            if rerr == "closed" and got ~= "" then break end
            return failed(rerr)
        end
        got = got .. data
        if got:find("\n", 1, true) or #got >= MAX_STATUS_LINE then break end
    end
    sock:close()
    local line = got:match("^([^\n]*)")
    local status = _M.status_of(line)
    if not status then return "http_failure", "not an HTTP status line" end
    local outcome = classify(a, status)
    return outcome, "status " .. status
end
_M.probe = probe

--------------------------------------------------------------------------------
-- The prober (worker 0).

-- The balancer's ring of an upstream in this worker (gateway.balancer requires this
-- module, so it is looked up when used).
local function ring_of(upstream_id)
    return require("gateway.balancer").ring(upstream_id)
end

-- Ring entries being probed (by key).
local inflight = {}
-- Upstream ids with a batch running, and how many run.
local busy, batches = {}, 0

-- Whether `target` (an entry of `ring`, a ring of `upstream_id`) is still in this
-- worker's configuration: the same ring (no change since), or one that has its key.
local function still_configured(upstream_id, ring, key)
    local now = ring_of(upstream_id)
    if now == ring then return true end
    if not now then return false end
    for _, t in ipairs(now.targets) do
        if t.key == key then return true end
    end
    return false
end

local function probe_one(upstream, ring, target)
    if ngx.worker.exiting() then return end
    local a = active_of(upstream)
    local ok, outcome, detail = pcall(probe, target, a)
    if not ok then
        ngx.log(ngx.ERR, "gateway: active check of ", target.target, " failed: ", printable(tostring(outcome)))
        return
    end
    -- A target deleted while it was probed leaves nothing behind.
    if still_configured(upstream.id, ring, target.key) then
        _M.record(upstream, target, outcome, detail)
    end
end

-- A timer: probes `list` (entries of `ring`, `upstream`'s), `concurrency` at a time.
local function run_batch(premature, upstream, ring, list)
    if not premature then
        local n = min(#list, active_of(upstream).concurrency or 10)
        local nxt = 1
        local function work()
            while nxt <= #list do
                local t = list[nxt]
                nxt = nxt + 1
                probe_one(upstream, ring, t)
                ngx.update_time()
                if still_configured(upstream.id, ring, t.key) then state:set("hc_at|" .. t.key, ngx.now()) end
                inflight[t.key] = nil
            end
        end
        local threads = {}
        for i = 1, n - 1 do threads[i] = ngx.thread.spawn(work) end
        local ok, err = pcall(work)
        if not ok then ngx.log(ngx.ERR, "gateway: active checks: ", printable(tostring(err))) end
        for i = 1, #threads do ngx.thread.wait(threads[i]) end
    end
    for _, t in ipairs(list) do inflight[t.key] = nil end
    busy[upstream.id] = nil
    batches = batches - 1
end

-- Seconds between probes of a target in its current state (0: not probed).
local function interval_of(a, key)
    if state:get("unhealthy|" .. key) then return unhealthy_of(a).interval or 0 end
    return healthy_of(a).interval or 0
end

-- Where the next tick starts in the list of upstreams: one further each tick, so
-- that with more than MAX_BATCHES upstreams due at once each gets its turn.
local start = 0

local function tick()
    local snap = db.snapshot()
    if not snap or ngx.worker.exiting() then return end
    local ups = snap.list.upstreams or EMPTY
    local count = #ups
    if count == 0 then return end
    start = (start + 1) % count
    local now = ngx.now()
    for i = 0, count - 1 do
        if batches >= MAX_BATCHES then break end
        local u = ups[(start + i) % count + 1]
        local ring = not busy[u.id] and _M.enabled(u) and ring_of(u.id)
        if ring then
            local a, due = active_of(u), nil
            for _, t in ipairs(ring.targets) do
                local every = interval_of(a, t.key)
                if every > 0 and not inflight[t.key] and now - (state:get("hc_at|" .. t.key) or 0) >= every then
                    due = due or {}
                    due[#due + 1] = t
                end
            end
            if due then
                local ok, err = ngx.timer.at(0, run_batch, u, ring, due)
                if ok then
                    busy[u.id] = true
                    batches = batches + 1
                    for _, t in ipairs(due) do inflight[t.key] = true end
                else
                    ngx.log(ngx.ERR, "gateway: cannot start active checks of upstream ", u.name, ": ", err)
                end
            end
        end
    end
end

-- On every configuration (worker 0): marks made under settings that no longer hold
-- are brought in line (a mark without expiry gets one when active checks stop
-- re-admitting; with no checks at all, none is left).
local function reconcile(snap)
    for _, u in ipairs(snap.list.upstreams or EMPTY) do
        local ring = ring_of(u.id)
        local ttl = _M.mark_ttl(u)
        local passive = u.healthchecks and u.healthchecks.passive
        local off = not _M.enabled(u) and ((passive and passive.unhealthy and passive.unhealthy.failures) or 3) == 0
        for _, t in ipairs(ring and ring.targets or EMPTY) do
            local mark = "unhealthy|" .. t.key
            if off then
                state:delete(mark)
            elseif ttl > 0 and state:ttl(mark) == 0 then
                state:expire(mark, ttl)
            end
        end
    end
end

-- What a change removed: a deleted (or renamed) target's health is forgotten, so the
-- same target added again starts healthy, as in Kong. Runs in the worker that made
-- the change.
local function removed(gone)
    for _, g in ipairs(gone) do
        local upstream = g.refs and g.refs.upstream
        if g.kind == "targets" and upstream and upstream.id and type(g.row.target) == "string" then
            local key = upstream.id .. "|" .. g.row.target
            forget(key)
            -- A target named by a host name has health per address (gateway.balancer):
            -- the addresses its name last had.
            local entry = dns.get((require("gateway.balancer").parse_target(g.row.target)))
            for _, ip in ipairs(entry and entry.addresses or EMPTY) do forget(key .. "|" .. ip) end
        end
    end
end

function _M.init_worker()
    db.on_removed(removed)
    if ngx.worker.id() ~= 0 then return end
    db.on_change(reconcile)
    local ok, err = ngx.timer.every(TICK, function(premature)
        if premature then return end
        local fine, terr = pcall(tick)
        if not fine then ngx.log(ngx.ERR, "gateway: active checks: ", printable(tostring(terr))) end
    end)
    if not ok then ngx.log(ngx.ERR, "gateway: cannot start the active health checks: ", err) end
end

return _M
