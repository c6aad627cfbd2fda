-- Stands in for the Rust module (`require "ngx_prometheus"`) under busted: the real
-- one links nginx's symbols and loads only inside nginx. Only what the pure modules
-- use, with the same conventions: `null` is one sentinel, decoded JSON arrays carry
-- `array_mt` and objects no metatable, printable() escapes controls, backslashes and
-- bytes outside valid UTF-8 as \xNN. The real functions are tested in Rust
-- (src/lua/util.rs) and by the integration suites; anything else raises.
local json = require "dkjson"

local byte, fmt, concat = string.byte, string.format, table.concat

local M = {}

M.null = json.null
M.array_mt = { __jsontype = "array" }

-- The length of the valid UTF-8 sequence at `i`, or nil.
local function sequence(s, i)
    local c = byte(s, i)
    if c < 0x80 then return 1 end
    local n, min
    if c >= 0xC2 and c <= 0xDF then n, min = 2, 0x80
    elseif c >= 0xE0 and c <= 0xEF then n, min = 3, 0x800
    elseif c >= 0xF0 and c <= 0xF4 then n, min = 4, 0x10000
    else return nil end
    local cp = c % (2 ^ (7 - n))
    for k = 1, n - 1 do
        local b = byte(s, i + k)
        if not b or b < 0x80 or b > 0xBF then return nil end
        cp = cp * 64 + b % 64
    end
    if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return nil end
    return n, cp
end

function M.utf8_valid(s)
    local i = 1
    while i <= #s do
        local n = sequence(s, i)
        if not n then return false end
        i = i + n
    end
    return true
end

function M.printable(s)
    local out, i = {}, 1
    while i <= #s do
        local n, cp = sequence(s, i)
        if not n or cp and (cp < 0x20 or cp == 0x7F or cp == 0x5C or cp >= 0x80 and cp <= 0x9F)
            or n == 1 and (byte(s, i) < 0x20 or byte(s, i) == 0x7F or byte(s, i) == 0x5C) then
            for k = i, i + (n or 1) - 1 do out[#out + 1] = fmt("\\x%02X", byte(s, k)) end
        else
            out[#out + 1] = s:sub(i, i + n - 1)
        end
        i = i + (n or 1)
    end
    return concat(out)
end

function M.json_decode(text)
    local v, _, err = json.decode(text, 1, M.null, nil, M.array_mt)
    if err then return nil, "invalid JSON: " .. err end
    return v
end

function M.json_encode(v)
    local ok, text = pcall(json.encode, v)
    if not ok or not text then return nil, "cannot encode as JSON: " .. tostring(text) end
    return text
end

math.randomseed(os.time())
function M.uuid()
    local b = {}
    for i = 1, 16 do b[i] = math.random(0, 255) end
    b[7] = b[7] % 16 + 0x40
    b[9] = b[9] % 64 + 0x80
    local h = fmt(("%02x"):rep(16), unpack(b))
    return fmt("%s-%s-%s-%s-%s", h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20), h:sub(21, 32))
end

return setmetatable(M, { __index = function(_, k)
    error("ngx_prometheus." .. tostring(k) .. " has no stand-in in unit tests", 2)
end })
