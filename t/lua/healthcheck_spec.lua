-- gateway.healthcheck: the active checks' settings (gateway.entities), the status line
-- a probe reads, and how outcomes move a target between healthy and unhealthy. The
-- probes themselves (cosockets, one worker) run against real nginx in t/healthcheck.rs.
local entities = require "gateway.entities"

-- A lua_shared_dict's operations the checks use, in a table (no expiry clock: ttl is
-- only recorded).
local function fake_dict()
    local data, ttls = {}, {}
    return {
        data = data, ttls = ttls,
        get = function(_, k) return data[k] end,
        set = function(_, k, v, ttl) data[k], ttls[k] = v, ttl or 0; return true end,
        delete = function(_, k) data[k], ttls[k] = nil, nil end,
        incr = function(_, k, by, init)
            data[k] = (data[k] or init) + by
            ttls[k] = ttls[k] or 0
            return data[k]
        end,
        ttl = function(_, k) if data[k] == nil then return nil, "not found" end return ttls[k] end,
        expire = function(_, k, ttl) ttls[k] = ttl; return true end,
    }
end

local dict = fake_dict()
rawset(ngx, "shared", { gateway_state = dict })
rawset(ngx, "WARN", 5)
rawset(ngx, "now", function() return os.time() end)
package.loaded["gateway.db"] = package.loaded["gateway.db"] or {}
local hc = require "gateway.healthcheck"

local function upstream(active, passive)
    local row, errs = entities.validate("upstreams", {
        name = "pool", healthchecks = { active = active, passive = passive },
    })
    assert(row, require("dkjson").encode(errs or {}))
    row.id = "u1"
    return row
end

local function errors_of(active)
    local _, errs = entities.validate("upstreams", { name = "pool", healthchecks = { active = active } })
    return errs and errs.healthchecks and errs.healthchecks.active
end

