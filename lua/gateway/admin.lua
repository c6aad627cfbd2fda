-- gateway.admin: the Admin API, with Kong's routes and response shapes.
--
--   GET /                                  node info
--   GET /status                            gateway.status (GET /metrics: the module's
--                                          handler, conf/gateway.conf)
--   GET /openapi.json                      this API's description (gateway.openapi)
--   GET /plugins/enabled, GET /schemas/plugins/{name}   Kong's plugin names and schema
--   GET|POST /<collection>                 services, routes, consumers, plugins,
--                                          upstreams, key-auths
--   GET|PATCH|PUT|DELETE /<collection>/{id or name}
--   GET|POST /<parent>/{id or name}/<children>, and .../<children>/{id or key}:
--     services/routes, services/plugins, routes/plugins, consumers/plugins,
--     consumers/key-auth, upstreams/targets
-- The entity routes are derived from the entity definitions (gateway.endpoints); the
-- handlers below are the same for every kind.
--
-- Entity reads come from this worker's snapshot, brought up to date first (a client
-- reads its own writes whichever worker answers); writes go through db.write. Every
-- response says which worker answered and which configuration version it had.

local core = require "ngx_prometheus"
local db = require "gateway.db"
local entities = require "gateway.entities"
local endpoints = require "gateway.endpoints"
local plugins = require "gateway.plugins"
local body = require "gateway.body"
local schema = require "gateway.schema"

local defs = entities.defs
local null, array_mt = core.null, core.array_mt
local ipairs, next, type, tonumber, tostring = ipairs, next, type, tonumber, tostring
local setmetatable, pcall, xpcall, traceback = setmetatable, pcall, xpcall, debug.traceback
local fmt, sort = string.format, table.sort

local _M = {}

local DEFAULT_SIZE, MAX_SIZE = endpoints.PAGE.default, endpoints.PAGE.max

local NOT_FOUND = { status = 404, body = { message = "Not found" } }

--------------------------------------------------------------------------------
-- Responses.

local function stamp()
    local snap = db.snapshot()
    ngx.header["X-Gateway-Worker"] = ngx.worker.pid()
    ngx.header["X-Gateway-Config-Version"] = snap and snap.version or 0
end

-- send(status, value): `value` as JSON (none for nil), with the worker headers.
local function send(status, value)
    ngx.status = status
    stamp()
    if value == nil then return end
    local text, err = core.json_encode(value)
    if not text then error("cannot encode the response: " .. tostring(err)) end
    ngx.header.content_type = "application/json; charset=utf-8"
    ngx.print(text)
end
_M.send = send

-- What a plugin write changes about which instance records what: a narrower instance
-- that turns off what a wider one records (gateway.plugins.shadow_warnings). Worked
-- out on the working copy `s`; said once the change is stored.
local function shadowing(kind, row, s)
    if kind ~= "plugins" or not row then return nil end
    return plugins.shadow_warnings(row, s.plugins)
end

-- The warnings in the log and in the response, as `Warning: 299` headers (the text a
-- quoted-string, control characters escaped).
local function warn(warnings)
    if not warnings or #warnings == 0 then return end
    local values = {}
    for i, w in ipairs(warnings) do
        local shown = schema.printable(w)
        ngx.log(ngx.WARN, "gateway admin: ", shown)
        values[i] = '299 gateway "' .. shown:gsub('[\\"]', "\\%0") .. '"'
    end
    ngx.header["Warning"] = values
end

local function send_error(err)
    return send(err.status, err.body)
end

local function method_not_allowed(allowed)
    ngx.header["Allow"] = allowed
    return send(405, { message = "Method not allowed" })
end

-- An entity as Kong shows it: every field present, null when unset.
function _M.render(kind, row)
    local out = {}
    for _, f in ipairs(defs[kind].schema.fields) do
        local name = next(f)
        local v = row[name]
        if v == nil then v = null end
        out[name] = v
    end
    return out
end

--------------------------------------------------------------------------------
-- Lists, in creation order. The offset names the last entity of the previous page
-- (and its creation time, should it be deleted before the next page is asked for).

local positions_cache = setmetatable({}, { __mode = "k" })

