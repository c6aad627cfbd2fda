-- gateway.db.yaml (YAML text to the values a declarative file describes) and
-- gateway.db.declarative's YAML and JSON files (load_text): Kong's kong.yml, the
-- lines errors name, and every input bounded. Ids are given (ids derived from content
-- need nginx's SHA-1, which the integration suites have: t/gateway.rs).
local core = require "ngx_prometheus"
local yaml = require "gateway.db.yaml"
local declarative = require "gateway.db.declarative"

local SID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0001"
local RID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0002"
local PID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0003"
local CID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0004"
local KID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0005"
local UID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0006"
local TID = "0b3a1e0c-3c8e-4b57-9a0a-2a4a1c1a0007"

local function decode(text)
    local doc, err = yaml.decode(text)
    return doc, err
end

-- A "billion laughs": 9 levels of 10 aliases each, 10^9 nodes expanded.
local function laughs()
    local lines = { "a: &a [x, x, x, x, x, x, x, x, x, x]" }
    for i = 2, 9 do
        local prev, name = string.char(96 + i - 1), string.char(96 + i)
        lines[i] = ("%s: &%s [%s]"):format(name, name, ("*" .. prev .. ", "):rep(9) .. "*" .. prev)
    end
    return table.concat(lines, "\n") .. "\n"
end

describe("gateway.db.yaml", function()
    -- Ids derived from content use nginx's SHA-1: a stand-in (any 20 bytes that
    -- depend on the text) for the mutated files below, which give none.
    setup(function()
        rawset(ngx, "sha1_bin", function(text)
            local h = 2166136261
            for i = 1, #text do h = (bit.bxor(h, text:byte(i)) * 16777619) % 4294967296 end
            return (("%08x"):format(h)):rep(3):sub(1, 20)
        end)
    end)
    teardown(function() rawset(ngx, "sha1_bin", nil) end)

    it("types scalars as lyaml does, mappings as objects and sequences as arrays", function()
        local doc = assert(decode([[
s: text
q: '80'
n: 80
h: 0x50
f: 1.5
b: yes
off: false
z: ~
e: []
m: {}
lit: |
  two
  lines
]]))
        assert.equal("text", doc.s)
        assert.equal("80", doc.q)
        assert.equal(80, doc.n)
        assert.equal(80, doc.h)
        assert.equal(1.5, doc.f)
        assert.is_true(doc.b)
        assert.is_false(doc.off)
        assert.equal(core.null, doc.z)
        assert.equal(core.array_mt, debug.getmetatable(doc.e))
        assert.is_nil(debug.getmetatable(doc.m))
        assert.equal("two\nlines\n", doc.lit)
    end)

    it("keeps keys as written and tells each table's line and each key's", function()
        local doc, where = assert(decode("a:\n  - x: 1\n    yes: 2\n  - y: 3\n"))
        assert.equal(2, doc.a[1]["yes"])
        assert.equal(2, where.lines[doc.a[1]])
        assert.equal(4, where.lines[doc.a[2]])
        assert.equal(3, where.keys[doc.a[1]]["yes"])
    end)

    it("honours anchors, aliases and merge keys", function()
        local doc = assert(decode("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd: *b\n"))
        assert.same({ x = 1, y = 3 }, doc.c)
        assert.same({ x = 1, y = 2 }, doc.d)
        -- A quoted "<<" is an ordinary key.
        doc = assert(decode("'<<': 1\n"))
        assert.equal(1, doc["<<"])
    end)

    it("refuses what would make the loader work without end, naming the line", function()
        local _, err = decode(laughs())
        assert.equal("line 6: more than 1000000 nodes (an alias counts as every node it repeats)", err)
        _, err = decode(("["):rep(10000) .. ("]"):rep(10000))
        assert.equal("line 1: nested deeper than 64 levels", err)
        _, err = decode(("a:\n" .. (" "):rep(2)):rep(1) .. ("- "):rep(10000) .. "x\n")
        assert.equal("line 2: nested deeper than 64 levels", err)
        _, err = decode("a: &a [*a]\n")
        assert.equal("line 1: alias '*a' before its anchor (or without one)", err)
    end)

    it("refuses duplicate keys, a second document, unknown tags and inexact integers", function()
        local _, err = decode("a: 1\nb: 2\na: 3\n")
        assert.equal("line 3: duplicate key 'a' (first at line 1)", err)
        _, err = decode("a: 1\n---\nb: 2\n")
        assert.equal("line 2: a second document ('---'): one is expected", err)
        _, err = decode("a: !!binary aGk=\n")
        assert.equal("line 1: unsupported tag 'tag:yaml.org,2002:binary'", err)
        _, err = decode("a: !!int x\n")
        assert.equal("line 1: invalid !!int value", err)
        _, err = decode("a: 9007199254740993\n")
        assert.equal("line 1: integer cannot be represented exactly: 9007199254740993", err)
        _, err = decode("? [a]\n: 1\n")
        assert.equal("line 1: a key must be a scalar", err)
        _, err = decode("")
        assert.equal("line 1: no document (an empty file)", err)
    end)

    it("reports libyaml's syntax errors with their line", function()
        local _, err = decode("a: 1\nb: [1, 2\nc: 3\n")
        assert.equal("line 3: did not find expected ',' or ']' (while parsing a flow sequence)", err)
        _, err = decode("a: 1\n\tb: 2\n")
        assert.truthy(err:find("^line 2: "), err)
        _, err = decode("a: \255\n")
        assert.truthy(err:find("^line 1: "), err)
    end)

    it("never raises, whatever the bytes (mutations of a kong.yml, seeded)", function()
        local base = ([[
_format_version: "3.0"
services:
- name: s
  url: http://127.0.0.1:9
  tags: [a, b]
  routes:
  - name: r
    paths: [/x]
    plugins:
    - name: prometheus
      config: {status_code_metrics: true}
consumers:
- username: u
  keyauth_credentials:
  - key: k
upstreams:
- name: up
  targets:
  - target: 127.0.0.1:9
]])
        local alphabet = "&*[]{}:-,?!|>'\"#%@`~\n\t \0\255<<xy0.9"
        math.randomseed(27)
        for _ = 1, 3000 do
            local bytes = { base:byte(1, -1) }
            for _ = 1, math.random(1, 8) do
                local i = math.random(1, #bytes)
                local op = math.random(1, 3)
                local c = alphabet:byte(math.random(1, #alphabet))
                if op == 1 then bytes[i] = c
                elseif op == 2 then table.insert(bytes, i, c)
                else table.remove(bytes, i) end
            end
            local text = string.char(unpack(bytes))
            local ok, doc, err = pcall(yaml.decode, text)
            assert(ok, doc)
            assert(doc ~= nil or type(err) == "string")
            if doc ~= nil then
                -- The loader too: an index or a message naming the file, never a raised error.
                local loaded, s, lerr = pcall(declarative.load_document, doc, "kong.yml", err)
                assert(loaded, s)
                assert(s ~= nil or type(lerr) == "string" and lerr:find("^kong%.yml"), lerr)
            end
        end
    end)
end)

describe("gateway.db.declarative.load_text", function()
    local KONG_YML = ([[
_format_version: "3.0"
_transform: true
services:
- id: %s
  name: web
  url: http://127.0.0.1:9/
  tags: [team-a, prod]
  routes:
  - id: %s
    name: root
    paths:
    - /
    plugins:
    - id: %s
      name: prometheus
      config:
        status_code_metrics: true
consumers:
- id: %s
  username: dave
  keyauth_credentials:
  - id: %s
    key: dave-key
upstreams:
- id: %s
  name: backend
  targets:
  - id: %s
    target: 127.0.0.1:9
    weight: 50
]]):format(SID, RID, PID, CID, KID, UID, TID)

    it("loads Kong's kong.yml: nested routes, plugins, credentials and targets", function()
        local s, err = declarative.load_text(KONG_YML:gsub("_transform: true\n", ""), "kong.yml")
        assert.is_nil(err)
        assert.same({ "team-a", "prod" }, s.services[SID].tags)
        assert.same({ id = SID }, s.routes[RID].service)
        assert.same({ id = RID }, s.plugins[PID].route)
        assert.is_true(s.plugins[PID].config.status_code_metrics)
        assert.same({ id = CID }, s.keyauth_credentials[KID].consumer)
        assert.same({ id = UID }, s.targets[TID].upstream)
        assert.equal(50, s.targets[TID].weight)
    end)

    it("names the file, the line and the entity of what it refuses", function()
        local _, err = declarative.load_text(KONG_YML, "kong.yml")
        assert.equal("kong.yml:2: _transform: unknown field", err)
        local text = KONG_YML:gsub("_transform: true\n", ""):gsub("weight: 50", "weight: heavy")
        _, err = declarative.load_text(text, "kong.yml")
        assert.equal("kong.yml:29: upstreams[1].targets[1] (target '127.0.0.1:9'): schema violation "
            .. "(weight: expected an integer)", err)
        text = KONG_YML:gsub("_transform: true\n", ""):gsub("    %- /\n", "    - nope\n")
        _, err = declarative.load_text(text, "kong.yml")
        assert.equal("kong.yml:10: services[1].routes[1] (name 'root'): schema violation "
            .. "(paths.1: should start with: /)", err)
        text = KONG_YML:gsub("_transform: true\n", ""):gsub("  url: ", "  bogus: 1\n  url: ")
        _, err = declarative.load_text(text, "kong.yml")
        assert.equal("kong.yml:5: services[1] (name 'web'): schema violation (bogus: unknown field)", err)
        _, err = declarative.load_text("_format_version: '3.0'\nservices:\n  name: web\n", "kong.yml")
        assert.equal("kong.yml:2: services: expected an array", err)
        _, err = declarative.load_text("- a\n", "kong.yaml")
        assert.equal("kong.yaml:1: expected an object at the top level", err)
        _, err = declarative.load_text("a: [\n", "kong.yml")
        assert.truthy(err:find("^kong%.yml:2: did not find expected"), err)
    end)

    it("takes _format_version unquoted and an empty list as none", function()
        local s = assert(declarative.load_text("_format_version: 3.0\nservices:\nroutes: []\n", "kong.yml"))
        assert.equal(0, #s.list.services)
        local _, err = declarative.load_text("_format_version: 4.0\n", "kong.yml")
        assert.equal("kong.yml:1: _format_version: expected one of: 1, 1.1, 2.1, 3.0", err)
    end)

    it("reads .json as JSON, and names the line of a refused entity there too", function()
        local text = ('{"_format_version": "3.0",\n "services": [\n  {"id": "%s", "name": "web",\n'
            .. '   "host": "a.test", "port": 70000}]}'):format(SID)
        local _, err = declarative.load_text(text, "kong.json")
        assert.equal("kong.json:4: services[1] (name 'web'): schema violation "
            .. "(port: value should be between 0 and 65535)", err)
        -- JSON's own reader: a YAML-only form is a JSON syntax error.
        _, err = declarative.load_text("a: 1\n", "kong.json")
        assert.truthy(err:find("^kong%.json: "), err)
    end)

    it("refuses tags Kong refuses, naming the tag", function()
        local _, err = declarative.load_text(("services:\n- id: %s\n  host: a.test\n  tags: ['a,b']\n")
            :format(SID), "kong.yml")
        assert.equal("kong.yml:4: services[1]: schema violation (tags.1: invalid tag 'a,b': expected "
            .. "printable ascii (except `,`, `/` and space) or valid utf-8 sequences)", err)
    end)
end)
