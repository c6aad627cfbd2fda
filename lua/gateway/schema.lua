-- gateway.schema: validates and normalizes input against Kong-like schemas.
--
--   local schema = require "gateway.schema"
--   local entity, errors = schema.validate(def, input, { partial = false })
--
-- A schema is { fields = { { <name> = <field> }, ... }, entity_checks = fn,
-- shorthands = { <name> = { type, expand = fn(v) -> fields | nil, err, description } } }:
-- fields are an ordered list of single-key tables.
-- A field has a `type` (string, boolean, integer, number, array, set, record, map,
-- foreign) and optional constraints: required, default (a value or a function),
-- unique (checked by the store), match (a Lua pattern; `match_err` overrides the
-- message), len_min, len_max, one_of, between, uuid, elements (array/set), keys and
-- values (map), fields / entity_checks (record), schema_for (record: a function of the
-- parent input returning a schema, for plugin configs; `variants` = { field, schemas =
-- fn() -> { [value of field] = schema } } names them all, for the description), reference and on_delete
-- (foreign; the store's, see gateway.entities), normalize (fn(v) -> v' | nil, err,
-- after the type checks) and custom (fn(v) -> true | nil, err, last); `description`
-- is documentation only.
-- With { partial = true } only the fields given are checked, without defaults,
-- required fields or entity checks, and null is kept (it means "unset").
--
-- Errors are nested like the input, with Kong's messages:
--   { port = "value should be between 0 and 65535", config = { buckets = "..." },
--     paths = { null, "should start with: /" } }
-- Input from forms arrives as strings: "true"/"false" and numbers are coerced, and an
-- array given once arrives as a scalar and is wrapped.

local core = require "ngx_prometheus"

local null, array_mt = core.null, core.array_mt
local utf8_valid, printable = core.utf8_valid, core.printable
local type, pairs, ipairs, next, tostring, tonumber = type, pairs, ipairs, next, tostring, tonumber
-- mlua protects its array metatable (__metatable = false): only debug.getmetatable sees it.
local setmetatable, getmetatable, floor, huge = setmetatable, debug.getmetatable, math.floor, math.huge
local concat, sort, fmt, byte = table.concat, table.sort, string.format, string.byte

local _M = {}

local function is_null(v)
    return v == nil or v == null
end

local function is_uuid(s)
    return type(s) == "string"
        and s:find("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
end
_M.is_uuid = is_uuid

local function as_array(t)
    return setmetatable(t, array_mt)
end
_M.as_array = as_array

-- A table is a JSON array if it was decoded as one or is a sequence; an empty table
-- without the array metatable is ambiguous (forms cannot say `[]`) and counts too.
local function is_array(t)
    if getmetatable(t) == array_mt then return true end
    local n = 0
    for k in pairs(t) do
        if type(k) ~= "number" then return false end
        n = n + 1
    end
    return n == #t
end
_M.is_array = is_array

-- The field definition tables of a schema, by name (built once per schema table).
local by_name_cache = setmetatable({}, { __mode = "k" })
local function fields_by_name(fields)
    local m = by_name_cache[fields]
    if not m then
        m = {}
        for _, f in ipairs(fields) do
            local name, def = next(f)
            m[name] = def
        end
        by_name_cache[fields] = m
    end
    return m
end
_M.fields_by_name = fields_by_name

--------------------------------------------------------------------------------
-- Single values.

-- A form's number as sent: decimal digits with an optional sign (and, for numbers, a
-- fraction and an exponent), nothing tonumber() would take besides (hex, spaces, inf).
-- An integer that a double cannot hold exactly (2^53 + 1) stays a string: refused.
local function decimal(v, integer)
    local rest = v:match("^%-?%d+(.*)$")
    if not rest then return nil end
    if not integer then rest = rest:gsub("^%.%d+", "", 1):gsub("^[eE][-+]?%d+$", "", 1) end
    if rest ~= "" then return nil end
    local n = tonumber(v)
    if integer and (n >= 2 ^ 53 or n <= -2 ^ 53) then
        local digits = v:gsub("^%-", ""):gsub("^0+(%d)", "%1")
        if fmt("%.0f", n < 0 and -n or n) ~= digits then return nil end
    end
    return n
