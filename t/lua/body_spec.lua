-- gateway.body: Admin API bodies as Kong reads them (JSON and forms, with dotted and
-- bracketed keys), and the errors a bad body gets.
local core = require "ngx_prometheus"
local body = require "gateway.body"

describe("gateway.body.parse", function()
    it("matches the media type, not a substring of the header", function()
        assert.equal("application/json", body.media_type(" Application/JSON ; charset=utf-8"))
        assert.equal("text/plain", body.media_type("text/plain; x=application/json"))
        local _, status = body.parse('{"name":"x"}', "text/plain; x=application/json")
        assert.equal(415, status)
        _, status = body.parse('{"name":"x"}', "application/jsonx")
        assert.equal(415, status)
        _, status = body.parse("name=x", "application/x-www-form-urlencoded-not")
        assert.equal(415, status)
    end)

    it("reads a JSON object and expands dotted keys into it", function()
        local v = assert(body.parse('{"name":"p","config.per_consumer":true,"config":{"x":1}}', "application/json"))
        assert.same({ name = "p", config = { per_consumer = true, x = 1 } }, v)
    end)

    it("takes a body without a type that looks like JSON as JSON", function()
        assert.same({ name = "x" }, body.parse('  {"name":"x"}', nil))
    end)

    it("keeps JSON arrays and nulls as the schema expects them", function()
        local v = assert(body.parse('{"paths":["/a"],"path":null}', "application/json; charset=utf-8"))
        assert.equal(core.array_mt, debug.getmetatable(v.paths))
        assert.equal(core.null, v.path)
    end)

    it("answers 400 to JSON that is not an object", function()
        local v, status, message = body.parse('["a"]', "application/json")
        assert.is_nil(v)
        assert.equal(400, status)
        assert.equal("Cannot parse JSON body: expected an object", message)
        v, status, message = body.parse('"a"', "application/json")
        assert.is_nil(v)
        assert.equal(400, status)
        assert.equal("Cannot parse JSON body: expected an object", message)
    end)

    it("answers 400 to invalid JSON", function()
        local v, status, message = body.parse('{"a":', "application/json")
        assert.is_nil(v)
        assert.equal(400, status)
        assert.truthy(message:find("^Cannot parse JSON body: "))
    end)

    it("takes an empty or blank body as an empty object, whatever its type", function()
        assert.same({}, body.parse("", "application/json"))
        assert.same({}, body.parse(" \r\n", "text/plain"))
    end)

    it("answers 400 to a form pair without a name (nginx's decoder would drop it)", function()
        for _, raw in ipairs({ "=x", "username=a&=false", "=" }) do
            local v, status, message = body.parse(raw, "application/x-www-form-urlencoded")
            assert.is_nil(v, raw)
            assert.equal(400, status)
            assert.equal("Invalid key (empty): a form field needs a name", message)
        end
    end)

    it("answers 415 to another type, naming it printably", function()
        local v, status, message = body.parse("name=x", "text/plain\r\nX: 1")
        assert.is_nil(v)
        assert.equal(415, status)
        assert.equal("Unsupported Content-Type: text/plain\\x0D\\x0Ax: 1", message)
    end)

    it("has nginx decode a form (every argument), then expands its keys", function()
        local seen
        -- What ngx.decode_args returns for "paths[]=/a&paths[]=/b&config.x=true".
        ngx.decode_args = function(raw, max)
            seen = { raw = raw, max = max }
            return { ["paths[]"] = { "/a", "/b" }, ["config.x"] = "true" }
        end
        finally(function() ngx.decode_args = nil end)
        local v = assert(body.parse("paths[]=/a&paths[]=/b&config.x=true", "application/x-www-form-urlencoded"))
        assert.same({ raw = "paths[]=/a&paths[]=/b&config.x=true", max = 0 }, seen)
        assert.same({ paths = { "/a", "/b" }, config = { x = "true" } }, v)
    end)
end)

describe("gateway.body.expand", function()
    it("builds records from dotted keys", function()
        assert.same({ service = { id = "u" }, config = { a = { b = "1" } } },
            body.expand({ ["service.id"] = "u", ["config.a.b"] = "1" }))
    end)

    it("appends with [] and places with [n]", function()
        assert.same({ paths = { "/a", "/b", "/c" } }, body.expand({ ["paths[]"] = { "/a", "/b", "/c" } }))
        assert.same({ paths = { "/x", "/y" } }, body.expand({ ["paths[2]"] = "/y", ["paths[1]"] = "/x" }))
    end)

    it("treats anything else in brackets as a map key", function()
        assert.same({ headers = { ["x-a"] = "1", ["1e3"] = "2" } },
            body.expand({ ["headers[x-a]"] = "1", ["headers[1e3]"] = "2" }))
    end)

    it("puts compound keys into plain ones given beside them", function()
        assert.same({ config = { a = 1, b = "2" } }, body.expand({ config = { a = 1 }, ["config.b"] = "2" }))
    end)

    it("refuses a field given more than one way, naming it", function()
        for _, args in ipairs({
            { tags = "b", ["tags[]"] = "a" },
            { tags = { "b", "c" }, ["tags[]"] = "a" },
            { tags = setmetatable({ "b" }, core.array_mt), ["tags[1]"] = "a" },
            { ["paths[]"] = "/a", ["paths[1]"] = "/b" },
            { ["config.x"] = "1", ["config[x]"] = "2" },
            { config = "x", ["config.y"] = "1" },
            { config = { x = 1 }, ["config.x"] = "2" },
            { ["config.allow"] = "a", ["config.allow[]"] = "b" },
        }) do
            local v, err = body.expand(args)
            assert.is_nil(v)
            assert.truthy(err:find("given more than one way", 1, true), err)
        end
        local _, status, message = body.parse('{"tags":["b"],"tags[]":"a"}', "application/json")
        assert.equal(400, status)
        assert.equal("Invalid key tags[]: the field tags is given more than one way", message)
    end)

    it("refuses an index beyond the limit, naming the key", function()
        local v, err = body.expand({ ["paths[1001]"] = "/a" })
        assert.is_nil(v)
        assert.equal("paths[1001]: index 1001 is not between 1 and 1000", err)
        local _, status, message = body.parse('{"paths[0]":"/a"}', "application/json")
        assert.equal(400, status)
        assert.equal("Invalid key paths[0]: index 0 is not between 1 and 1000", message)
    end)
end)
