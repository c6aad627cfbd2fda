-- gateway.body: Admin API request bodies, read as Kong reads them.
--
--   application/json                   an object; keys with dots or brackets are
--                                      expanded too (httpie's `config.x=true`)
--   application/x-www-form-urlencoded  `config.per_consumer=true`, `service.id=...`,
--                                      `paths[]=/a`, `paths[1]=/a`, `paths=/a&paths=/b`
-- Values stay as sent (form values are strings); the schema coerces them.

local core = require "ngx_prometheus"

local type, pairs, ipairs, tonumber, tostring = type, pairs, ipairs, tonumber, tostring
-- debug's: mlua's array metatable hides itself from getmetatable.
local getmetatable, sort = debug.getmetatable, table.sort

local _M = {}

-- A key part `[]`: append to the array.
local APPEND = {}

-- "config.allow[]" -> { "config", "allow", APPEND }; "paths[2]" -> { "paths", 2 }
local function parse_key(key)
    local path = {}
    for part in key:gmatch("[^.]+") do
        local name, rest = part:match("^([^%[]*)(.*)$")
        if name ~= "" then path[#path + 1] = name end
        for sub in rest:gmatch("%[([^%]]*)%]") do
            path[#path + 1] = sub == "" and APPEND or tonumber(sub) or sub
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
        local path = parse_key(k)
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

-- read() -> table | nil, status, message
function _M.read()
    local raw, err = raw_body()
    if not raw then return nil, 500, "cannot read the request body: " .. tostring(err) end
    if not raw:find("%S") then return {} end
    local ctype = (ngx.var.content_type or ""):lower()
    local json = ctype:find("application/json", 1, true)
        -- Without a type, a body that looks like JSON is JSON (curl --data '{...}').
        or ctype == "" and raw:find("^%s*[{%[]")
    if json then
        local v, jerr = core.json_decode(raw)
        if v == nil then return nil, 400, "Cannot parse JSON body: " .. tostring(jerr) end
        if type(v) ~= "table" or getmetatable(v) == core.array_mt then
            return nil, 400, "Cannot parse JSON body: expected an object"
        end
        return expand(v)
    end
    if ctype == "" or ctype:find("application/x-www-form-urlencoded", 1, true) then
        return expand(ngx.decode_args(raw, 0))
    end
    return nil, 415, "Unsupported Content-Type: " .. ctype
end

return _M
