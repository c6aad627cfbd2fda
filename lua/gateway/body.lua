-- gateway.body: Admin API request bodies, read as Kong reads them.
--
--   application/json                   an object; keys with dots or brackets are
--                                      expanded too (httpie's `config.x=true`)
--   application/x-www-form-urlencoded  `config.per_consumer=true`, `service.id=...`,
--                                      `paths[]=/a`, `paths[1]=/a`, `paths=/a&paths=/b`
-- Values stay as sent (form values are strings); the schema coerces them.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"

local type, pairs, ipairs, next, tonumber, tostring = type, pairs, ipairs, next, tonumber, tostring
local fmt, printable = string.format, schema.printable
-- debug's: mlua's array metatable hides itself from getmetatable.
local getmetatable, sort = debug.getmetatable, table.sort

local _M = {}

-- A key part `[]`: append to the array.
local APPEND = {}

-- Indexes beyond this are refused: no list of any entity may be that long.
local MAX_INDEX = 1000

-- "config.allow[]" -> { "config", "allow", APPEND }; "paths[2]" -> { "paths", 2 };
-- "config.headers[x]" -> { "config", "headers", "x" }. An index is 1 to MAX_INDEX in
-- decimal digits; anything else in brackets is a map key (never a number: `[nan]`,
-- `[1e9]` and `[0x10]` are keys, so a list given them is refused as not a list).
local function parse_key(key)
    local path = {}
    for part in key:gmatch("[^.]+") do
        local name, rest = part:match("^([^%[]*)(.*)$")
        if name ~= "" then path[#path + 1] = name end
        for sub in rest:gmatch("%[([^%]]*)%]") do
            if sub == "" then
                path[#path + 1] = APPEND
            elseif sub:find("^%d+$") then
                local i = tonumber(sub)
                if i < 1 or i > MAX_INDEX then
                    return nil, fmt("%s: index %s is not between 1 and %d", printable(key), sub, MAX_INDEX)
                end
                path[#path + 1] = i
            else
                path[#path + 1] = sub
            end
        end
    end
    return path
end

-- Puts `value` at `path` in `root` -> true, or false when that would drop or mix what
-- another key gave: a compound key into a plain key's value that is not an object
-- (`tags=a&tags[]=b`, `config=x&config.y=1`), a list both appended to and indexed
-- (`paths[]` and `paths[1]`), or one place twice (`config.x` and `config[x]`). A
-- compound key may add fields to a plain key's object (`"config": {...}` beside
-- `"config.x"`, as httpie sends). `made` holds how the keys of each table that may be
-- added to were given: "[]", "[n]" or "name" (true: not yet).
-- A table decoded from a JSON object (not an array, nor a form's repeated key).
local function is_object(t)
    return type(t) == "table" and getmetatable(t) ~= core.array_mt and type(next(t)) ~= "number"
end

local function assign(root, path, value, made)
    local t, n = root, #path
    for i = 1, n do
        local k = path[i]
        if t ~= root then
            local style = k == APPEND and "[]" or type(k) == "number" and "[n]" or "name"
            if made[t] ~= true and made[t] ~= style then return false end
            made[t] = style
        end
        if k == APPEND then k = #t + 1 end
        if i == n then
            if path[i] == APPEND and type(value) == "table" then
                for _, v in ipairs(value) do t[#t + 1] = v end
            elseif t[k] ~= nil then
                return false
            else
                t[k] = value
            end
        else
            local sub = t[k]
            if sub == nil then
                sub = {}
                made[sub] = true
                t[k] = sub
            elseif not made[sub] then
                if not is_object(sub) then return false end
                made[sub] = "name"
            end
            t = sub
        end
    end
    return true
end

local function is_compound(key)
    return type(key) == "string" and key:find("[.%[]") ~= nil
end

-- Plain keys first, then compound ones into them, in a stable order.
local function expand(args)
    local out, compound, made = {}, {}, {}
    for k, v in pairs(args) do
        if is_compound(k) then compound[#compound + 1] = k else out[k] = v end
    end
    sort(compound)
    for _, k in ipairs(compound) do
        local path, err = parse_key(k)
        if not path then return nil, err end
        if #path > 0 and not assign(out, path, args[k], made) then
            return nil, fmt("%s: the field %s is given more than one way", printable(k),
                printable(tostring(path[1])))
        end
    end
    return out
end

local function raw_body()
    ngx.req.read_body()
    local data = ngx.req.get_body_data()
    if data then return data end
    -- Bodies beyond client_body_buffer_size are spooled to a file.
    local path = ngx.req.get_body_file()
    if not path then return "" end
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    data = f:read("*a")
    f:close()
    return data
end

local function expanded(args)
    local out, err = expand(args)
    if not out then return nil, 400, "Invalid key " .. err end
    return out
end

-- The media type of a Content-Type header: its type/subtype, lowercased, without
-- parameters ("" when absent).
local function media_type(content_type)
    local t = (content_type or ""):match("^[^;]*")
    return t:match("^[ \t]*(.-)[ \t]*$"):lower()
end
_M.media_type = media_type

-- parse(raw, content_type) -> table | nil, status, message: a body as read() reads
-- it, from its bytes and its Content-Type header (nil when absent). Forms are decoded
-- by nginx (ngx.decode_args, without its 100-argument cap), then expanded as JSON is.
function _M.parse(raw, content_type)
    if not raw:find("%S") then return {} end
    local mtype = media_type(content_type)
    local json = mtype == "application/json"
        -- Without a type, a body that looks like JSON is JSON (curl --data '{...}').
        or mtype == "" and raw:find("^%s*[{%[]")
    if json then
        local v, jerr = core.json_decode(raw)
        if v == nil then return nil, 400, "Cannot parse JSON body: " .. tostring(jerr) end
        if type(v) ~= "table" or getmetatable(v) == core.array_mt then
            return nil, 400, "Cannot parse JSON body: expected an object"
        end
        return expanded(v)
    end
    if mtype == "" or mtype == "application/x-www-form-urlencoded" then
        -- nginx's decoder drops a pair without a name (`=x`): refused instead, as any
        -- other key that names no field, rather than silently lost.
        if raw:find("^=") or raw:find("&=") then
            return nil, 400, "Invalid key (empty): a form field needs a name"
        end
        return expanded(ngx.decode_args(raw, 0))
    end
    return nil, 415, "Unsupported Content-Type: " .. printable((content_type or ""):lower())
end

-- expand(args) -> table | nil, err: keys with dots and brackets made into nested
-- tables and lists (the last step of parse, for JSON and forms alike).
_M.expand = expand

-- read() -> table | nil, status, message: the current request's body.
function _M.read()
    local raw, err = raw_body()
    if not raw then return nil, 500, "cannot read the request body: " .. tostring(err) end
    return _M.parse(raw, ngx.var.content_type)
end

return _M
