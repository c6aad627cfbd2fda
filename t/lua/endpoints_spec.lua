-- gateway.endpoints: the Admin API's entity routes, derived from the definitions.
local endpoints = require "gateway.endpoints"

local function resolve(path)
    local segs = {}
    for seg in path:gmatch("[^/]+") do segs[#segs + 1] = seg end
    return endpoints.resolve(segs)
end

describe("gateway.endpoints", function()
    it("has Kong's top-level collections, and no /targets", function()
        assert.same({
            services = "services", routes = "routes", consumers = "consumers", plugins = "plugins",
            upstreams = "upstreams", ["key-auths"] = "keyauth_credentials",
        }, endpoints.collections)
    end)

    it("nests every kind under the kinds it references", function()
        local nested = {}
        for parent, under in pairs(endpoints.nested) do
            for path, child in pairs(under) do
                nested[#nested + 1] = parent .. "/" .. path .. " -> " .. child.kind .. "." .. child.field
            end
        end
        table.sort(nested)
        assert.same({
            "consumers/key-auth -> keyauth_credentials.consumer",
            "consumers/plugins -> plugins.consumer",
            "routes/plugins -> plugins.route",
            "services/plugins -> plugins.service",
            "services/routes -> routes.service",
            "upstreams/targets -> targets.upstream",
        }, nested)
    end)

    it("resolves collections and entities", function()
        assert.same({ kind = "services" }, resolve("/services"))
        assert.same({ kind = "keyauth_credentials", key = "k1" }, resolve("/key-auths/k1"))
    end)

    it("resolves a parent's children, scoped by the referencing field", function()
        assert.same({ kind = "routes", parent = { kind = "services", key = "web", field = "service" } },
            resolve("/services/web/routes"))
        assert.same({ kind = "targets", key = "10.0.0.1:80",
                      parent = { kind = "upstreams", key = "up", field = "upstream" } },
            resolve("/upstreams/up/targets/10.0.0.1:80"))
        assert.same({ kind = "keyauth_credentials", parent = { kind = "consumers", key = "c", field = "consumer" } },
            resolve("/consumers/c/key-auth"))
    end)

    it("knows no other path", function()
        assert.is_nil(resolve("/targets"))
        assert.is_nil(resolve("/keyauth_credentials"))
        assert.is_nil(resolve("/services/web/targets"))
        assert.is_nil(resolve("/consumers/c/key-auths"))
        assert.is_nil(resolve("/plugins/p/routes"))
        assert.is_nil(resolve("/services/web/routes/r/plugins"))
    end)

    it("refuses a definition that puts two kinds at one path", function()
        local entities = require "gateway.entities"
        local upstreams = entities.defs.upstreams
        upstreams.path = "services"
        finally(function()
            upstreams.path = "upstreams"
            package.loaded["gateway.endpoints"] = endpoints
        end)
        package.loaded["gateway.endpoints"] = nil
        local ok, err = pcall(require, "gateway.endpoints")
        assert.is_false(ok)
        assert.equal("gateway.endpoints: /services is both services and upstreams", err)
    end)
end)
