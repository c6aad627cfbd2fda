-- gateway.db.declarative: loads a configuration file (the state file, a seed file, a
-- Kong-style declarative file) into an index, checking every entity as the Admin API
-- would. Children may be nested inside their parent, as in Kong's declarative files;
-- entities without an id get one derived from what identifies them, the same on
-- every load.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local entities = require "gateway.entities"
local index = require "gateway.db.index"
local crud = require "gateway.db.crud"

local defs, kinds = entities.defs, entities.kinds
local printable = schema.printable
local is_uuid, is_array = schema.is_uuid, schema.is_array
local ipairs, pairs, type, tostring, tonumber, next = ipairs, pairs, type, tostring, tonumber, next
local fmt = string.format

local _M = {}

-- Kong's declarative formats, accepted in declarative and seed files.
local FORMATS = { ["1"] = true, ["1.1"] = true, ["2.1"] = true, ["3.0"] = true }

local ENOENT = 2

-- read_file(path) -> text | nil, err, missing: `missing` is true only when there is
-- no such file; any other failure (permissions, an I/O error) is not an absence, and
-- a caller that would make the file anew must not.
function _M.read_file(path)
    local f, err, code = io.open(path, "rb")
    if not f then return nil, err, code == ENOENT end
    local text, rerr = f:read("*a")
    f:close()
    if not text then return nil, path .. ": " .. tostring(rerr), false end
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

-- Appends `input` (and its nested children) to items[kind], each with an id.
local function gather(items, kind, input, where, taken)
    if type(input) ~= "table" or is_array(input) and next(input) ~= nil then
        return nil, where .. ": expected an object"
    end
    -- Kong's declarative files may list children inside their parent.
    local own, nested = {}, defs[kind].children
    for k, v in pairs(input) do own[k] = v end
    for _, n in ipairs(nested) do own[n.kind] = nil end
    if own.id == nil then own.id = stable_id(kind, own, taken) end
    local list = items[kind]
    list[#list + 1] = { input = own, where = where }
    for _, n in ipairs(nested) do
        local child_kind, field = n.kind, n.field
        local children = input[child_kind]
        if children ~= nil then
            if type(children) ~= "table" or not is_array(children) then
                return nil, fmt("%s.%s: expected an array", where, child_kind)
            end
            for i, c in ipairs(children) do
                local child = {}
                if type(c) == "table" then
                    for k, v in pairs(c) do child[k] = v end
                    child[field] = { id = own.id }
                else
                    child = c
                end
                local ok, err = gather(items, child_kind, child, fmt("%s.%s[%d]", where, child_kind, i), taken)
                if not ok then return nil, err end
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

-- load_document(doc, source) -> index | nil, err naming the entity and the field.
function _M.load_document(doc, source)
    -- Decoded JSON arrays carry array_mt; `{}` is an object (an empty configuration).
    if type(doc) ~= "table" or debug.getmetatable(doc) == core.array_mt then
        return nil, source .. ": expected a JSON object"
    end
    for k in pairs(doc) do
        if k ~= "_format_version" and k ~= "node_id" and not defs[k] then
            return nil, fmt("%s: %s: unknown field", source, printable(tostring(k)))
        end
    end
    local format = doc._format_version
    if format ~= nil and not FORMATS[format] then
        return nil, fmt("%s: _format_version: expected one of: 1, 1.1, 2.1, 3.0", source)
    end
    if doc.node_id ~= nil and not is_uuid(doc.node_id) then
        return nil, fmt("%s: node_id: expected a valid UUID", source)
    end

    local items, taken = {}, {}
    for _, kind in ipairs(kinds) do items[kind] = {} end
    for _, kind in ipairs(kinds) do
        local list = doc[kind]
        if list ~= nil then
            if type(list) ~= "table" or not is_array(list) then
                return nil, fmt("%s: %s: expected an array", source, kind)
            end
            for i, input in ipairs(list) do
                local ok, err = gather(items, kind, input, fmt("%s[%d]", kind, i), taken)
                if not ok then return nil, source .. ": " .. err end
            end
        end
    end

    local s = index.build(index.empty_document(doc.node_id))
    for _, kind in ipairs(kinds) do
        for _, item in ipairs(items[kind]) do
            local row, err = crud.insert(s, kind, item.input)
            if not row then
                return nil, fmt("%s: %s%s: %s", source, item.where, describe(kind, item.input), err.body.message)
            end
        end
    end
    return s
end

-- load_file(path) -> index | nil, err
function _M.load_file(path)
    local text, err = _M.read_file(path)
    if not text then return nil, "cannot read " .. tostring(err) end
    local doc, jerr = core.json_decode(text)
    if doc == nil then return nil, fmt("%s: %s", path, jerr) end
    return _M.load_document(doc, path)
end

return _M
