-- Upstreams: weighted round-robin over targets, with passive health checks.
--
-- A target whose responses fail `healthchecks.passive.unhealthy.failures` times in a
-- row (connection errors, timeouts, or a status in `http_statuses`) is marked unhealthy
-- in the shared dict for `readmit_after` seconds and skipped meanwhile; the entry's
-- expiry re-admits it. A success resets its failure count. Active checks
-- (gateway.healthcheck) mark the same entry; when they probe unhealthy targets, the
-- mark lasts until their successes clear it.
--
-- A target named by a host name is one peer per address of its name (gateway.dns),
-- each with the target's weight and health of its own, rebuilt when the name's
-- addresses change; a name with no address (yet, or any more) is `dns_error`.

local dns = require "gateway.dns"
local healthcheck = require "gateway.healthcheck"

local state = ngx.shared.gateway_state
local tostring = tostring

local _M = {}

-- upstream id -> { upstream, targets = { { target, ip, port, weight, current } },
--                  unresolved = { { target, entry } } }
local rings = {}
local built_from

-- "host:port" (as entities.lua normalizes targets) -> host, port.
local function parse_target(t)
    local host, port = t:match("^%[?([^%]]+)%]?:(%d+)$")
    if not host then host, port = t, 8000 end
    return host, tonumber(port)
end
_M.parse_target = parse_target

-- The hosts of the targets `build` uses, for gateway.dns.track.
function _M.hosts(snapshot, out)
    for _, t in ipairs(snapshot.list.targets or {}) do
        if (t.weight or 100) > 0 then out[#out + 1] = (parse_target(t.target)) end
    end
    return out
end

function _M.build(snapshot)
    built_from = snapshot
    local new = {}
    for _, u in ipairs(snapshot.list.upstreams or {}) do
        new[u.id] = { upstream = u, targets = {}, unresolved = {} }
    end
    for _, t in ipairs(snapshot.list.targets or {}) do
        local ring = t.upstream and new[t.upstream.id]
        if ring and (t.weight or 100) > 0 then
            local host, port = parse_target(t.target)
            local entry = dns.get(host)
            local addresses = entry and entry.addresses
            if not addresses then
                ring.unresolved[#ring.unresolved + 1] = { target = t.target, entry = entry }
            end
            local key = ring.upstream.id .. "|" .. t.target
            for _, ip in ipairs(addresses or {}) do
                ring.targets[#ring.targets + 1] = {
                    target = t.target, ip = ip, port = port, weight = t.weight or 100, current = 0,
                    -- Health per address of a name; per target for an address literal.
                    key = entry.state == "static" and key or (key .. "|" .. ip),
                }
            end
        end
    end
    rings = new
end

-- A name's addresses changed: the rings of the same configuration, rebuilt.
dns.on_change(function()
    if built_from then _M.build(built_from) end
end)

-- Waits for the first answer of the names of an upstream's targets still pending.
-- Returns whether there were any.
function _M.wait_pending(upstream_id)
    local ring = rings[upstream_id]
    local waited = false
    for _, u in ipairs(ring and ring.unresolved or {}) do
        if u.entry and u.entry.state == "pending" then
            dns.wait(u.entry)
            waited = true
        end
    end
    return waited
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
    if not best then
        if #ring.targets == 0 and #ring.unresolved > 0 then return nil, "name resolution failed" end
        return nil, "failure to get a peer from the ring-balancer"
    end
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
        -- Kong's report of a target without addresses: no address, `dns_error`.
        for _, t in ipairs(ring and ring.unresolved or {}) do
            out[#out + 1] = { upstream = u.name, target = t.target, address = "", state = "dns_error" }
        end
    end
    return out
end

return _M
