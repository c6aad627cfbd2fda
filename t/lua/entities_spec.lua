-- gateway.entities: Kong's entity shapes (defaults, shorthands, checks) and the
-- relations derived from the definitions.
local entities = require "gateway.entities"

local function valid(kind, input)
    local row, errs = entities.validate(kind, input)
    assert(row, "refused: " .. require("dkjson").encode(errs or {}))
    return row
end

describe("gateway.entities", function()
    it("gives a service Kong's defaults, an id and a creation time", function()
        local s = valid("services", { host = "example.com" })
        assert.equal("http", s.protocol)
        assert.equal(80, s.port)
        assert.equal(5, s.retries)
        assert.equal(60000, s.connect_timeout)
        assert.truthy(require("gateway.schema").is_uuid(s.id))
        assert.is_number(s.created_at)
    end)

    it("expands a service's url into protocol, host, port and path", function()
        local s = valid("services", { name = "web", url = "HTTPS://api.test/v1" })
        assert.same({ "https", "api.test", 443, "/v1" }, { s.protocol, s.host, s.port, s.path })
        s = valid("services", { url = "http://127.0.0.1:8081" })
        assert.same({ "127.0.0.1", 8081 }, { s.host, s.port })
        assert.is_nil(s.path)
        local _, errs = entities.validate("services", { url = "ftp:/x" })
        assert.same({ url = "invalid url: ftp:/x", host = "required field missing" }, errs)
    end)

    it("names a service's bad host", function()
        local _, errs = entities.validate("services", { host = "a b" })
        assert.same({ host = "invalid hostname: a b" }, errs)
    end)

    it("takes the TLS fields it honours and names those it cannot", function()
        local s = valid("services", { url = "https://localhost:8443", tls_verify = false })
        assert.equal(false, s.tls_verify)
        valid("services", { url = "https://api.test", ca_certificates = {} })
        valid("services", { url = "https://127.0.0.1", tls_verify = false })
        local function refused(input)
            local _, errs = entities.validate("services", input)
            assert.is_table(errs)
            return errs
        end
        assert.matches("not supported", refused({ url = "https://api.test", tls_verify_depth = 3 }).tls_verify_depth)
        assert.matches("not supported", refused({ url = "https://api.test",
            ca_certificates = { "4e3ad2e4-0bc4-4638-8e34-c84a417ba39b" } }).ca_certificates)
        assert.matches("only for protocol 'https'", refused({ url = "http://api.test", tls_verify = true }).tls_verify)
        assert.matches("cannot be verified", refused({ url = "https://127.0.0.1" }).host)
        assert.matches("cannot be verified", refused({ url = "https://127.0.0.1", tls_verify = true }).host)
    end)

    it("needs a route to set methods, hosts or paths", function()
        local _, errs = entities.validate("routes", { name = "r" })
        assert.same({ ["@entity"] = {
            "must set one of 'methods', 'hosts', 'paths' when 'protocols' is 'http' or 'https'" } }, errs)
        local r = valid("routes", { paths = { "/a" } })
        assert.same({ "http", "https" }, r.protocols)
        assert.is_true(r.strip_path)
        assert.is_false(r.preserve_host)
    end)

    it("refuses route paths outside RFC 3986 and escaped control characters", function()
        local _, errs = entities.validate("routes", { paths = { "/a b" } })
        assert.truthy(errs.paths[1]:find("characters outside of the reserved list", 1, true))
        _, errs = entities.validate("routes", { paths = { "/a%0d%0aX" } })
        assert.truthy(errs.paths[1]:find("control characters are not allowed, even escaped", 1, true))
        _, errs = entities.validate("routes", { paths = { "/a%zz" } })
        assert.truthy(errs.paths[1]:find("a % must start an escape", 1, true))
    end)

    it("allows one wildcard, leftmost or rightmost, in route hosts", function()
        valid("routes", { hosts = { "*.example.com", "api.*" } })
        local _, errs = entities.validate("routes", { hosts = { "a.*.com" } })
        assert.same({ hosts = { "invalid wildcard: must be placed at leftmost or rightmost label" } }, errs)
    end)

    it("caps the lists an Admin call can grow", function()
        local paths = {}
        for i = 1, entities.LIMITS.paths + 1 do paths[i] = "/" .. i end
        local _, errs = entities.validate("routes", { paths = paths })
        assert.same({ paths = "length must be at most " .. entities.LIMITS.paths }, errs)
    end)

    it("needs a consumer's username or custom_id", function()
        local _, errs = entities.validate("consumers", {})
        assert.same({ ["@entity"] = {
            "at least one of these fields must be non-empty: 'custom_id', 'username'" } }, errs)
        valid("consumers", { custom_id = "c1" })
    end)

    it("normalizes targets to host:port, 8000 by default", function()
        local up = { id = "0b9c1c6e-0c3c-4c4e-8f3a-3f3f3f3f3f3f" }
        assert.equal("10.0.0.1:8000", valid("targets", { upstream = up, target = "10.0.0.1" }).target)
        assert.equal("[::1]:81", valid("targets", { upstream = up, target = "[::1]:81" }).target)
        local _, errs = entities.validate("targets", { upstream = up, target = "a:70000" })
        assert.same({ target = "Invalid target ('a:70000'); port must be between 1 and 65535" }, errs)
    end)

    it("gives a key-auth credential a random key", function()
        local consumer = { id = "0b9c1c6e-0c3c-4c4e-8f3a-3f3f3f3f3f3f" }
        local a = valid("keyauth_credentials", { consumer = consumer })
        local b = valid("keyauth_credentials", { consumer = consumer })
        assert.truthy(a.key:find("^%x+$"))
        assert.are_not.equal(a.key, b.key)
    end)

    it("refuses an unknown plugin, listing the available ones", function()
        local _, errs = entities.validate("plugins", { name = "nope" })
        assert.same({ name = "plugin 'nope' not enabled; available plugins: ip-restriction, key-auth, prometheus" },
            errs)
    end)

    it("checks a plugin's config against its schema and the scopes it refuses", function()
        local p = valid("plugins", { name = "key-auth" })
        assert.same({ "apikey" }, p.config.key_names)
        assert.is_true(p.enabled)
        local _, errs = entities.validate("plugins", { name = "key-auth", config = { key_in_body = true },
            consumer = { id = "0b9c1c6e-0c3c-4c4e-8f3a-3f3f3f3f3f3f" } })
        assert.same({ config = { key_in_body = "unknown field" } }, errs)
        _, errs = entities.validate("plugins", { name = "key-auth",
            consumer = { id = "0b9c1c6e-0c3c-4c4e-8f3a-3f3f3f3f3f3f" } })
        assert.same({ consumer = "value must be null" }, errs)
    end)
end)

