-- gateway.db.declarative: loads a configuration file (the state file, a seed file, a
-- Kong-style declarative file, JSON or YAML) into an index, checking every entity as
-- the Admin API would. Children may be nested inside their parent, as in Kong's
-- declarative files; entities without an id get one derived from what identifies
-- them, the same on every load. A refusal names the file, the line (where the file's
-- text gives one) and the entity: "kong.yml:14: services[2].routes[1] (name 'r'): ...".
-- Nothing is loaded from a file with any error: the caller keeps what it had.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local entities = require "gateway.entities"
local index = require "gateway.db.index"
local crud = require "gateway.db.crud"
local yaml = require "gateway.db.yaml"

local defs, kinds = entities.defs, entities.kinds
local null = core.null
local printable = schema.printable
local is_uuid, is_array = schema.is_uuid, schema.is_array
local ipairs, pairs, type, tostring, tonumber, next = ipairs, pairs, type, tostring, tonumber, next
local fmt = string.format

local _M = {}

-- Kong's declarative formats, accepted in declarative and seed files.
local FORMATS = { ["1"] = true, ["1.1"] = true, ["2.1"] = true, ["3.0"] = true }

local ENOENT = 2

-- The largest configuration file read (declarative, seed or state file): the size of
-- lua_shared_dict gateway_config (16 MiB with conf/gateway.conf's 16m), twice what
-- can be published as JSON (gateway.db.publish), so that no file that could be
-- published is refused here (YAML's indentation and comments included), and none is
-- read into memory without bound.
local function max_file_bytes()
    local dict = ngx.shared.gateway_config
    return dict:capacity()
end

-- read_file(path) -> text | nil, err, missing: `missing` is true only when there is
-- no such file; any other failure (permissions, an I/O error, a file larger than
-- max_file_bytes()) is not an absence, and a caller that would make the file anew must not.
function _M.read_file(path)
    local f, err, code = io.open(path, "rb")
    if not f then return nil, err, code == ENOENT end
    local limit = max_file_bytes()
    -- Not a regular file (a pipe): read up to the limit and see.
    local size = f:seek("end")
    if size and size > limit then
        f:close()
        return nil, fmt("%s: %d bytes, more than the limit of %d", path, size, limit), false
    end
    if size then f:seek("set") end
    local text, rerr = f:read(limit + 1)
    f:close()
    if text == nil and not rerr then text = "" end
    if not text then return nil, path .. ": " .. tostring(rerr), false end
    if #text > limit then
        return nil, fmt("%s: more than the limit of %d bytes", path, limit), false
    end
    return text
end

local function uuid_from(text)
    local h = ngx.sha1_bin(text):gsub(".", function(c) return fmt("%02x", c:byte()) end)
    -- Version 5 (name-based, SHA-1), RFC 4122 variant.
    local variant = fmt("%x", 8 + tonumber(h:sub(17, 17), 16) % 4)
    return fmt("%s-%s-5%s-%s%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(14, 16), variant, h:sub(18, 20),
        h:sub(21, 32))
end

-- An id for a file entity without one, the same on every load so that ids (and what
-- is keyed by them) survive reloads: from what identifies the entity (its name, or
-- its scope for plugins and targets), else from its whole content.
local function stable_id(kind, input, taken)
    local def = defs[kind]
    local key
    if def.unique_together then
        key = {}
        for _, f in ipairs(def.unique_together) do key[f] = input[f] end
    elseif def.endpoint_key and input[def.endpoint_key] ~= nil then
        key = { [def.endpoint_key] = input[def.endpoint_key] }
    else
        key = input
    end
    local base = kind .. "\0" .. (core.json_encode(key) or "")
    local id, n = uuid_from(base), 1
    while taken[id] do
        n = n + 1
        id = uuid_from(base .. "\0" .. n)
    end
    taken[id] = true
    return id
end

-- Appends `input` (and its nested children) to items[kind], each with an id and the
-- table of the document it came from, `source` (whose line the file's text may tell;
-- `input` itself, unless a copy). A list left empty (`routes:` with nothing under it
-- in YAML, null in JSON) has no entities. Errors: nil, why, the table, its field.
local function gather(items, kind, input, where, taken, source)
    source = source or input
    if type(input) ~= "table" or is_array(input) and next(input) ~= nil then
        return nil, where .. ": expected an object", source
    end
    -- Kong's declarative files may list children inside their parent.
    local own, nested = {}, defs[kind].children
    for k, v in pairs(input) do own[k] = v end
    for _, n in ipairs(nested) do own[n.kind] = nil end
    if own.id == nil then own.id = stable_id(kind, own, taken) end
    local list = items[kind]
    list[#list + 1] = { input = own, where = where, source = source }
    for _, n in ipairs(nested) do
        local child_kind, field = n.kind, n.field
        local children = input[child_kind]
        if children ~= nil and children ~= null then
            if type(children) ~= "table" or not is_array(children) then
                return nil, fmt("%s.%s: expected an array", where, child_kind), source, child_kind
            end
            for i, c in ipairs(children) do
                local child = c
                if type(c) == "table" and c ~= null then
                    child = {}
                    for k, v in pairs(c) do child[k] = v end
                    child[field] = { id = own.id }
                end
                local ok, err, t, key = gather(items, child_kind, child, fmt("%s.%s[%d]", where, child_kind, i),
                    taken, c)
                if not ok then return nil, err, t, key end
            end
        end
    end
    return true
end

local function describe(kind, input)
    local key = defs[kind].endpoint_key
    local v = key and input[key]
    if type(v) == "string" then return fmt(" (%s '%s')", key, printable(v)) end
    return ""
end

-- The line of `t` (of its field `key`, when given and known) in the file, as
-- "path:line", or "path" where the file's text gives none.
local function at(source, where, t, key)
    if where and type(t) == "table" then
        local line = key and where.keys[t] and where.keys[t][key] or where.lines[t]
        if line then return fmt("%s:%d", source, line) end
    end
    return source
end

-- The one field an error is about, when it is about one (its line is then the
-- field's, else the entity's).
local function erring_field(err)
    local fields = err.body and err.body.fields
    if type(fields) ~= "table" then return nil end
    local name = next(fields)
    if type(name) ~= "string" or next(fields, name) ~= nil or name:sub(1, 1) == "@" then return nil end
    return name
end

-- _format_version as given: a string, or a plain YAML number (`3.0` unquoted).
local function format_text(v)
    if type(v) ~= "number" then return v end
    if FORMATS[tostring(v)] then return tostring(v) end
    return fmt("%.1f", v)
end

-- load_document(doc, source, where) -> index | nil, err naming the entity and the
-- field; `where` (from the YAML reader) gives the lines of the document's tables.
function _M.load_document(doc, source, where)
    -- Decoded JSON arrays carry array_mt; `{}` is an object (an empty configuration).
    if type(doc) ~= "table" or doc == null or debug.getmetatable(doc) == core.array_mt then
        return nil, at(source, where, doc) .. ": expected an object at the top level"
    end
    for k in pairs(doc) do
        if k ~= "_format_version" and k ~= "node_id" and not defs[k] then
            return nil, fmt("%s: %s: unknown field", at(source, where, doc, k), printable(tostring(k)))
        end
    end
    local format = format_text(doc._format_version)
    if format ~= nil and not FORMATS[format] then
        return nil, fmt("%s: _format_version: expected one of: 1, 1.1, 2.1, 3.0",
            at(source, where, doc, "_format_version"))
    end
    if doc.node_id ~= nil and not is_uuid(doc.node_id) then
        return nil, fmt("%s: node_id: expected a valid UUID", at(source, where, doc, "node_id"))
    end

    local items, taken = {}, {}
    for _, kind in ipairs(kinds) do items[kind] = {} end
    for _, kind in ipairs(kinds) do
        local list = doc[kind]
        if list ~= nil and list ~= null then
            if type(list) ~= "table" or not is_array(list) then
                return nil, fmt("%s: %s: expected an array", at(source, where, doc, kind), kind)
            end
            for i, input in ipairs(list) do
                local ok, err, t, key = gather(items, kind, input, fmt("%s[%d]", kind, i), taken)
                if not ok then return nil, at(source, where, t, key) .. ": " .. err end
            end
        end
    end

    local s = index.build(index.empty_document(doc.node_id))
    for _, kind in ipairs(kinds) do
        for _, item in ipairs(items[kind]) do
            local row, err = crud.insert(s, kind, item.input)
            if not row then
                return nil, fmt("%s: %s%s: %s", at(source, where, item.source, erring_field(err)), item.where,
                    describe(kind, item.input), err.body.message)
            end
        end
    end
    return s
end

-- What a file's name says it holds: JSON (.json), else YAML (Kong's rule; YAML reads
-- most JSON too).
local function is_json(path)
    return path:lower():find("%.json$") ~= nil
end

-- load_text(text, path) -> index | nil, err
function _M.load_text(text, path)
    if not is_json(path) then
        local doc, where = yaml.decode(text)
        if doc == nil then
            -- "line 3: why" -> "kong.yml:3: why", as the entities' errors say it.
            local line, why = where:match("^line (%d+): (.*)$")
            if line then return nil, fmt("%s:%s: %s", path, line, why) end
            return nil, fmt("%s: %s", path, where)
        end
        return _M.load_document(doc, path, where)
    end
    local doc, jerr = core.json_decode(text)
    if doc == nil then return nil, fmt("%s: %s", path, jerr) end
    local s, err = _M.load_document(doc, path)
    if s or not yaml.available() then return s, err end
    -- A refused JSON file: its lines, from reading it again as YAML (JSON as written is
    -- YAML's flow style), to name the line of what was refused. Only for the message.
    local ydoc, where = yaml.decode(text)
    if ydoc == nil then return nil, err end
    local _, yerr = _M.load_document(ydoc, path, where)
    -- The same refusal, with a line: else the JSON reader's alone.
    local line, rest = (yerr or ""):match("^.-:(%d+)(: .*)$")
    if line and path .. rest == err then return nil, fmt("%s:%s%s", path, line, rest) end
    return nil, err
end

-- load_file(path) -> index | nil, err
function _M.load_file(path)
    local text, err = _M.read_file(path)
    if not text then return nil, "cannot read " .. tostring(err) end
    return _M.load_text(text, path)
end

return _M
