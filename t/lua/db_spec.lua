-- The pure parts of the store: gateway.db.index (a document and its indexes),
-- gateway.db.crud (changes to an index), gateway.db.errors and
-- gateway.db.declarative's load_document (with ids given: ids derived from content
-- need nginx's SHA-1). The lock, the shared dict and the state file are the
-- integration suites' (t/admin.rs).
local core = require "ngx_prometheus"
local index = require "gateway.db.index"
local crud = require "gateway.db.crud"
local errors = require "gateway.db.errors"
local declarative = require "gateway.db.declarative"

local function empty()
    return index.build(index.empty_document(core.uuid()))
end

local function ids(list)
    local out = {}
    for i, row in ipairs(list) do out[i] = row.name or row.key or row.target or row.id end
    return out
end

describe("gateway.db.crud", function()
    local s, web
    before_each(function()
        s = empty()
        web = assert(crud.insert(s, "services", { name = "web", host = "a.test" }, 100))
    end)

    it("inserts, indexes and stamps an entity", function()
        assert.is_true(s.changed)
        assert.equal(web, index.find(s, "services", web.id))
        assert.equal(web, index.find(s, "services", "web"))
        assert.equal(100, web.updated_at)
        assert.same({ "web" }, ids(s.list.services))
    end)

    it("resolves a reference by name to an id", function()
        local r = assert(crud.insert(s, "routes", { name = "r", paths = { "/" }, service = { name = "web" } }))
        assert.same({ id = web.id }, r.service)
    end)

    it("refuses a reference to nothing, naming the field (Kong's code 4)", function()
        local r, err = crud.insert(s, "routes", { paths = { "/" }, service = { name = "nope" } })
        assert.is_nil(r)
        assert.equal(400, err.status)
        assert.equal(4, err.body.code)
        assert.equal([[the foreign key '{name="nope"}' does not reference an existing 'services' entity.]],
            err.body.message)
        assert.same({ service = { name = "nope" } }, err.body.fields)
    end)

    it("refuses a schema violation with Kong's summary, changing nothing", function()
        local before = #s.list.services
        s.changed = nil
        local row, err = crud.insert(s, "services", { host = "a.test", port = 0.5 })
        assert.is_nil(row)
        assert.equal(400, err.status)
        assert.equal("schema violation (port: expected an integer)", err.body.message)
        assert.equal(before, #s.list.services)
        assert.is_nil(s.changed)
    end)

    it("refuses a duplicate name (409) and a duplicate id", function()
        local _, err = crud.insert(s, "services", { name = "web", host = "b.test" })
        assert.equal(409, err.status)
        assert.equal([[UNIQUE violation detected on '{name="web"}']], err.body.message)
        _, err = crud.insert(s, "services", { id = web.id, host = "b.test" })
        assert.equal(409, err.status)
        assert.equal(3, err.body.code)
    end)

    it("refuses a second plugin of a name in one scope", function()
        assert(crud.insert(s, "plugins", { name = "key-auth", service = { id = web.id } }))
        assert(crud.insert(s, "plugins", { name = "key-auth" }))   -- global: another scope
        local _, err = crud.insert(s, "plugins", { name = "key-auth", service = { name = "web" } })
        assert.equal(409, err.status)
        assert.equal(web.id, err.body.fields.service.id)
        assert.equal(core.null, err.body.fields.route)
    end)

    it("updates in place in the list, keeping id and creation time", function()
        local new = assert(crud.update(s, "services", web, crud.merge("services", web, { name = "www" }), 200))
        assert.equal(web.id, new.id)
        assert.equal(web.created_at, new.created_at)
        assert.equal(200, new.updated_at)
        assert.equal("a.test", new.host)
        assert.is_nil(index.find(s, "services", "web"))
        assert.equal(new, index.find(s, "services", "www"))
        assert.equal("web", web.name)   -- the old entity is never changed
    end)

    it("deletes plugins with their service and refuses while routes reference it", function()
        local p = assert(crud.insert(s, "plugins", { name = "key-auth", service = { id = web.id } }))
        local r = assert(crud.insert(s, "routes", { paths = { "/" }, service = { id = web.id } }))
        local gone, err = crud.delete(s, "services", web)
        assert.is_nil(gone)
        assert.same({ ["@referenced_by"] = "routes" }, err.body.fields)
        assert.equal("an existing 'routes' entity references this 'services' entity", err.body.message)
        assert.equal(web, index.find(s, "services", "web"))
        assert(crud.delete(s, "routes", r))
        gone = assert(crud.delete(s, "services", web))
        assert.same({ "services", "plugins" }, { gone[1].kind, gone[2].kind })
        assert.equal(p, gone[2].row)
        assert.same({}, s.list.plugins)
        assert.is_nil(index.find(s, "services", web.id))
    end)

    it("deletes a consumer's credentials with it", function()
        local c = assert(crud.insert(s, "consumers", { username = "ann" }))
        assert(crud.insert(s, "keyauth_credentials", { consumer = { name = "ann" }, key = "k1" }))
        assert(crud.delete(s, "consumers", c))
        assert.same({}, s.list.keyauth_credentials)
        assert.is_nil(index.find(s, "keyauth_credentials", "k1"))
    end)

    it("caps the targets of an upstream", function()
        local up = assert(crud.insert(s, "upstreams", { name = "up" }))
        for i = 1, 256 do
            assert(crud.insert(s, "targets", { upstream = { id = up.id }, target = "10.0.0.1:" .. i }))
        end
        local _, err = crud.insert(s, "targets", { upstream = { id = up.id }, target = "10.0.0.2" })
        assert.equal("schema violation (upstream: at most 256 targets per upstream)", err.body.message)
    end)
end)

describe("gateway.db.index.find", function()
    it("finds a target by host:port only within its upstream", function()
        local s = empty()
        local a = assert(crud.insert(s, "upstreams", { name = "a" }))
        local b = assert(crud.insert(s, "upstreams", { name = "b" }))
        local t = assert(crud.insert(s, "targets", { upstream = { id = a.id }, target = "h:1" }))
        assert.equal(t, index.find(s, "targets", "h:1", { field = "upstream", id = a.id }))
        assert.is_nil(index.find(s, "targets", "h:1", { field = "upstream", id = b.id }))
        assert.is_nil(index.find(s, "targets", "h:1"))
        assert.equal(t, index.find(s, "targets", t.id))
        assert.is_nil(index.find(s, "targets", t.id, { field = "upstream", id = b.id }))
    end)

    it("leaves a snapshot as it was when its working copy changes", function()
        local snap = empty()
        local web = assert(crud.insert(snap, "services", { name = "web", host = "a.test" }))
        local copy = index.working_copy(snap)
        assert(crud.delete(copy, "services", index.find(copy, "services", "web")))
        assert.equal(web, index.find(snap, "services", "web"))
        assert.equal(1, #snap.list.services)
    end)
end)

describe("gateway.db.errors", function()
    it("prints keys as Kong does, sorted and escaped", function()
        assert.equal([[{id="x",name="a\x0Ab"}]], errors.repr({ name = "a\nb", id = "x" }))
        assert.equal("null", errors.repr(core.null))
    end)

    it("logs an internal error and answers 500 with it", function()
        local n = #ngx.logged
        local err = errors.internal("disk full")
        assert.same({ status = 500, body = { code = 8, name = "database error", message = "disk full" } }, err)
        assert.equal("gateway: disk full", ngx.logged[n + 1].message)
    end)
end)

describe("gateway.db.declarative.load_document", function()
    local SID = "11111111-1111-4111-8111-111111111111"
    local RID = "22222222-2222-4222-8222-222222222222"

    it("loads children nested in their parent, referencing it", function()
        local s = assert(declarative.load_document({
            _format_version = "3.0",
            services = { { id = SID, name = "web", host = "a.test",
                           routes = { { id = RID, name = "r", paths = { "/" } } } } },
        }, "test.json"))
        local r = index.find(s, "routes", "r")
        assert.same({ id = SID }, r.service)
        assert.is_nil(index.find(s, "services", "web").routes)
    end)

    it("refuses an unknown top-level field, a bad format and a bad node id", function()
        local _, err = declarative.load_document({ servics = {} }, "f.json")
        assert.equal("f.json: servics: unknown field", err)
        _, err = declarative.load_document({ _format_version = "9" }, "f.json")
        assert.equal("f.json: _format_version: expected one of: 1, 1.1, 2.1, 3.0", err)
        _, err = declarative.load_document({ node_id = "x" }, "f.json")
        assert.equal("f.json: node_id: expected a valid UUID", err)
        _, err = declarative.load_document(setmetatable({}, core.array_mt), "f.json")
        assert.equal("f.json: expected an object at the top level", err)
    end)

    it("names the entity and the field of a bad entity", function()
        local _, err = declarative.load_document({
            services = { { id = SID, name = "web", host = "a.test", port = "x",
                           routes = { { id = RID, paths = { "/" } } } } },
        }, "f.json")
        assert.equal("f.json: services[1] (name 'web'): schema violation (port: expected an integer)", err)
        _, err = declarative.load_document({
            services = { { id = SID, host = "a.test", routes = { { id = RID, name = "r" } } } },
        }, "f.json")
        assert.truthy(err:find("^f.json: services%[1%]%.routes%[1%] %(name 'r'%): schema violation"))
        _, err = declarative.load_document({ services = { { id = SID, host = "a.test", routes = "x" } } }, "f.json")
        assert.equal("f.json: services[1].routes: expected an array", err)
    end)
end)
