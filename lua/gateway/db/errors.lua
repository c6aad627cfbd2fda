-- gateway.db.errors: the store's errors, { status, body } with Kong's codes and
-- messages. The Admin API sends them as they are; a declarative file's loader quotes
-- body.message.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"

local printable, null = schema.printable, core.null
local ipairs, pairs, type, tostring = ipairs, pairs, type, tostring
local fmt, concat, sort = string.format, table.concat, table.sort

local _M = {}

local function fail(status, code, name, message, fields)
    return { status = status, body = { code = code, name = name, message = message, fields = fields } }
end
_M.fail = fail

-- Kong prints keys as Lua tables: {name="x"} (sorted keys).
local function repr(v)
    if type(v) == "string" then return '"' .. printable(v) .. '"' end
    if v == null then return "null" end
    if type(v) ~= "table" then return tostring(v) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = k .. "=" .. repr(v[k]) end
    return "{" .. concat(parts, ",") .. "}"
end
_M.repr = repr

function _M.schema(errs)
    return fail(400, 2, "schema violation", schema.message(errs), errs)
end

function _M.primary_key(id)
    return fail(409, 3, "primary key violation", fmt("primary key violation on key '%s'", repr({ id = id })),
        { id = id })
end

function _M.foreign_key(field, reference, key)
    return fail(400, 4, "foreign key violation",
        fmt("the foreign key '%s' does not reference an existing '%s' entity.", repr(key), reference),
        { [field] = key })
end

function _M.referenced(kind, child)
    return fail(400, 4, "foreign key violation",
        fmt("an existing '%s' entity references this '%s' entity", child, kind),
        { ["@referenced_by"] = child })
end

function _M.unique(fields)
    return fail(409, 5, "unique constraint violation", fmt("UNIQUE violation detected on '%s'", repr(fields)),
        fields)
end

-- Logged here: a 500's body says what failed, the log keeps it for the operator.
function _M.internal(message)
    ngx.log(ngx.ERR, "gateway: ", printable(message))
    return fail(500, 8, "database error", message)
end

-- Another write held the configuration lock for the whole wait (a state write stalled
-- on a slow disk): nothing was changed, the client may try again.
function _M.busy(message)
    ngx.log(ngx.ERR, "gateway: ", printable(message))
    return fail(503, 8, "database busy", message .. "; nothing was changed, try again")
end

function _M.too_large(size, limit)
    return fail(400, 13, "configuration too large", fmt(
        "the configuration would take %d bytes of JSON, more than the limit of %d "
        .. "(half of lua_shared_dict gateway_config)", size, limit))
end

function _M.dbless()
    return fail(405, 12, "operation unsupported", "cannot change entities in DB-less mode")
end

-- "global", or the scope of a plugin: "route <id>, consumer <id>".
local function scope_text(p)
    local parts = {}
    for _, f in ipairs({ "service", "route", "consumer" }) do
        if p[f] then parts[#parts + 1] = f .. " " .. p[f].id end
    end
    return #parts == 0 and "global" or concat(parts, ", ")
end

function _M.plugin_conflict(row, other, why)
    return fail(400, 2, "schema violation", fmt(
        "plugin '%s' %s (%s) conflicts with plugin '%s' %s (%s): %s",
        row.name, row.id, scope_text(row), other.name, other.id, scope_text(other), why),
        { config = why })
end

return _M