-- id -> index in snap.list[kind], once per snapshot.
local function positions(snap, kind)
    local cache = positions_cache[snap]
    if not cache then
        cache = {}
        positions_cache[snap] = cache
    end
    local pos = cache[kind]
    if not pos then
        pos = {}
        for i, r in ipairs(snap.list[kind]) do pos[r.id] = i end
        cache[kind] = pos
    end
    return pos
end

-- Creation times are integers from 0 to 2^53 (the schema's bound; never -0): written
-- in full digits, never as "1e+15" or "-0", so every accepted value round-trips.
local function encode_offset(row)
    return ngx.encode_base64(fmt("%.0f:%s", row.created_at, row.id))
end

local function decode_offset(token)
    local text = type(token) == "string" and ngx.decode_base64(token)
    local created_at, id = (text or ""):match("^(%d+):(.+)$")
    if not created_at or not schema.is_uuid(id) then return nil end
    return { created_at = tonumber(created_at), id = id }
end

-- Where the page after `after` starts. Without its anchor (deleted meanwhile) it
-- starts with the anchor's second again: a client may see an entity twice, never miss one.
local function first_index(snap, kind, after)
    if not after then return 1 end
    local i = positions(snap, kind)[after.id]
    if i then return i + 1 end
    local rows = snap.list[kind]
    for j, row in ipairs(rows) do
        if row.created_at >= after.created_at then return j end
    end
    return #rows + 1
end

local function belongs(row, scope)
    if not scope then return true end
    local ref = row[scope.field]
    return ref ~= nil and ref.id == scope.id
end

local function page_size(args)
    if args.size == nil then return DEFAULT_SIZE end
    -- Decimal digits only: tonumber() would also take "0x10", " 5" and "1e2".
    if type(args.size) ~= "string" or not args.size:find("^%d+$") then return nil end
    local size = tonumber(args.size)
    if size < 1 or size > MAX_SIZE then return nil end
    return size
end

-- Kong's ?tags=: "a,b" lists the entities tagged a and b, "a/b" those tagged a or b.
local MAX_FILTER_TAGS = endpoints.MAX_FILTER_TAGS

local function invalid_tags(why)
    return { code = 10, name = "invalid options", message = "invalid option (tags: " .. why .. ")",
             fields = { tags = why } }
end

-- tag_filter(args) -> nil (no filter) | { any = bool, [i] = tag } | false, error body
local function tag_filter(args)
    local given = args.tags
    if given == nil then return nil end
    if type(given) ~= "string" then
        return false, invalid_tags(given == true and "expected a value" or "given more than once")
    end
    local has_and, has_or = given:find(",", 1, true), given:find("/", 1, true)
    if has_and and has_or then
        return false, invalid_tags("cannot mix ',' (and) with '/' (or)")
    end
    local filter, sep = { any = has_or ~= nil }, has_or and "/" or ","
    for tag in (given .. sep):gmatch("(.-)" .. sep) do
        if #filter == MAX_FILTER_TAGS then
            return false, invalid_tags(fmt("cannot query more than %d tags", MAX_FILTER_TAGS))
        end
        local _, err = schema.check_value(entities.TAG, tag)
        if err then return false, invalid_tags(tag == "" and "a tag is empty" or err) end
        filter[#filter + 1] = tag
    end
    return filter
end

local function tagged(row, filter)
    if not filter then return true end
    local tags = row.tags
    if not tags then return false end
    for _, want in ipairs(filter) do
        local found = false
        for _, t in ipairs(tags) do
            if t == want then
                found = true
                break
            end
        end
        if found == filter.any then return found end
    end
    return not filter.any
end

local function list(kind, scope, snap)
    local args = ngx.req.get_uri_args()
    local size = page_size(args)
    if not size then
        return send(400, { code = 9, name = "invalid size",
                           message = fmt("size must be an integer between 1 and %d", MAX_SIZE) })
    end
    local filter, ferr = tag_filter(args)
    if filter == false then return send(400, ferr) end
    local after
    if type(args.offset) == "table" then
        return send(400, { code = 7, name = "invalid offset", message = "offset is given more than once" })
    elseif args.offset ~= nil then
        after = decode_offset(args.offset)
        if not after then
            return send(400, { code = 7, name = "invalid offset",
                               message = fmt("'%s' is not a valid offset", schema.shown(tostring(args.offset))) })
        end
    end
    local rows, data, last, more = snap.list[kind], {}, nil, false
    for i = first_index(snap, kind, after), #rows do
        local row = rows[i]
        if belongs(row, scope) and tagged(row, filter) then
            if #data == size then
                more = true
                break
            end
            data[#data + 1] = _M.render(kind, row)
            last = row
        end
    end
    local offset = more and encode_offset(last) or nil
    local next_page = null
    if offset then
        -- Kong's next page keeps the path; we keep an explicit size too.
        next_page = fmt("%s?offset=%s%s%s", ngx.var.uri, ngx.escape_uri(offset),
            args.size and "&size=" .. size or "", filter and "&tags=" .. ngx.escape_uri(args.tags) or "")
    end
    return send(200, { data = setmetatable(data, array_mt), offset = offset, next = next_page })
end

--------------------------------------------------------------------------------
-- Entity handlers. `scope` = { field, id } confines them to a parent's children.

local function read_input(scope)
    local input, status, message = body.read()
    if not input then return nil, { status = status, body = { message = message } } end
    -- Under a parent, the reference to it is the URL's, whatever the body says.
    if scope then input[scope.field] = { id = scope.id } end
    return input
end

local function create(kind, scope)
    local input, err = read_input(scope)
    if not input then return send_error(err) end
    local warnings
    local row, werr = db.write(function(s, now)
        local row, ierr = db.insert(s, kind, input, now)
        warnings = shadowing(kind, row, s)
        return row, ierr
    end)
    if not row then return send_error(werr) end
    warn(warnings)
    return send(201, _M.render(kind, row))
end

local function get(kind, key, scope, snap)
    local row = db.find(snap, kind, key, scope)
    if not row then return send_error(NOT_FOUND) end
    return send(200, _M.render(kind, row))
end

local function patch(kind, key, scope)
    local input, err = read_input(scope)
    if not input then return send_error(err) end
    local warnings
    local row, werr = db.write(function(s, now)
        local old = db.find(s, kind, key, scope)
        if not old then return nil, NOT_FOUND end
        local new, uerr = db.update(s, kind, old, db.merge(kind, old, input), now)
        warnings = shadowing(kind, new, s)
        return new, uerr
    end)
    if not row then return send_error(werr) end
    warn(warnings)
    return send(200, _M.render(kind, row))
end

-- PUT: the body replaces the entity named by the URL, or creates it with that id or
-- name (Kong's upsert).
local function put(kind, key, scope)
    local input, err = read_input(scope)
    if not input then return send_error(err) end
    local endpoint_key = defs[kind].endpoint_key
    local warnings
    local row, werr = db.write(function(s, now)
        local old = db.find(s, kind, key, scope)
        if not schema.is_uuid(key) then
            if not endpoint_key then return nil, NOT_FOUND end
            input[endpoint_key] = key
        elseif not old then
            input.id = key
        end
        local new, uerr
        if old then
            new, uerr = db.update(s, kind, old, input, now)
        else
            new, uerr = db.insert(s, kind, input, now)
        end
        warnings = shadowing(kind, new, s)
        return new, uerr
    end)
    if not row then return send_error(werr) end
    warn(warnings)
    return send(200, _M.render(kind, row))
end

-- Deleting what does not exist succeeds, as in Kong. What a write removed (deleted,
-- renamed) reaches the plugins through db.write (gateway.db.removed): the series
-- labelled with it leave the zone before the answer.
local function delete(kind, key, scope)
    local ok, err = db.write(function(s)
        local old = db.find(s, kind, key, scope)
        if not old then return true end
        local gone, derr = db.delete(s, kind, old)
        if not gone then return nil, derr end
        return true
    end)
    if not ok then return send_error(err) end
    return send(204)
end

local ACTION = { POST = "create", PUT = "create or update", PATCH = "update", DELETE = "delete" }

local function dbless_refusal(method, kind)
    return send(405, { code = 12, name = "operation unsupported",
                       message = fmt("cannot %s '%s' entities in DB-less mode", ACTION[method], kind) })
end

local function collection(method, kind, scope, snap)
    if method == "GET" or method == "HEAD" then return list(kind, scope, snap) end
    if method ~= "POST" then return method_not_allowed("GET, HEAD, POST") end
    if db.dbless() then return dbless_refusal(method, kind) end
    return create(kind, scope)
end

local ITEM_WRITES = { PATCH = patch, PUT = put, DELETE = delete }

local function item(method, kind, key, scope, snap)
    if method == "GET" or method == "HEAD" then return get(kind, key, scope, snap) end
    local handler = ITEM_WRITES[method]
    if not handler then return method_not_allowed("GET, HEAD, PATCH, PUT, DELETE") end
    if db.dbless() then return dbless_refusal(method, kind) end
    return handler(kind, key, scope)
end

--------------------------------------------------------------------------------
-- Node endpoints.

local function node_info(snap)
    local available = {}
    for i, name in ipairs(plugins.names()) do available[i] = name end
    local enabled, seen = {}, {}
    for _, p in ipairs(snap and snap.list.plugins or {}) do
        if not seen[p.name] then
            seen[p.name] = true
            enabled[#enabled + 1] = p.name
        end
    end
    sort(enabled)
    return send(200, {
        node_id = db.node_id(),
        version = core.version,
        hostname = ngx.var.hostname,
        tagline = "Welcome to the ngx-prometheus gateway",
        configuration = { database = db.dbless() and "off" or "file" },
        plugins = {
            available_on_server = setmetatable(available, array_mt),
            enabled_in_cluster = setmetatable(enabled, array_mt),
        },
    })
end

local NODE = {
    -- GET and HEAD /metrics are nginx's (prometheus_metrics, conf/gateway.conf); another
    -- method comes here by that location's error_page 405 and is refused below.
    metrics = function() return send_error(NOT_FOUND) end,
    status = function()
        return send(200, require("gateway.status").status())
    end,
    -- This API's description (gateway.openapi), built once per worker.
    ["openapi.json"] = function()
        ngx.status = 200
        stamp()
        ngx.header.content_type = "application/json; charset=utf-8"
        ngx.print(require("gateway.openapi").json())
    end,
}

--------------------------------------------------------------------------------
-- Routing.

local function segments()
    local segs = {}
    for seg in ngx.var.uri:gmatch("[^/]+") do segs[#segs + 1] = seg end
    return segs
end

local function dispatch(method, segs)
    local n = #segs
    if n == 0 or n == 1 and NODE[segs[1]] then
        if method ~= "GET" and method ~= "HEAD" then return method_not_allowed("GET, HEAD") end
        -- Node info shows this worker's own snapshot, as the sync timer left it: how
        -- far a change has spread is visible in its X-Gateway-Config-Version.
        if n == 0 then return node_info(db.snapshot()) end
        return NODE[segs[1]]()
    end
    if n == 2 and segs[1] == "plugins" and segs[2] == "enabled" then
        if method ~= "GET" and method ~= "HEAD" then return method_not_allowed("GET, HEAD") end
        local names = {}
        for i, name in ipairs(plugins.names()) do names[i] = name end
        return send(200, { enabled_plugins = setmetatable(names, array_mt) })
    end
    if segs[1] == "schemas" then
        if n ~= 3 or segs[2] ~= "plugins" then return send_error(NOT_FOUND) end
        if method ~= "GET" and method ~= "HEAD" then return method_not_allowed("GET, HEAD") end
        local s = require("gateway.schema_json").plugin(segs[3])
        if not s then
            return send(404, { message = fmt("No plugin named '%s'", schema.printable(segs[3])) })
        end
        return send(200, s)
    end
    local endpoint = endpoints.resolve(segs)
    if not endpoint then return send_error(NOT_FOUND) end
    local snap = db.refresh()
    local scope
    if endpoint.parent then
        local parent = db.find(snap, endpoint.parent.kind, endpoint.parent.key)
        if not parent then return send_error(NOT_FOUND) end
        scope = { field = endpoint.parent.field, id = parent.id }
    end
    if not endpoint.key then return collection(method, endpoint.kind, scope, snap) end
    return item(method, endpoint.kind, endpoint.key, scope, snap)
end

-- The content handler of the Admin API's location. Never raises: a failure is logged
-- and answered with a 500.
function _M.serve()
    local ok, err = xpcall(function()
        return dispatch(ngx.req.get_method(), segments())
    end, traceback)
    if ok then return end
    ngx.log(ngx.ERR, "gateway admin: ", schema.printable(tostring(err)))
    if not ngx.headers_sent then
        pcall(send, 500, { message = "An unexpected error occurred" })
    end
end

return _M
