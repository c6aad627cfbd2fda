-- gateway.schema: validation, defaults, coercion of form strings, PATCH merges and
-- Kong's error summaries.
local core = require "ngx_prometheus"
local schema = require "gateway.schema"

local null = core.null

local PORT = { type = "integer", between = { 0, 65535 } }
local sample = {
    fields = {
        { name = { type = "string", required = true, len_max = 8, match = "^%l+$", match_err = "lowercase only" } },
        { port = { type = "integer", default = 80, between = { 0, 65535 } } },
        { enabled = { type = "boolean", default = true } },
        { mode = { type = "string", one_of = { "a", "b" } } },
        { paths = { type = "array", len_max = 3,
                    elements = { type = "string", match = "^/", match_err = "should start with: /" } } },
        { tags = { type = "set", elements = { type = "string" } } },
        { limits = { type = "record", fields = {
            { per_second = { type = "number", default = 1 } },
            { burst = PORT },
        } } },
        { parent = { type = "foreign", reference = "services" } },
    },
}

describe("gateway.schema.validate", function()
    it("fills defaults and keeps what was given", function()
        local v = assert(schema.validate(sample, { name = "web" }))
        assert.same("web", v.name)
        assert.equal(80, v.port)
        assert.is_true(v.enabled)
        assert.same({ per_second = 1 }, v.limits)   -- records are always present
        assert.is_nil(v.mode)
    end)

    it("names a missing required field", function()
        local v, errs = schema.validate(sample, { port = 1 })
        assert.is_nil(v)
        assert.same({ name = "required field missing" }, errs)
    end)

    it("names every bad field at once, with Kong's messages", function()
        local _, errs = schema.validate(sample, { name = "UP", port = 70000, mode = "c", enabled = "yes" })
        assert.same({
            name = "lowercase only",
            port = "value should be between 0 and 65535",
            mode = "expected one of: a, b",
            enabled = "expected a boolean",
        }, errs)
    end)

    it("refuses unknown fields by name", function()
        local _, errs = schema.validate(sample, { name = "x", colour = "red" })
        assert.same({ colour = "unknown field" }, errs)
    end)

    it("coerces form strings: numbers, booleans, a lone array element", function()
        local v = assert(schema.validate(sample, { name = "x", port = "8080", enabled = "false", paths = "/a" }))
        assert.equal(8080, v.port)
        assert.is_false(v.enabled)
        assert.same({ "/a" }, v.paths)
        assert.equal(core.array_mt, debug.getmetatable(v.paths))
    end)

    it("does not coerce what is not a number", function()
        local _, errs = schema.validate(sample, { name = "x", port = "80x" })
        assert.same({ port = "expected an integer" }, errs)
        _, errs = schema.validate(sample, { name = "x", port = 1.5 })
        assert.same({ port = "expected an integer" }, errs)
    end)

    it("reports a bad element at its index, with nulls before it", function()
        local _, errs = schema.validate(sample, { name = "x", paths = { "/a", "b" } })
        assert.equal(null, errs.paths[1])
        assert.equal("should start with: /", errs.paths[2])
    end)

    it("refuses null as a list's element, at its index", function()
        local _, errs = schema.validate(sample, { name = "x", paths = { null, "/a" } })
        assert.same({ paths = { "null is not allowed" } }, errs)
        _, errs = schema.validate(sample, { name = "x", tags = { "a", null } })
        assert.same({ tags = { null, "null is not allowed" } }, errs)
    end)

    it("limits list lengths", function()
        local _, errs = schema.validate(sample, { name = "x", paths = { "/a", "/b", "/c", "/d" } })
        assert.same({ paths = "length must be at most 3" }, errs)
    end)

    it("drops duplicates from sets, keeping the first", function()
        local v = assert(schema.validate(sample, { name = "x", tags = { "a", "b", "a" } }))
        assert.same({ "a", "b" }, v.tags)
    end)

    it("nests record errors under the record's field", function()
        local _, errs = schema.validate(sample, { name = "x", limits = { burst = -1, extra = 1 } })
        assert.same({ limits = { burst = "value should be between 0 and 65535", extra = "unknown field" } }, errs)
    end)

    it("refuses control characters and invalid UTF-8 in strings, showing them escaped", function()
        local _, errs = schema.validate(sample, { name = "a\r\nb" })
        assert.same({ name = "control characters are not allowed: a\\x0D\\x0Ab" }, errs)
        _, errs = schema.validate(sample, { name = "a\255" })
        assert.same({ name = "invalid UTF-8: a\\xFF" }, errs)
    end)

    it("takes a foreign reference as an id or a name, and nothing else", function()
        local id = "0b9c1c6e-0c3c-4c4e-8f3a-3f3f3f3f3f3f"
        assert.same({ id = id }, assert(schema.validate(sample, { name = "x", parent = id })).parent)
        assert.same({ name = "web" }, assert(schema.validate(sample, { name = "x", parent = "web" })).parent)
        local _, errs = schema.validate(sample, { name = "x", parent = { id = "nope" } })
        assert.same({ parent = { id = "expected a valid UUID" } }, errs)
        _, errs = schema.validate(sample, { name = "x", parent = { id = id, name = "web" } })
        assert.same({ parent = { name = "only one of 'id' and 'name' may be given" } }, errs)
    end)

    it("refuses an array where a record is expected", function()
        local _, errs = schema.validate(sample, setmetatable({ 1, 2 }, core.array_mt))
        assert.same({ ["@entity"] = { "expected a record" } }, errs)
    end)

    it("checks only the fields given when partial, keeping null", function()
        local v = assert(schema.validate(sample, { port = null }, { partial = true }))
        assert.equal(null, v.port)
        assert.is_nil(v.name)
        local _, errs = schema.validate(sample, { name = null }, { partial = true })
        assert.same({ name = "required field missing" }, errs)
    end)

    it("gives every entity its own copy of a table default", function()
        local s = { fields = { { list = { type = "array", default = setmetatable({ 1 }, core.array_mt) } } } }
        local a = assert(schema.validate(s, {}))
        local b = assert(schema.validate(s, {}))
        a.list[2] = 2
        assert.same({ 1 }, b.list)
    end)
end)