describe("gateway.entities relations", function()
    local defs = entities.defs

    it("lists kinds in load order: every reference to an earlier kind", function()
        local seen = {}
        for _, kind in ipairs(entities.kinds) do
            for _, fk in ipairs(defs[kind].foreign) do assert.is_true(seen[fk.reference], kind) end
            seen[kind] = true
        end
        assert.equal(7, #entities.kinds)
    end)

    it("derives foreign keys with what deleting the parent does", function()
        assert.same({ { field = "service", reference = "services", on_delete = "restrict" } }, defs.routes.foreign)
        assert.same({ { field = "consumer", reference = "consumers", on_delete = "cascade" } },
            defs.keyauth_credentials.foreign)
        for _, fk in ipairs(defs.plugins.foreign) do assert.equal("cascade", fk.on_delete) end
    end)

    it("derives each kind's children from the foreign keys that reference it", function()
        assert.same({ { kind = "routes", field = "service" }, { kind = "plugins", field = "service" } },
            defs.services.children)
        assert.same({ { kind = "keyauth_credentials", field = "consumer" }, { kind = "plugins", field = "consumer" } },
            defs.consumers.children)
        assert.same({ { kind = "targets", field = "upstream" } }, defs.upstreams.children)
        assert.same({}, defs.plugins.children)
    end)
end)