end

local function coerce(def, v)
    local t = def.type
    if type(v) == "string" then
        if t == "boolean" then
            if v == "true" then return true elseif v == "false" then return false end
        elseif t == "integer" or t == "number" then
            return decimal(v, t == "integer") or v
        end
    end
    if (t == "array" or t == "set") and type(v) ~= "table" then
        return { v }
    end
    if t == "foreign" and type(v) == "string" then
        return is_uuid(v) and { id = v } or { name = v }
    end
    return v
end

local function list_text(values)
    local out = {}
    for i, v in ipairs(values) do out[i] = tostring(v) end
    return concat(out, ", ")
end

local function check_one_of(def, v)
    if not def.one_of then return true end
    for _, allowed in ipairs(def.one_of) do
        if v == allowed then return true end
    end
    return nil, "expected one of: " .. list_text(def.one_of)
end

local function check_length(def, n)
    if def.len_min and n < def.len_min then
        return nil, "length must be at least " .. def.len_min
    end
    if def.len_max and n > def.len_max then
        return nil, "length must be at most " .. def.len_max
    end
    return true
end

-- The code point of the UTF-8 sequence at `i` of valid UTF-8 `s`, and its length.
local function code_point(s, i)
    local c = byte(s, i)
    if c < 0x80 then return c, 1 end
    local n = c >= 0xF0 and 4 or c >= 0xE0 and 3 or 2
    local cp = c % (2 ^ (7 - n))
    for k = 1, n - 1 do cp = cp * 64 + byte(s, i + k) % 64 end
    return cp, n
end

-- Code points beyond ASCII a stored string may not hold: controls (Cc: C1), format
-- characters (Cf: bidirectional overrides and isolates, zero-width characters, soft
-- hyphen, BOM, tag characters...) and the line and paragraph separators (Zl, Zp).
-- They would reorder, hide or break the line of a label value, a log line or a
-- message the string ends up in. Unicode 15's Cc/Cf/Zl/Zp outside ASCII, as ranges.
local REFUSED = {
    { 0x80, 0x9F }, { 0xAD, 0xAD }, { 0x600, 0x605 }, { 0x61C, 0x61C }, { 0x6DD, 0x6DD },
    { 0x70F, 0x70F }, { 0x890, 0x891 }, { 0x8E2, 0x8E2 }, { 0x180E, 0x180E }, { 0x200B, 0x200F },
    { 0x2028, 0x202E }, { 0x2060, 0x2064 }, { 0x2066, 0x206F }, { 0xFEFF, 0xFEFF },
    { 0xFFF9, 0xFFFB }, { 0x110BD, 0x110BD }, { 0x110CD, 0x110CD }, { 0x13430, 0x1343F },
    { 0x1BCA0, 0x1BCA3 }, { 0x1D173, 0x1D17A }, { 0xE0001, 0xE0001 }, { 0xE0020, 0xE007F },
}

local function is_refused(cp)
    if cp < 0x80 then return false end
    for _, r in ipairs(REFUSED) do
        if cp >= r[1] and cp <= r[2] then return true end
    end
    return false
end

-- The first refused code point in valid UTF-8 `s`, or nil.
local function refused_code_point(s)
    if not s:find("[\128-\255]") then return nil end
    local i = 1
    while i <= #s do
        local cp, n = code_point(s, i)
        if is_refused(cp) then return cp end
        i = i + n
    end
    return nil
end

local function hex_bytes(c)
    return (c:gsub(".", function(b) return fmt("\\x%02X", byte(b)) end))
end