describe("gateway.schema numbers and strings", function()
    it("stores -0 as 0, for integers and numbers alike", function()
        local v = assert(schema.validate(sample, { name = "x", port = -0, limits = { per_second = -0 } }))
        assert.equal(math.huge, 1 / v.port)
        assert.equal(math.huge, 1 / v.limits.per_second)
        v = assert(schema.validate(sample, { name = "x", port = "-0" }))
        assert.equal(math.huge, 1 / v.port)
    end)

    it("takes only decimal integers from forms, and only those a double holds", function()
        for _, bad in ipairs({ "0x50", " 80", "80 ", "8e1", "80.0", "inf", "nan", "+80" }) do
            local _, errs = schema.validate(sample, { name = "x", port = bad })
            assert.equal("expected an integer", errs.port, bad)
        end
        local big = { fields = { { at = { type = "integer" } } } }
        assert.equal(2 ^ 53, assert(schema.validate(big, { at = "9007199254740992" })).at)
        local _, errs = schema.validate(big, { at = "9007199254740993" })
        assert.equal("integer cannot be represented exactly: 9007199254740993", errs.at)
        _, errs = schema.validate(big, { at = 2 ^ 54 })
        assert.equal("integer out of the exactly representable range (-2^53 to 2^53)", errs.at)
        assert.equal(1.5e3, assert(schema.validate(sample, { name = "x", limits = { per_second = "1.5e3" } }))
            .limits.per_second)
    end)

    it("shows large bounds in full digits", function()
        local s = { fields = { { at = { type = "integer", between = { 0, 2 ^ 53 } } } } }
        local _, errs = schema.validate(s, { at = -1 })
        assert.equal("value should be between 0 and 9007199254740992", errs.at)
    end)

    it("refuses format, separator and C1 control characters in every string", function()
        for _, ch in ipairs({ "\u{202E}", "\u{2028}", "\u{2029}", "\u{200B}", "\u{FEFF}", "\u{85}",
                              "\u{AD}", "\u{2066}", "\u{E0041}" }) do
            local _, errs = schema.validate(sample, { name = "x", tags = { "a" .. ch .. "b" } })
            assert.truthy(errs and errs.tags and tostring(errs.tags[1]):find("are not allowed: U%+"), ch)
        end
        assert(schema.validate(sample, { name = "x", tags = { "café ☃ 名前", "a b" } }))
    end)

    it("shows refused characters as bytes in messages, and checks names in references", function()
        assert.equal("a\\xE2\\x80\\xAEb\\x0Ac\\xE2\\x80\\xA8 café", schema.printable("a\u{202E}b\nc\u{2028} café"))
        local _, errs = schema.validate(sample, { name = "x", tags = { "a\u{202E}b" } })
        assert.equal("control, format and separator characters are not allowed: U+202E in a\\xE2\\x80\\xAEb",
            errs.tags[1])
        _, errs = schema.validate(sample, { name = "x", parent = { name = "web\u{2066}" } })
        assert.truthy(errs.parent.name:find("U+2066", 1, true))
    end)
end)

describe("gateway.schema.merge", function()
    it("merges records field by field, replaces the rest, and null unsets", function()
        local old = { name = "x", port = 81, paths = { "/a", "/b" }, limits = { per_second = 2, burst = 5 } }
        local new = schema.merge(sample, old, { paths = { "/c" }, limits = { burst = 7 }, port = null })
        assert.same({ name = "x", paths = { "/c" }, limits = { per_second = 2, burst = 7 } }, new)
        assert.same({ per_second = 2, burst = 5 }, old.limits)   -- the old entity is untouched
    end)
end)

describe("gateway.schema.message", function()
    it("summarizes one violation", function()
        assert.equal("schema violation (port: value should be between 0 and 65535)",
            schema.message({ port = "value should be between 0 and 65535" }))
    end)

    it("summarizes several, sorted, with nested paths and entity-wide messages bare", function()
        assert.equal("3 schema violations (limits.burst: expected an integer; must set one; port: bad)",
            schema.message({ port = "bad", limits = { burst = "expected an integer" },
                             ["@entity"] = { "must set one" } }))
    end)
end)
