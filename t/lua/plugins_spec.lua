-- The plugin contract (gateway.plugins): a plugin the core does not name, added from
-- the specs' package path, validated by its own schema and driven through the phases
-- the core calls for every plugin (configure, entities_removed, status), with what was
-- removed worked out by the core (gateway.db.removed) as db.write and reloads do.
local plugins = require "gateway.plugins"
local core = require "ngx_prometheus"
local index = require "gateway.db.index"
local crud = require "gateway.db.crud"
local removed = require "gateway.db.removed"

describe("a plugin added without touching the core", function()
    local mod, s, web, root
    setup(function()
        mod = plugins.add("test-metrics")
    end)
    before_each(function()
        s = index.build(index.empty_document(core.uuid()))
        web = assert(crud.insert(s, "services", { name = "web", host = "a.test" }))
        root = assert(crud.insert(s, "routes", { name = "root", paths = { "/" }, service = { id = web.id } }))
        mod.series, mod.seen = {}, {}
    end)

    it("is listed and its instances validated by its own schema", function()
        assert.truthy(table.concat(plugins.names(), ","):find("test-metrics", 1, true))
        local p = assert(crud.insert(s, "plugins", { name = "test-metrics", route = { id = root.id } }))
        assert.equal("", p.config.prefix)
        local _, err = crud.insert(s, "plugins", { name = "test-metrics", config = { prefix = ("x"):rep(17) } })
        assert.equal(400, err.status)
        assert.truthy(err.body.message:find("prefix", 1, true))
    end)

    it("is configured with every instance of its own, enabled or not", function()
        local a = assert(crud.insert(s, "plugins", { name = "test-metrics", config = { prefix = "a:" } }))
        local b = assert(crud.insert(s, "plugins", { name = "test-metrics", enabled = false,
            route = { id = root.id }, config = { prefix = "b:" } }))
        assert(crud.insert(s, "plugins", { name = "key-auth" }))
        plugins.configure(s)
        assert.same({ a, b }, mod.seen.instances)
        assert.equal(s, mod.seen.snapshot)
    end)

    it("hears of the entities a change removed, renamed ones too, with its configs", function()
        local p = assert(crud.insert(s, "plugins", { name = "test-metrics", config = { prefix = "a:" } }))
        local other = assert(crud.insert(s, "routes", { name = "other", paths = { "/o" }, service = { id = web.id } }))
        mod.log(p.config, { route = root })
        mod.log(p.config, { route = other })
        assert.same({ ["a:root"] = 1, ["a:other"] = 1 }, mod.series)
        -- The change: `root` renamed, `other` deleted, the plugin's prefix changed.
        local new = index.working_copy(s)
        assert(crud.update(new, "routes", root, crud.merge("routes", root, { name = "slash" })))
        assert(crud.delete(new, "routes", index.find(new, "routes", "other")))
        assert(crud.update(new, "plugins", p, crud.merge("plugins", p, { config = { prefix = "b:" } })))
        local gone = removed.between(s.list, new)
        plugins.entities_removed(gone, s.list.plugins, new.list.plugins)
        assert.same({}, mod.series)
        assert.same({ "a:", "b:" }, { mod.seen.configs[1].prefix, mod.seen.configs[2].prefix })
    end)

    it("adds its fields to /status", function()
        mod.series = { x = 1, y = 2 }
        assert.same({ series = 2 }, plugins.status().test_metrics)
    end)

    it("fails a phase alone: logged, never raised", function()
        local configure = mod.configure
        mod.configure = function() error("broken") end
        finally(function() mod.configure = configure end)
        local before = #ngx.logged
        plugins.configure(s)
        local found = false
        for i = before + 1, #ngx.logged do
            local m = ngx.logged[i].message
            if m:find("test-metrics", 1, true) and m:find("broken", 1, true) then found = true end
        end
        assert.is_true(found)
    end)
end)

describe("gateway.db.removed", function()
    local s
    before_each(function()
        s = index.build(index.empty_document(core.uuid()))
    end)

    local function kinds(list)
        local out = {}
        for i, g in ipairs(list) do out[i] = g.kind .. ":" .. (g.row.name or g.row.username or g.row.target) end
        return out
    end

    it("lists what is gone, cascades included, and what is named otherwise", function()
        local web = assert(crud.insert(s, "services", { name = "web", host = "a.test" }))
        assert(crud.insert(s, "routes", { name = "r", paths = { "/" }, service = { id = web.id } }))
        local ann = assert(crud.insert(s, "consumers", { username = "ann" }))
        assert(crud.insert(s, "consumers", { username = "bob" }))
        local new = index.working_copy(s)
        assert(crud.delete(new, "routes", index.find(new, "routes", "r")))
        assert(crud.delete(new, "services", index.find(new, "services", "web")))
        assert(crud.update(new, "consumers", ann, crud.merge("consumers", ann, { username = "anne" })))
        assert.same({ "services:web", "routes:r", "consumers:ann" }, kinds(removed.between(s.list, new)))
    end)

    it("gives a removed target its upstream, from the configuration before", function()
        local up = assert(crud.insert(s, "upstreams", { name = "pool" }))
        assert(crud.insert(s, "targets", { upstream = { id = up.id }, target = "10.0.0.1:80" }))
        -- A reload: the old configuration is a decoded document, the new one an index.
        local doc = core.json_decode(assert(index.encode(s)))
        local new = index.build(index.empty_document(s.node_id))
        local gone = removed.between(doc, new)
        assert.same({ "upstreams:pool", "targets:10.0.0.1:80" }, kinds(gone))
        assert.equal("pool", gone[2].refs.upstream.name)
    end)

    it("lists nothing for a change that removed nothing", function()
        assert(crud.insert(s, "services", { name = "web", host = "a.test" }))
        local new = index.working_copy(s)
        assert(crud.insert(new, "services", { name = "api", host = "b.test" }))
        assert.same({}, removed.between(s.list, new))
    end)
end)