describe("gateway.healthcheck", function()
    it("takes Kong's fields with Kong's defaults: no probes until an interval is set", function()
        local u = upstream(nil)
        local a = u.healthchecks.active
        assert.same({ "http", "/", 1, 10 }, { a.type, a.http_path, a.timeout, a.concurrency })
        assert.same({ 0, 0 }, { a.healthy.interval, a.healthy.successes })
        assert.same({ 200, 302 }, { a.healthy.http_statuses[1], a.healthy.http_statuses[2] })
        assert.same({ 0, 0, 0, 0 }, { a.unhealthy.interval, a.unhealthy.http_failures,
                                      a.unhealthy.tcp_failures, a.unhealthy.timeouts })
        assert.equal(8, #a.unhealthy.http_statuses)
        assert.is_false(hc.enabled(u))
        assert.is_true(hc.enabled(upstream({ unhealthy = { interval = 0.5 } })))
        assert.equal(10, hc.mark_ttl(u))
    end)

    it("refuses a path that could break the probe's request line, naming the field", function()
        for _, bad in ipairs({ "/a\r\nX-Evil: 1", "/a\n", "/a\r", "/a b", "/a?b=1", "/%0d%0a", "/%0A",
                               "/a\0", "a", "", "/\xFF", "/a#b", "/" .. string.rep("a", 1024) }) do
            local errs = errors_of({ http_path = bad })
            assert.is_string(errs and errs.http_path, "accepted: " .. bad)
            assert.is_nil(errs.http_path:find("[\r\n%z]"), "the message echoes control bytes")
        end
        assert.is_nil(errors_of({ http_path = "/status/h%C3%A4lth;v=1" }))
    end)

    it("bounds every number and list", function()
        local cases = {
            { { timeout = 0 }, "timeout" }, { { timeout = 61 }, "timeout" },
            { { concurrency = 0 }, "concurrency" }, { { concurrency = 257 }, "concurrency" },
            { { type = "udp" }, "type" }, { { https_sni = "a\r\n" }, "https_sni" },
            { { https_verify_certificate = "yes" }, "https_verify_certificate" },
        }
        for _, c in ipairs(cases) do
            local errs = errors_of(c[1])
            assert.is_string(errs and errs[c[2]], c[2])
        end
        for _, state in ipairs({ "healthy", "unhealthy" }) do
            for _, v in ipairs({ 0.05, -1, 65536, "1s" }) do
                local errs = errors_of({ [state] = { interval = v } })
                assert.is_string(errs and errs[state] and errs[state].interval, state .. " " .. tostring(v))
            end
            local many = {}
            for i = 1, 33 do many[i] = 100 + i end
            local errs = errors_of({ [state] = { http_statuses = many } })
            assert.equal("length must be at most 32", errs[state].http_statuses)
            errs = errors_of({ [state] = { http_statuses = { 99 } } })
            assert.is_table(errs[state].http_statuses)
        end
        for _, f in ipairs({ "http_failures", "tcp_failures", "timeouts" }) do
            local errs = errors_of({ unhealthy = { [f] = 256 } })
            assert.is_string(errs.unhealthy[f])
        end
        assert.is_string(errors_of({ healthy = { successes = -1 } }).healthy.successes)
        assert.equal("unknown field", errors_of({ headers = { x = "y" } }).headers)
    end)

    it("reads a status code only from a well-formed status line", function()
        assert.equal(200, hc.status_of("HTTP/1.1 200 OK\r"))
        assert.equal(503, hc.status_of("HTTP/1.0 503"))
        assert.equal(302, hc.status_of("HTTP/1.1 302 \r"))
        for _, bad in ipairs({ "", "HTTP/1.1", "HTTP/1.1 20", "HTTP/1.1 2000 OK", "http/1.1 200 OK",
                               " HTTP/1.1 200 OK", "HTTP/1.1 200OK", "HTTP/11 200 OK", "SSH-2.0-OpenSSH" }) do
            assert.is_nil(hc.status_of(bad), bad)
        end
        assert.is_nil(hc.status_of(nil))
        -- Whatever a target sends: a code from 100 to 999 or nothing, never an error.
        math.randomseed(27)
        for _ = 1, 20000 do
            local n = math.random(0, 24)
            local b = {}
            for i = 1, n do b[i] = string.char(math.random(0, 255)) end
            local line = (math.random() < 0.5 and "HTTP/1.1 " or "") .. table.concat(b)
            local s = hc.status_of(line)
            assert.is_true(s == nil or (s >= 100 and s <= 999), line)
        end
    end)

    it("marks a target unhealthy after its failures in a row and healthy after its successes", function()
        local u = upstream({ healthy = { interval = 1, successes = 2 },
                             unhealthy = { interval = 1, http_failures = 3, tcp_failures = 2, timeouts = 1 } })
        local t = { key = "u1|10.0.0.1:80", target = "10.0.0.1:80" }
        local mark = "unhealthy|" .. t.key
        hc.record(u, t, "http_failure")
        hc.record(u, t, "http_failure")
        hc.record(u, t, "success") -- resets the failures
        hc.record(u, t, "http_failure")
        hc.record(u, t, "http_failure")
        assert.is_nil(dict.data[mark])
        hc.record(u, t, "neutral")  -- a status in neither list counts for nothing
        hc.record(u, t, "http_failure")
        assert.is_number(dict.data[mark])
        -- Active checks re-admit: the mark does not expire.
        assert.equal(0, dict.ttls[mark])
        hc.record(u, t, "success")
        hc.record(u, t, "timeout") -- resets the successes
        hc.record(u, t, "success")
        assert.is_number(dict.data[mark])
        hc.record(u, t, "success")
        assert.is_nil(dict.data[mark])
        hc.record(u, t, "timeout")
        assert.is_number(dict.data[mark])
        for k in pairs(dict.data) do
            assert.is_true(k == mark, "counter left behind: " .. k)
        end
    end)

    it("never changes a state whose threshold is 0, and lets marks expire when nothing re-admits", function()
        local u = upstream({ healthy = { interval = 1 } }, { readmit_after = 7 })
        local t = { key = "u1|10.0.0.2:80", target = "10.0.0.2:80" }
        for _ = 1, 300 do hc.record(u, t, "tcp_failure") end
        assert.is_nil(dict.data["unhealthy|" .. t.key])
        assert.equal(7, hc.mark_ttl(u))
        u = upstream({ healthy = { interval = 1 }, unhealthy = { tcp_failures = 1 } }, { readmit_after = 7 })
        hc.record(u, t, "tcp_failure")
        assert.equal(7, dict.ttls["unhealthy|" .. t.key])
    end)
end)
