-- gateway.body: Admin API request bodies, read as Kong reads them.
--
--   application/json                   an object; keys with dots or brackets are
--                                      expanded too (httpie's `config.x=true`)
--   application/x-www-form-urlencoded  `config.per_consumer=true`, `service.id=...`,
--                                      `paths[]=/a`, `paths[1]=/a`, `paths=/a&paths=/b`
-- Values stay as sent (form values are strings); the schema coerces them.

local core = require "ngx_prometheus"

local type, pairs, ipairs, tonumber, tostring = type, pairs, ipairs, tonumber, tostring
local fmt, printable = string.format, core.printable
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

local function assign(root, path, value)
    local t = root
    for i = 1, #path - 1 do
        local k = path[i]
        if k == APPEND then k = #t + 1 end
        if type(t[k]) ~= "table" then t[k] = {} end
        t = t[k]
    end
    local last = path[#path]
    if last ~= APPEND then
        t[last] = value
    elseif type(value) == "table" then
        for _, v in ipairs(value) do t[#t + 1] = v end
    else
        t[#t + 1] = value
    end
end

local function is_compound(key)
    return type(key) == "string" and key:find("[.%[]") ~= nil
end

-- Plain keys first, then compound ones into them, in a stable order.
local function expand(args)
    local out, compound = {}, {}
    for k, v in pairs(args) do
        if is_compound(k) then compound[#compound + 1] = k else out[k] = v end
    end
    sort(compound)
    for _, k in ipairs(compound) do
        local path, err = parse_key(k)
        if not path then return nil, err end
        if #path > 0 then assign(out, path, args[k]) end
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

-- parse(raw, content_type) -> table | nil, status, message: a body as read() reads
-- it, from its bytes and its Content-Type header (nil when absent). Forms are decoded
-- by nginx (ngx.decode_args, without its 100-argument cap), then expanded as JSON is.
function _M.parse(raw, content_type)
    if not raw:find("%S") then return {} end
    local ctype = (content_type or ""):lower()
    local json = ctype:find("application/json", 1, true)
        -- Without a type, a body that looks like JSON is JSON (curl --data '{...}').
        or ctype == "" and raw:find("^%s*[{%[]")
    if json then
        local v, jerr = core.json_decode(raw)
        if v == nil then return nil, 400, "Cannot parse JSON body: " .. tostring(jerr) end
        if type(v) ~= "table" or getmetatable(v) == core.array_mt then
            return nil, 400, "Cannot parse JSON body: expected an object"
        end
        return expanded(v)
    end
    if ctype == "" or ctype:find("application/x-www-form-urlencoded", 1, true) then
        return expanded(ngx.decode_args(raw, 0))
    end
    return nil, 415, "Unsupported Content-Type: " .. printable(ctype)
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
