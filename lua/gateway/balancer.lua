-- Upstreams: weighted round-robin over targets, with passive health checks.
--
-- A target whose responses fail `healthchecks.passive.unhealthy.failures` times in a
-- row (connection errors, timeouts, or a status in `http_statuses`) is marked unhealthy
-- in the shared dict for `readmit_after` seconds and skipped meanwhile; the entry's
-- expiry re-admits it. A success resets its failure count. Active checks
-- (gateway.healthcheck) mark the same entry; when they probe unhealthy targets, the
-- mark lasts until their successes clear it.

local healthcheck = require "gateway.healthcheck"

local state = ngx.shared.gateway_state
local tostring = tostring

local _M = {}

-- upstream id -> { upstream, targets = { { target, ip, port, weight, current } } }
local rings = {}

local function parse_target(t)
    local host, port = t:match("^%[?([^%]]+)%]?:(%d+)$")
    if not host then host, port = t, 8000 end
    if host == "localhost" then host = "127.0.0.1" end
    return host, tonumber(port)
end

function _M.build(snapshot)
    local new = {}
    for _, u in ipairs(snapshot.list.upstreams or {}) do
        new[u.id] = { upstream = u, targets = {} }
    end
    for _, t in ipairs(snapshot.list.targets or {}) do
        local ring = t.upstream and new[t.upstream.id]
        if ring and (t.weight or 100) > 0 then
            local ip, port = parse_target(t.target)
            ring.targets[#ring.targets + 1] = {
                target = t.target, ip = ip, port = port, weight = t.weight or 100, current = 0,
                key = ring.upstream.id .. "|" .. t.target,
            }
        end
    end
    rings = new
end

-- The passive checks' `unhealthy` settings (how long a mark lasts: healthcheck.mark_ttl).
local function passive(upstream)
    local hc = upstream.healthchecks and upstream.healthchecks.passive or {}
    return hc.unhealthy or {}
end

-- An upstream's ring in this worker: { upstream, targets = { entries } }, or nil.
function _M.ring(upstream_id)
    return rings[upstream_id]
end

function _M.is_healthy(target)
    return not state:get("unhealthy|" .. target.key)
end

-- Smooth weighted round-robin (as nginx does) over the healthy targets.
function _M.pick(upstream_id)
    local ring = rings[upstream_id]
    if not ring then return nil, "upstream has no targets" end
    local best, total = nil, 0
    for _, t in ipairs(ring.targets) do
        if _M.is_healthy(t) then
            t.current = t.current + t.weight
            total = total + t.weight
            if not best or t.current > best.current then best = t end
        end
    end
    if not best then return nil, "failure to get a peer from the ring-balancer" end
    best.current = best.current - total
    return best
end

-- Passive check: a response from `target` succeeded or failed.
function _M.report(upstream, target, ok)
    local unhealthy = passive(upstream)
    local threshold = unhealthy.failures or 3
    if threshold == 0 then return end
    local fails_key = "fails|" .. target.key
    if ok then
        state:delete(fails_key)
        return
    end
    local n = state:incr(fails_key, 1, 0)
    if n and n >= threshold then
        local ttl = healthcheck.mark_ttl(upstream)
        state:set("unhealthy|" .. target.key, ngx.now(), ttl)
        state:delete(fails_key)
        ngx.log(ngx.WARN, "gateway: target ", target.target, " of upstream ", upstream.name,
            " is unhealthy after ", n, " failures in a row; ",
            ttl > 0 and ("re-admitted in " .. ttl .. " s")
                or healthcheck.readmits(upstream) and "re-admitted by active checks"
                or "not re-admitted (readmit_after is 0)")
    end
end

-- Whether a final upstream status counts as a failure for `upstream`.
function _M.failed_status(upstream, status)
    local unhealthy = passive(upstream)
    for _, s in ipairs(unhealthy.http_statuses or { 500, 502, 503, 504 }) do
        if s == status then return true end
    end
    return false
end

-- Every target with its state, for the upstream health gauges.
function _M.targets(snapshot)
    local out = {}
    for _, u in ipairs(snapshot.list.upstreams or {}) do
        local ring = rings[u.id]
        local unhealthy = passive(u)
        for _, t in ipairs(ring and ring.targets or {}) do
            local st
            if (unhealthy.failures or 3) == 0 and not healthcheck.enabled(u) then
                st = "healthchecks_off"
            elseif _M.is_healthy(t) then
                st = "healthy"
            else
                st = "unhealthy"
            end
            out[#out + 1] = { upstream = u.name, target = t.target, address = t.ip .. ":" .. tostring(t.port),
                              state = st }
        end
    end
    return out
end

return _M
