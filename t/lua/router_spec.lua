-- gateway.router: which route a request goes to (longest prefix, then host, then
-- methods, then creation order).
local router = require "gateway.router"

-- A router over routes given in creation order (each { name, paths, hosts, methods }).
local function build(routes)
    return router.build({ list = { routes = routes } })
end

local function name_of(r, method, host, path)
    local route, prefix = r:match(method, host, path)
    return route and route.name, prefix
end

describe("gateway.router", function()
    it("takes the longest matching prefix, whatever the creation order", function()
        local r = build({
            { name = "root", paths = { "/" } },
            { name = "api", paths = { "/api" } },
            { name = "v1", paths = { "/api/v1" } },
        })
        assert.same({ "v1", "/api/v1" }, { name_of(r, "GET", nil, "/api/v1/users") })
        assert.same({ "api", "/api" }, { name_of(r, "GET", nil, "/api/v2") })
        assert.same({ "root", "/" }, { name_of(r, "GET", nil, "/other") })
    end)

    it("matches prefixes byte for byte, not on segment boundaries", function()
        local r = build({ { name = "api", paths = { "/api" } } })
        assert.equal("api", name_of(r, "GET", nil, "/apix"))
        assert.is_nil(name_of(r, "GET", nil, "/ap"))
    end)

    it("routes without paths match every path", function()
        local r = build({ { name = "any", hosts = { "a.test" } } })
        assert.equal("any", name_of(r, "GET", "a.test", "/whatever"))
    end)

    it("prefers routes that name the host: exact, then wildcard, then any host", function()
        local r = build({
            { name = "any", paths = { "/" } },
            { name = "wild", paths = { "/" }, hosts = { "*.example.com" } },
            { name = "exact", paths = { "/" }, hosts = { "api.example.com" } },
        })
        assert.equal("exact", name_of(r, "GET", "api.example.com", "/"))
        assert.equal("wild", name_of(r, "GET", "www.example.com", "/"))
        assert.equal("wild", name_of(r, "GET", "a.b.example.com", "/"))
        assert.equal("any", name_of(r, "GET", "example.org", "/"))
    end)

    it("a longer prefix wins over a better host", function()
        local r = build({
            { name = "host", paths = { "/" }, hosts = { "a.test" } },
            { name = "path", paths = { "/deep" } },
        })
        assert.equal("path", name_of(r, "GET", "a.test", "/deep/x"))
    end)

    it("matches hosts case-insensitively and without the port", function()
        local r = build({ { name = "h", paths = { "/" }, hosts = { "A.Test" } } })
        assert.equal("h", name_of(r, "GET", "a.TEST:8000", "/"))
        -- As nginx's $host: an empty port and the root's trailing dot go too.
        assert.equal("h", name_of(r, "GET", "a.test:", "/"))
        assert.equal("h", name_of(r, "GET", "a.test.", "/"))
        assert.equal("h", name_of(r, "GET", "A.TEST.:80", "/"))
        assert.is_nil(name_of(r, "GET", "a.test..", "/"))
        -- A route host written with the trailing dot means the same host.
        local dotted = build({ { name = "d", paths = { "/" }, hosts = { "a.test." } } })
        assert.equal("d", name_of(dotted, "GET", "a.test", "/"))
    end)

    it("matches rightmost wildcards", function()
        local r = build({ { name = "w", paths = { "/" }, hosts = { "api.*" } } })
        assert.equal("w", name_of(r, "GET", "api.example.com", "/"))
        assert.is_nil(name_of(r, "GET", "www.api.com", "/"))
    end)

    it("puts routes that name methods first, then keeps creation order", function()
        local r = build({
            { name = "first", paths = { "/" } },
            { name = "second", paths = { "/" } },
            { name = "posts", paths = { "/" }, methods = { "post" } },
        })
        assert.equal("posts", name_of(r, "POST", nil, "/"))
        assert.equal("first", name_of(r, "GET", nil, "/"))
    end)

    it("skips a route whose methods do not allow the request's", function()
        local r = build({ { name = "get", paths = { "/" }, methods = { "GET" } } })
        assert.is_nil(name_of(r, "DELETE", nil, "/"))
    end)

    it("matches stored escaped paths against the decoded path", function()
        local r = build({ { name = "space", paths = { "/a%20b" } } })
        assert.same({ "space", "/a b" }, { name_of(r, "GET", nil, "/a b/c") })
        assert.equal("/a b", router.unescape("/a%20b"))
        assert.equal("/plain", router.unescape("/plain"))
    end)

    it("finds nothing in an empty configuration", function()
        assert.is_nil(build({}):match("GET", "a.test", "/"))
    end)
end)
