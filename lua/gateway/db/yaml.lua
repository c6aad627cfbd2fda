-- gateway.db.yaml: YAML text -> the Lua values a declarative file describes (Kong's
-- kong.yml), read from libyaml's event parser (Debian's lua-yaml, lyaml's binding).
--
--   local doc, where = yaml.decode(text)   -- or nil, "line 14: ..."
--
-- Mappings become plain tables (their keys strings), sequences tables with
-- core.array_mt, null core.null: what core.json_decode makes of the same JSON. Plain
-- scalars are typed as lyaml types them (so as Kong reads the same file): true/false,
-- yes/no, on/off; decimal, 0x, 0o/0 octal, floats, .inf, .nan; ~ and null. Quoted and
-- block scalars are strings; tags !!str !!int !!float !!bool !!null and the
-- non-specific `!` are honoured, any other refused. `where.lines[t]` is the line (from
-- 1) where mapping or sequence `t` starts, `where.keys[t][k]` the line of its key `k`.
--
-- The document is built here, not by lyaml.load, so that every way a file can make
-- the loader work without end is bounded and named with its line (docs/gateway.md,
-- "Declarative files"): nesting deeper than LIMITS.depth; more than LIMITS.nodes
-- nodes, an alias counting as every node it repeats (a "billion laughs" file stops
-- after LIMITS.nodes, never expanded); a key given twice in one mapping; a
-- second document; an alias before its anchor (so no cycle); a key that is not a
-- scalar. Aliases and `<<` merge keys otherwise work as in YAML 1.1 (an alias shares
-- the anchored value: nothing here or in the loader changes a decoded table).

local core = require "ngx_prometheus"

local null, array_mt = core.null, core.array_mt
local pcall, type, tostring, pairs, ipairs, setmetatable = pcall, type, tostring, pairs, ipairs, setmetatable
-- mlua protects its array metatable (__metatable = false): only debug.getmetatable sees it.
local getmetatable = debug.getmetatable
local floor, abs, fmt = math.floor, math.abs, string.format

local _M = {}

_M.LIMITS = {
    -- Kong's deepest entity (a plugin's config) nests about 6 levels.
    depth = 64,
    -- A node is a scalar, a mapping or a sequence; an alias counts as all it repeats.
    nodes = 1000000,
}

-- The binding and lyaml's scalar rules, loaded on first use: the gateway runs without
-- them until a YAML file is read.
local binding, scalar_rules

local function load_binding()
    if binding then return binding end
    local ok, yaml = pcall(require, "yaml")
    if not ok then
        return nil, "YAML needs Debian's lua-yaml (lyaml): " .. tostring(yaml):match("^[^\n]*")
    end
    local ok_i, implicit = pcall(require, "lyaml.implicit")
    local ok_e, explicit = pcall(require, "lyaml.explicit")
    if not ok_i or not ok_e then
        return nil, "YAML needs Debian's lua-yaml (lyaml): " .. tostring(ok_i and explicit or implicit):match("^[^\n]*")
    end
    local NULL = require("lyaml.functional").NULL
    -- lyaml's own order (lyaml/init.lua): the most likely first, octal before decimal.
    local implicit_order = {
        implicit.null, implicit.octal, implicit.decimal, implicit.float, implicit.bool,
        implicit.inf, implicit.nan, implicit.hexadecimal, implicit.binary,
        implicit.sexagesimal, implicit.sexfloat,
    }
    local TAG = "tag:yaml.org,2002:"
    scalar_rules = {
        NULL = NULL,
        implicit = implicit_order,
        explicit = {
            [TAG .. "bool"] = explicit.bool,
            [TAG .. "float"] = explicit.float,
            [TAG .. "int"] = explicit.int,
            [TAG .. "null"] = explicit.null,
            [TAG .. "str"] = explicit.str,
        },
    }
    binding = yaml
    return binding
end

-- A value lyaml's rules gave, as the loader's values: NULL is core.null.
local function lua_value(v)
    if v == scalar_rules.NULL then return null end
    return v
end

