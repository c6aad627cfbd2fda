-- gateway.openapi: the Admin API's description, derived from the entity definitions.
local openapi = require "gateway.openapi"
local entities = require "gateway.entities"
local endpoints = require "gateway.endpoints"

local function resolve(path)
    local segs = {}
    for seg in path:gmatch("[^/]+") do segs[#segs + 1] = seg end
    return endpoints.resolve(segs)
end

describe("gateway.openapi", function()
    it("matches the copy in docs/admin-openapi.json (else: make admin-openapi)", function()
        local f = assert(io.open("docs/admin-openapi.json", "rb"))
        local kept = f:read("*a")
        f:close()
        -- Not assert.equals: a 270 kB diff says less than where the first difference is.
        if kept ~= openapi.json() then
            local mine, i = openapi.json(), 1
            while mine:byte(i) == kept:byte(i) do i = i + 1 end
            error(("docs/admin-openapi.json is stale from byte %d (%q): run make admin-openapi")
                :format(i, kept:sub(i, i + 60)), 0)
        end
    end)

    it("describes every collection, entity and nested path the Admin API routes, and no other", function()
        local doc, expected = openapi.document(), {}
        for path, kind in pairs(endpoints.collections) do
            local key = entities.defs[kind].endpoint_key
            expected["/" .. path] = true
            expected["/" .. path .. "/{" .. (key and "id_or_" .. key or "id") .. "}"] = true
        end
        for parent, under in pairs(endpoints.nested) do
            for npath, child in pairs(under) do
                local key = entities.defs[child.kind].endpoint_key
                local base = "/" .. entities.defs[parent].path .. "/{" .. child.field .. "}/" .. npath
                expected[base] = true
                expected[base .. "/{" .. (key and "id_or_" .. key or "id") .. "}"] = true
            end
        end
        for _, node in ipairs({ "/", "/metrics", "/status", "/openapi.json", "/plugins/enabled",
            "/schemas/plugins/{name}" }) do
            expected[node] = true
        end
        local described = {}
        for path in pairs(doc.paths) do
            described[path] = true
            if not expected[path] then
                -- Every described entity path resolves to the kind it says.
                assert.is_not_nil(resolve(path:gsub("{[^}]+}", "x")), path)
            end
        end
        assert.same(expected, described)
    end)

    it("describes every field of every entity, in answers and in bodies", function()
        local schemas = openapi.document().components.schemas
        for _, kind in ipairs(entities.kinds) do
            local name = kind:gsub("^%l", string.upper):gsub("[_%-](%l)", string.upper)
            for _, f in ipairs(entities.defs[kind].schema.fields) do
                local field = next(f)
                assert.is_table(schemas[name].properties[field], name .. "." .. field)
                assert.is_table(schemas[name .. "Create"].properties[field], name .. "Create." .. field)
                assert.is_table(schemas[name .. "Update"].properties[field], name .. "Update." .. field)
            end
            -- An answer shows every field, null when unset.
            assert.equals(#entities.defs[kind].schema.fields, #schemas[name].required)
        end
        assert.same({ "host" }, schemas.ServicesCreate.anyOf[1].required)
        assert.same({ "url" }, schemas.ServicesCreate.anyOf[2].required)
    end)

    it("describes each plugin's config by the plugin's name", function()
        local doc = openapi.document()
        local plugins = doc.components.schemas.Plugins
        local names = {}
        for i, branch in ipairs(plugins.oneOf) do names[i] = branch.properties.name.enum[1] end
        assert.same({ "ip-restriction", "key-auth", "prometheus" }, names)
        local prom = doc.components.schemas.PrometheusConfig
        assert.equals(64, prom.properties.request_latency_buckets.maxItems)
        assert.same({ "prometheus", "kong" }, prom.properties.naming.enum)
    end)

    it("pages as the Admin API pages", function()
        local size = openapi.document().components.parameters.size
        assert.equals(endpoints.PAGE.max, size.schema.maximum)
    end)

    it("turns the schemas' Lua patterns into regular expressions", function()
        assert.equals("^[A-Za-z0-9._~-]+$", openapi.regex("^[%w%._~-]+$"))
        assert.equals("^[A-Za-z0-9.\\-_~]+$", openapi.regex("^[%w%.%-_~]+$"))
        assert.equals("^[A-Z]+$", openapi.regex("^%u+$"))
        assert.equals("^\\/", openapi.regex("^/"))
        assert.equals("^a\\(b\\)$", openapi.regex("^a%(b%)$"))
        assert.has_error(function() openapi.regex("^%b()$") end)
        assert.has_error(function() openapi.regex("^a-$") end)
    end)
end)