-- `s` safe in a message or a log line: core.printable (control characters, backslashes
-- and invalid bytes as \xNN), and the refused characters above as \xNN too, so that
-- what a client sent can neither reorder nor break the line that shows it.
local function safe_text(s)
    local p = printable(s)
    if not refused_code_point(p) then return p end
    local out, i = {}, 1
    while i <= #p do
        local cp, n = code_point(p, i)
        local piece = p:sub(i, i + n - 1)
        out[#out + 1] = is_refused(cp) and hex_bytes(piece) or piece
        i = i + n
    end
    return concat(out)
end
_M.printable = safe_text



-- A value as an error message shows it: safe_text, and cut after 100 bytes.
local function shown(v)
    if #v > 100 then return safe_text(v:sub(1, 100)) .. "..." end
    return safe_text(v)
end
_M.shown = shown

-- Every string stored is valid UTF-8 without control, format or line separator
-- characters: it may end up in a JSON answer, a log line, a header or a label value.
local function check_string(def, v)
    if type(v) ~= "string" then return nil, "expected a string" end
    if not utf8_valid(v) then return nil, "invalid UTF-8: " .. shown(v) end
    if v:find("%c") then return nil, "control characters are not allowed: " .. shown(v) end
    local cp = refused_code_point(v)
    if cp then
        return nil, fmt("control, format and separator characters are not allowed: U+%04X in %s", cp, shown(v))
    end
    local ok, err = check_length(def, #v)
    if not ok then return nil, err end
    if def.uuid and not is_uuid(v) then return nil, "expected a valid UUID" end
    if def.match and not v:find(def.match) then
        return nil, def.match_err or ("invalid value: " .. shown(v))
    end
    ok, err = check_one_of(def, v)
    if not ok then return nil, err end
    return v
end

-- A bound as a message shows it: integers in full digits (never "9.007199254741e+15").
local function number_text(x)
    if floor(x) == x and x < 2 ^ 63 and x > -2 ^ 63 then return fmt("%.0f", x) end
    return tostring(x)
end

-- Integers beyond 2^53 are not all representable (a double's 53 bits): none is
-- accepted. Literals that would round (2^53 + 1 to 2^53) are refused where they are
-- read: by json_decode for JSON, by decimal() for forms (left a string, refused here).
local MAX_INTEGER = 2 ^ 53

local function check_number(def, v)
    if def.type == "integer" and type(v) == "string" and v:find("^%-?%d+$") then
        return nil, "integer cannot be represented exactly: " .. shown(v)
    end
    if type(v) ~= "number" or v ~= v or v == huge or v == -huge then
        return nil, def.type == "integer" and "expected an integer" or "expected a number"
    end
    if def.type == "integer" then
        if floor(v) ~= v then return nil, "expected an integer" end
        if v > MAX_INTEGER or v < -MAX_INTEGER then
            return nil, "integer out of the exactly representable range (-2^53 to 2^53)"
        end
    end
    -- -0 is 0: stored, compared and shown as 0, never as "-0" or "-0.0".
    if v == 0 then v = 0 end
    local range = def.between
    if range and (v < range[1] or v > range[2]) then
        return nil, "value should be between " .. number_text(range[1]) .. " and " .. number_text(range[2])
    end
    local ok, err = check_one_of(def, v)
    if not ok then return nil, err end
    return v
end

local function check_boolean(_, v)
    if type(v) ~= "boolean" then return nil, "expected a boolean" end
    return v
end

local validate_record, validate_value

-- Arrays and sets: every element is checked; errors sit at the element's index, with
-- nulls before it, as Kong (cjson) reports them.
local function check_list(def, v, opts)
    if type(v) ~= "table" or not is_array(v) then
        return nil, def.type == "set" and "expected a set" or "expected an array"
    end
    local ok, err = check_length(def, #v)
    if not ok then return nil, err end
    local out, errs, last_bad, seen = {}, {}, 0, {}
    for i = 1, #v do
        local e, eerr = v[i], nil
        -- A list holds values: null is no element (nor a default's place).
        if e == null then
            eerr = "null is not allowed"
        elseif def.elements then
            e, eerr = validate_value(def.elements, v[i], opts, v)
        end
        if eerr then
            errs[i], last_bad = eerr, i
        elseif def.type == "array" or not seen[e] then
            seen[e] = true
            out[#out + 1] = e
        end
    end
    if last_bad > 0 then
        for i = 1, last_bad do
            if errs[i] == nil then errs[i] = null end
        end
        return nil, as_array(errs)
    end
    return as_array(out)
end

local function check_map(def, v, opts)
    if type(v) ~= "table" or (next(v) ~= nil and is_array(v)) then
        return nil, "expected a map"
    end
    local out, errs = {}, nil
    for k, val in pairs(v) do
        local nk, kerr = k, nil
        if def.keys then nk, kerr = validate_value(def.keys, k, opts, v) end
        local nv, verr = val, nil
        if val == null then
            verr = "null is not allowed"
        elseif def.values then
            nv, verr = validate_value(def.values, val, opts, v)
        end
        if kerr or verr then
            errs = errs or {}
            errs[safe_text(tostring(k))] = kerr or verr
        else
            out[nk] = nv
        end
    end
    if errs then return nil, errs end
    return out
end

-- Names and usernames are at most 256 bytes: a longer reference names nothing.
local REFERENCE_NAME = { type = "string", len_min = 1, len_max = 256 }

-- A reference to another entity: { id = <uuid> } or { name = <endpoint key> }; the
-- store resolves it and keeps { id = ... }.
local function check_foreign(_, v)
    if type(v) ~= "table" or is_array(v) and next(v) ~= nil then
        return nil, "expected a record"
    end
    local errs = {}
    for k in pairs(v) do
        if k ~= "id" and k ~= "name" then errs[safe_text(tostring(k))] = "unknown field" end
    end
    if v.id ~= nil and v.name ~= nil then
        errs.name = "only one of 'id' and 'name' may be given"
    elseif v.id == nil and v.name == nil then
        errs.id = "required field missing"
    elseif v.id ~= nil and not is_uuid(v.id) then
        errs.id = "expected a valid UUID"
    elseif v.name ~= nil then
        -- Only looked up, but shown in the answer when nothing has that name.
        local _, nerr = check_string(REFERENCE_NAME, v.name)
        if nerr then errs.name = nerr end
    end
    if next(errs) then return nil, errs end
    return v.id and { id = v.id } or { name = v.name }
end

local function check_record(def, v, opts, parent)
    if type(v) ~= "table" or next(v) ~= nil and is_array(v) then
        return nil, "expected a record"
    end
    local sch = def
    if def.schema_for then
        sch = def.schema_for(parent)
        -- No schema (an unknown plugin): the parent reports why; nothing to check here.
        if not sch then return v end
    end
    return validate_record(sch, v, opts)
end

local CHECK = {
    string = check_string,
    integer = check_number,
    number = check_number,
    boolean = check_boolean,
    array = check_list,
    set = check_list,
    map = check_map,
    record = check_record,
    foreign = check_foreign,
}

local function default_of(def)
    local d = def.default
    if type(d) == "function" then return d() end
    if type(d) == "table" then
        -- A fresh copy: entities must never share (and later mutate) the schema's table.
        local copy = {}
        for k, v in pairs(d) do copy[k] = v end
        return setmetatable(copy, getmetatable(d))
    end
    return d
end

-- validate_value(def, v, opts, parent) -> normalized | nil (absent) | nil, err
function validate_value(def, v, opts, parent)
    if is_null(v) then
        if opts.partial then
            -- PATCH-like input: null unsets, absent leaves alone; both stay as given.
            if v == null and def.required then return nil, "required field missing" end
            return v
        end
        if def.default ~= nil then
            v = default_of(def)
        elseif def.type == "record" then
            -- Records are always present so that their defaults apply.
            v = {}
        elseif def.required then
            return nil, "required field missing"
        else
            return nil
        end
    end
    local check = CHECK[def.type]
    if not check then
        error("schema: unknown field type " .. tostring(def.type), 0)
    end
    local out, err = check(def, coerce(def, v), opts, parent)
    if err then return nil, err end
    if def.normalize then
        out, err = def.normalize(out)
        if err then return nil, err end
    end
    if def.custom then
        local ok, cerr = def.custom(out)
        if not ok then return nil, cerr end
    end
    return out
end

local function apply_shorthands(sch, input, errs)
    if not sch.shorthands then return input end
    local expanded
    for name, shorthand in pairs(sch.shorthands) do
        local v = input[name]
        if v ~= nil then
            if not expanded then
                expanded = {}
                for k, val in pairs(input) do expanded[k] = val end
            end
            expanded[name] = nil
            local fields, err = shorthand.expand(v)
            if not fields then
                errs[name] = err
            else
                for k, val in pairs(fields) do expanded[k] = val end
            end
        end
    end
    return expanded or input
end

-- validate_record(schema, input, opts) -> normalized | nil, errors
function validate_record(sch, input, opts)
    local errs = {}
    input = apply_shorthands(sch, input, errs)
    local known = fields_by_name(sch.fields)
    for k in pairs(input) do
        if type(k) ~= "string" or not known[k] then errs[safe_text(tostring(k))] = "unknown field" end
    end
    local out = {}
    for _, f in ipairs(sch.fields) do
        local name, def = next(f)
        if not opts.partial or input[name] ~= nil then
            local v, err = validate_value(def, input[name], opts, input)
            if err then errs[name] = err else out[name] = v end
        end
    end
    if next(errs) == nil and sch.entity_checks and not opts.partial then
        local ok, cerrs = sch.entity_checks(out)
        if not ok then errs = cerrs end
    end
    if next(errs) ~= nil then return nil, errs end
    return out
end

-- validate(schema, input, opts) -> entity with defaults | nil, errors
function _M.validate(sch, input, opts)
    opts = opts or {}
    if type(input) ~= "table" or next(input) ~= nil and is_array(input) then
        return nil, { ["@entity"] = as_array({ "expected a record" }) }
    end
    return validate_record(sch, input, opts)
end

-- check_value(field, v) -> normalized | nil, err: one value against one field
-- definition (a query parameter held to a field's rules).
function _M.check_value(def, v)
    return validate_value(def, v, {})
end

local function is_record(t)
    return type(t) == "table" and getmetatable(t) ~= array_mt and (next(t) == nil or not is_array(t))
end

-- merge(schema, old, patch) -> a new input: patch over old, as Kong's PATCH does it.
-- A record given in both is merged field by field (so `config.x` alone changes only
-- x); anything else is replaced; null unsets (the default, if any, applies again).
-- Records whose fields depend on the entity (plugin configs) merge by shape.
function _M.merge(sch, old, patch)
    local fields = sch and sch.fields and fields_by_name(sch.fields)
    local out = {}
    for k, v in pairs(old) do out[k] = v end
    for k, v in pairs(patch) do
        local def = fields and fields[k]
        if v == null then
            out[k] = nil
        elseif is_record(v) and is_record(out[k]) and (not fields or def and def.type == "record") then
            out[k] = _M.merge(def and def.fields and def, out[k], v)
        else
            out[k] = v
        end
    end
    return out
end

--------------------------------------------------------------------------------
-- Error text.

-- "path: message" for every leaf error, sorted; entity-wide ones ("@entity") bare.
local function flatten(errs, prefix, out)
    for k, v in pairs(errs) do
        local path = prefix and (prefix .. "." .. tostring(k)) or tostring(k)
        if k == "@entity" and type(v) == "table" then
            for _, msg in ipairs(v) do out[#out + 1] = prefix and (prefix .. ": " .. msg) or msg end
        elseif type(v) == "table" then
            flatten(v, path, out)
        elseif v ~= null then
            out[#out + 1] = path .. ": " .. tostring(v)
        end
    end
    return out
end

-- Kong's summary: "schema violation (port: ...)" or "2 schema violations (a: ...; b: ...)".
function _M.message(errs)
    local lines = flatten(errs, nil, {})
    sort(lines)
    if #lines == 1 then
        return "schema violation (" .. lines[1] .. ")"
    end
    return #lines .. " schema violations (" .. concat(lines, "; ") .. ")"
end

return _M