-- Integers a double cannot hold (2^53 + 1 would become 2^53) are refused, as JSON's are.
local function exact(v, text)
    if type(v) ~= "number" or v ~= v or abs(v) < 2 ^ 53 or floor(v) ~= v or abs(v) == math.huge then
        return true
    end
    local digits = text:gsub("[_+%-]", ""):gsub("^0+(%d)", "%1")
    if digits:find("^%d+$") and fmt("%.0f", abs(v)) == digits then return true end
    return false
end

local function scalar(ev)
    local text, tag = ev.value, ev.tag
    if tag and tag ~= "!" then
        local convert = scalar_rules.explicit[tag]
        if not convert then return nil, fmt("unsupported tag '%s'", core.printable(tag)) end
        local v = convert(text)
        if v == nil then return nil, fmt("invalid %s value", core.printable(tag:gsub("^tag:yaml.org,2002:", "!!"))) end
        v = lua_value(v)
        if not exact(v, text) then return nil, "integer cannot be represented exactly: " .. core.printable(text) end
        return v
    end
    if tag == "!" or ev.style ~= "PLAIN" then return text end
    for _, rule in ipairs(scalar_rules.implicit) do
        local v = rule(text)
        if v ~= nil then
            v = lua_value(v)
            if not exact(v, text) then
                return nil, "integer cannot be represented exactly: " .. core.printable(text)
            end
            return v
        end
    end
    return text
end

-- The first line of `text` libyaml's reader refuses (invalid UTF-8, a control
-- character): its errors say no line.
local function bad_line(text)
    local n = 0
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
        n = n + 1
        if not core.utf8_valid(line) or line:find("[%z\1-\8\11\12\14-\31\127]") then return n end
    end
    return nil
end

-- "did not find expected key at document: 1, line: 3, column: 5\nwhile parsing ..."
-- -> "line 3: did not find expected key (while parsing ...)"
local function parser_error(msg, text)
    msg = tostring(msg)
    local problem = msg:match("^(.-) at document") or msg:match("^[^\n]*")
    local line = msg:match("line: (%d+)") or bad_line(text)
    local context = msg:match("\nwhile ([^\n]-) at line")
    local why = core.printable(problem) .. (context and (" (while " .. core.printable(context) .. ")") or "")
    if line then return fmt("line %s: %s", line, why) end
    return why
end

local MERGE = "<<"
-- The key a plain `<<` stands for (a quoted "<<" is an ordinary key).
local MERGE_KEY = {}

-- Applies a mapping's `<<` values: their keys, where the mapping has none of its own
-- (the first merged mapping wins over later ones).
local function apply_merges(frame)
    for _, m in ipairs(frame.merges) do
        local sources = m.value
        if getmetatable(sources) ~= array_mt then sources = { sources } end
        for _, src in ipairs(sources) do
            if type(src) ~= "table" or getmetatable(src) == array_mt then
                return nil, fmt("line %d: '<<' expects a mapping or a sequence of mappings", m.line)
            end
            for k, v in pairs(src) do
                if frame.value[k] == nil then frame.value[k] = v end
            end
        end
    end
    return true
end

-- decode(text) -> document, where ({ lines, keys }) | nil, err ("line N: why")
function _M.decode(text)
    local yaml, lerr = load_binding()
    if not yaml then return nil, lerr end
    local limits = _M.LIMITS
    local next_event = yaml.parser(text)
    local lines, keys, anchors = {}, {}, {}
    local stack, depth, nodes = {}, 0, 0
    local root, documents = nil, 0

    -- Adds a finished node (`size` nodes, counting what aliases repeat) to its parent;
    -- in a mapping, every other node is a key (`merge`: a plain `<<`).
    local function add(value, size, line, anchor, merge)
        if anchor then anchors[anchor] = { value = value, size = size } end
        local top = stack[depth]
        if not top then
            root = value
            return true
        end
        top.size = top.size + size
        if top.kind == "seq" then
            top.value[#top.value + 1] = value
            return true
        end
        local key = top.key
        if key == nil then
            -- A key: a scalar only (a mapping or a sequence as a key names no field).
            if type(value) == "table" and value ~= null then
                return nil, fmt("line %d: a key must be a scalar", line)
            end
            -- (An alias's scalar may be typed: its text names the field.)
            if type(value) ~= "string" then value = value == null and "null" or tostring(value) end
            key = merge and MERGE_KEY or value
            if key ~= MERGE_KEY and top.seen[key] then
                return nil, fmt("line %d: duplicate key '%s' (first at line %d)", line,
                    core.printable(key), top.seen[key])
            end
            top.key, top.key_line = key, line
            if key ~= MERGE_KEY then top.seen[key] = line end
            return true
        end
        top.key = nil
        if key == MERGE_KEY then
            top.merges[#top.merges + 1] = { value = value, line = top.key_line }
        else
            top.value[key] = value
        end
        return true
    end

    local function count(n, line)
        nodes = nodes + n
        if nodes > limits.nodes then
            return nil, fmt("line %d: more than %d nodes (an alias counts as every node it repeats)",
                line, limits.nodes)
        end
        return true
    end

    while true do
        local ok, ev = pcall(next_event)
        if not ok then return nil, parser_error(ev, text) end
        if ev == nil then break end
        local t, line = ev.type, ev.start_mark.line + 1
        local fine, err = true, nil
        if t == "DOCUMENT_START" then
            documents = documents + 1
            if documents > 1 then return nil, fmt("line %d: a second document ('---'): one is expected", line) end
        elseif t == "MAPPING_START" or t == "SEQUENCE_START" then
            if ev.tag and ev.tag ~= "!" and ev.tag ~= "tag:yaml.org,2002:map" and ev.tag ~= "tag:yaml.org,2002:seq" then
                return nil, fmt("line %d: unsupported tag '%s'", line, core.printable(ev.tag))
            end
            if depth >= limits.depth then
                return nil, fmt("line %d: nested deeper than %d levels", line, limits.depth)
            end
            fine, err = count(1, line)
            if not fine then return nil, err end
            local value = t == "SEQUENCE_START" and setmetatable({}, array_mt) or {}
            lines[value] = line
            if t == "MAPPING_START" then keys[value] = {} end
            depth = depth + 1
            stack[depth] = { kind = t == "SEQUENCE_START" and "seq" or "map", value = value, size = 1,
                             line = line, anchor = ev.anchor, seen = keys[value], merges = {} }
        elseif t == "MAPPING_END" or t == "SEQUENCE_END" then
            local frame = stack[depth]
            stack[depth] = nil
            depth = depth - 1
            if frame.kind == "map" and #frame.merges > 0 then
                fine, err = apply_merges(frame)
                if not fine then return nil, err end
            end
            fine, err = add(frame.value, frame.size, frame.line, frame.anchor)
        elseif t == "SCALAR" then
            local top = stack[depth]
            local v, serr, merge
            if top and top.kind == "map" and top.key == nil then
                -- A key names a field: its text as written (`1:` is "1", `yes:` "yes").
                v, merge = ev.value, ev.value == MERGE and ev.style == "PLAIN" and not ev.tag
            else
                v, serr = scalar(ev)
                if serr then return nil, fmt("line %d: %s", line, serr) end
            end
            fine, err = count(1, line)
            if fine then fine, err = add(v, 1, line, ev.anchor, merge) end
        elseif t == "ALIAS" then
            local a = anchors[ev.anchor]
            if not a then
                return nil, fmt("line %d: alias '*%s' before its anchor (or without one)", line,
                    core.printable(tostring(ev.anchor)))
            end
            fine, err = count(a.size, line)
            if fine then fine, err = add(a.value, a.size, line, nil) end
        end
        if not fine then return nil, err end
    end
    if root == nil then return nil, "line 1: no document (an empty file)" end
    return root, { lines = lines, keys = keys }
end

-- available() -> true | nil, err: whether YAML can be read here.
function _M.available()
    local ok, err = load_binding()
    if not ok then return nil, err end
    return true
end

return _M
