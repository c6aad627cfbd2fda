-- gateway.db: the entity store.
--
-- Every entity lives in one JSON document
--   { "_format_version": "1", "node_id": "<uuid>", "services": [...], "routes": [...], ... }
-- (references stored as { "id": ... }). The document is the value of key "config" in
-- lua_shared_dict gateway_config (its flags hold the version), key "version" holds the
-- same version for cheap polling, and every change is persisted to the state file
-- before it is published. The state file is the source of truth: it is loaded by the
-- master on start and on `nginx -s reload`.
--
-- Master (init_by_lua):  db.configure{ state_file, declarative_file, seed_file }
-- Workers:               db.init_worker(), db.snapshot(), db.on_change(fn), db.node_id()
-- The Admin API:         db.refresh(), db.write(fn) with db.find/insert/update/delete/merge
--
-- A snapshot is this worker's view, rebuilt whenever the version changes and never
-- mutated afterwards (treat it as read-only):
--   { version, node_id, services = { [id] = entity }, ..., list = { services = { in
--     creation order } }, by_name = { services|routes|upstreams = { [name] = entity },
--     consumers = { [username] = entity }, keyauth_credentials = { [key] = entity } } }

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local entities = require "gateway.entities"

local defs, kinds = entities.defs, entities.kinds
local printable = core.printable
local is_uuid, is_array, as_array = schema.is_uuid, schema.is_array, schema.as_array
local ipairs, pairs, type, tostring, tonumber, pcall, next = ipairs, pairs, type, tostring, tonumber, pcall, next
local fmt, concat, sort = string.format, table.concat, table.sort
local ngx_log, ERR, NOTICE = ngx.log, ngx.ERR, ngx.NOTICE

local _M = {}

local FORMAT_VERSION = "1"
-- Kong's declarative formats, accepted in declarative and seed files.
local FORMATS = { ["1"] = true, ["1.1"] = true, ["2.1"] = true, ["3.0"] = true }



-- Writers serialize on this key in gateway_state. The TTL frees the lock of a worker
-- that died holding it; waiters wait longer than the TTL so that they outlive it.
local LOCK_KEY, LOCK_TTL, LOCK_WAIT = "db:lock", 5, 10
-- How often workers look for a new version (a change reaches every worker within it).
local SYNC_INTERVAL = 0.1

local conf = {}       -- set in the master by configure(); workers inherit it
local current         -- this worker's snapshot
local callbacks = {}  -- on_change handlers

local function config_dict() return ngx.shared.gateway_config end
local function state_dict() return ngx.shared.gateway_state end

-- The whole configuration, as JSON, is at most half of lua_shared_dict gateway_config
-- (8 MiB with the 16m of nginx/gateway.conf): every change re-encodes it, every worker
-- decodes it once per change, and a new copy always fits beside the old one.
local function max_document()
    return math.floor(config_dict():capacity() / 2)
end

--------------------------------------------------------------------------------
-- Errors: { status, body } with Kong's codes and messages.

local function fail(status, code, name, message, fields)
    return { status = status, body = { code = code, name = name, message = message, fields = fields } }
end

-- Kong prints keys as Lua tables: {name="x"} (sorted keys).
local function repr(v)
    if type(v) == "string" then return '"' .. printable(v) .. '"' end
    if v == core.null then return "null" end
    if type(v) ~= "table" then return tostring(v) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = k .. "=" .. repr(v[k]) end
    return "{" .. concat(parts, ",") .. "}"
end

local function schema_error(errs)
    return fail(400, 2, "schema violation", schema.message(errs), errs)
end

local function primary_key_error(id)
    return fail(409, 3, "primary key violation", fmt("primary key violation on key '%s'", repr({ id = id })),
        { id = id })
end

local function foreign_key_error(field, reference, key)
    return fail(400, 4, "foreign key violation",
        fmt("the foreign key '%s' does not reference an existing '%s' entity.", repr(key), reference),
        { [field] = key })
end

local function referenced_error(kind, child)
    return fail(400, 4, "foreign key violation",
        fmt("an existing '%s' entity references this '%s' entity", child, kind),
        { ["@referenced_by"] = child })
end

local function unique_error(fields)
    return fail(409, 5, "unique constraint violation", fmt("UNIQUE violation detected on '%s'", repr(fields)),
        fields)
end

local function internal_error(message)
    ngx_log(ERR, "gateway: ", printable(message))
    return fail(500, 8, "database error", message)
end

local function too_large_error(size)
    return fail(400, 13, "configuration too large", fmt(
        "the configuration would take %d bytes of JSON, more than the limit of %d "
        .. "(half of lua_shared_dict gateway_config)", size, max_document()))
end

-- "global", or the scope of a plugin: "route <id>, consumer <id>".
local function scope_text(p)
    local parts = {}
    for _, f in ipairs({ "service", "route", "consumer" }) do
        if p[f] then parts[#parts + 1] = f .. " " .. p[f].id end
    end
    return #parts == 0 and "global" or concat(parts, ", ")
end

local function plugin_conflict_error(row, other, why)
    return fail(400, 2, "schema violation", fmt(
        "plugin '%s' %s (%s) conflicts with plugin '%s' %s (%s): %s",
        row.name, row.id, scope_text(row), other.name, other.id, scope_text(other), why),
        { config = why })
end

--------------------------------------------------------------------------------
-- Indexes. A snapshot and a writer's working copy have the same shape.

local function together_key(def, row)
    local parts = {}
    for i, f in ipairs(def.unique_together) do
        local v = row[f]
        if type(v) == "table" then v = v.id end
        parts[i] = v == nil and "" or tostring(v)
    end
    return concat(parts, "\0")
end

local function add_keys(s, kind, row)
    local def = defs[kind]
    s[kind][row.id] = row
    for _, f in ipairs(def.unique) do
        if row[f] ~= nil then s.unique[kind][f][row[f]] = row end
    end
    if def.unique_together then s.together[kind][together_key(def, row)] = row end
end

local function remove_keys(s, kind, row)
    local def = defs[kind]
    s[kind][row.id] = nil
    for _, f in ipairs(def.unique) do
        local index = s.unique[kind][f]
        if row[f] ~= nil and index[row[f]] == row then index[row[f]] = nil end
    end
    if def.unique_together then
        local k = together_key(def, row)
        if s.together[kind][k] == row then s.together[kind][k] = nil end
    end
end

-- The index of a document (whose lists it adopts).
local function index(doc)
    local s = { node_id = doc.node_id, list = {}, by_name = {}, unique = {}, together = {} }
    for _, kind in ipairs(kinds) do
        local def = defs[kind]
        s[kind], s.unique[kind], s.together[kind] = {}, {}, {}
        s.list[kind] = doc[kind] or as_array({})
        for _, f in ipairs(def.unique) do s.unique[kind][f] = {} end
        for _, row in ipairs(s.list[kind]) do add_keys(s, kind, row) end
        if def.endpoint_key and not def.endpoint_key_scope then
            s.by_name[kind] = s.unique[kind][def.endpoint_key]
        end
    end
    return s
end

local function empty_document(node_id)
    local doc = { _format_version = FORMAT_VERSION, node_id = node_id }
    for _, kind in ipairs(kinds) do doc[kind] = as_array({}) end
    return doc
end

local function encode(s)
    local doc = { _format_version = FORMAT_VERSION, node_id = s.node_id }
    for _, kind in ipairs(kinds) do doc[kind] = s.list[kind] end
    return core.json_encode(doc)
end

-- find(s, kind, key, scope) -> entity | nil: by id, else by endpoint key (a name);
-- with scope = { field = "service", id = ... }, only an entity that belongs to it.
function _M.find(s, kind, key, scope)
    local def = defs[kind]
    local row = is_uuid(key) and s[kind][key] or nil
    if not row and def.endpoint_key then
        if not def.endpoint_key_scope then
            row = s.unique[kind][def.endpoint_key][key]
        elseif scope and scope.field == def.endpoint_key_scope then
            row = s.together[kind][together_key(def, { [scope.field] = scope, [def.endpoint_key] = key })]
        end
    end
    if row and scope then
        local ref = row[scope.field]
        if not ref or ref.id ~= scope.id then return nil end
    end
    return row
end

--------------------------------------------------------------------------------
-- Changes to a working copy `s` (all checks pass before anything changes).

-- The entity `input` describes, validated, with references resolved to ids and
-- uniqueness checked; `old` is the entity it replaces (its id and creation time stay).
-- `now` stamps updated_at; without it (loading a file) the input's stamp is kept.
local function prepare(s, kind, input, old, now)
    local def = defs[kind]
    if old then
        local copy = {}
        for k, v in pairs(input) do copy[k] = v end
        copy.id, copy.created_at = old.id, old.created_at
        input = copy
    end
    local row, errs = entities.validate(kind, input)
    if not row then return nil, schema_error(errs) end
    if def.updated_at then row.updated_at = now or row.updated_at or row.created_at end

    for _, fk in ipairs(def.foreign) do
        local ref = row[fk.field]
        if ref then
            local target = ref.id and s[fk.reference][ref.id]
                or ref.name and s.by_name[fk.reference][ref.name]
            if not target then return nil, foreign_key_error(fk.field, fk.reference, ref) end
            row[fk.field] = { id = target.id }
        end
    end

    local cap = def.per_parent
    if cap and row[cap.field] then
        local parent, n = row[cap.field].id, 0
        for _, r in ipairs(s.list[kind]) do
            if r.id ~= row.id and r[cap.field] and r[cap.field].id == parent then n = n + 1 end
        end
        if n >= cap.limit then
            return nil, schema_error({ [cap.field] = fmt("at most %d %s per %s", cap.limit, kind, cap.field) })
        end
    end

    if kind == "plugins" then
        local mod = entities.plugin_module(row.name)
        if mod and mod.conflict then
            for _, other in ipairs(s.list.plugins) do
                if other.name == row.name and other.id ~= row.id then
                    local why = mod.conflict(row.config, other.config)
                    if why then return nil, plugin_conflict_error(row, other, why) end
                end
            end
        end
    end

    if not old and s[kind][row.id] then return nil, primary_key_error(row.id) end
    for _, f in ipairs(def.unique) do
        local other = row[f] ~= nil and s.unique[kind][f][row[f]]
        if other and other.id ~= row.id then return nil, unique_error({ [f] = row[f] }) end
    end
    if def.unique_together then
        local other = s.together[kind][together_key(def, row)]
        if other and other.id ~= row.id then
            local fields = {}
            for _, f in ipairs(def.unique_together) do fields[f] = row[f] or core.null end
            return nil, unique_error(fields)
        end
    end
    return row
end

local function position(list, row)
    for i, r in ipairs(list) do
        if r == row then return i end
    end
end

-- insert(s, kind, input) -> entity | nil, err
function _M.insert(s, kind, input, now)
    local row, err = prepare(s, kind, input, nil, now)
    if not row then return nil, err end
    local list = s.list[kind]
    list[#list + 1] = row
    add_keys(s, kind, row)
    s.changed = true
    return row
end

-- update(s, kind, old, input) -> entity | nil, err: `input` replaces `old` entirely
-- (PUT); for PATCH pass merge(kind, old, patch).
function _M.update(s, kind, old, input, now)
    local row, err = prepare(s, kind, input, old, now)
    if not row then return nil, err end
    s.list[kind][position(s.list[kind], old)] = row
    remove_keys(s, kind, old)
    add_keys(s, kind, row)
    s.changed = true
    return row
end

-- merge(kind, old, patch) -> the input for update(): patch over old, records merged
-- field by field (Kong's PATCH), everything else replaced; null unsets.
function _M.merge(kind, old, patch)
    return schema.merge(defs[kind].schema, old, patch)
end

-- Every entity that goes with `row`, or an error if something refuses to let it go.
local function dependents(s, kind, row, out)
    out[#out + 1] = { kind = kind, row = row }
    for _, child in ipairs(kinds) do
        for _, fk in ipairs(defs[child].foreign) do
            if fk.reference == kind then
                for _, c in ipairs(s.list[child]) do
                    local ref = c[fk.field]
                    if ref and ref.id == row.id then
                        if fk.on_delete == "restrict" then return nil, referenced_error(kind, child) end
                        local ok, err = dependents(s, child, c, out)
                        if not ok then return nil, err end
                    end
                end
            end
        end
    end
    return out
end

-- delete(s, kind, row) -> gone | nil, err: with the plugins and credentials that
-- belong to it; refused while routes (targets) reference a service (upstream). `gone`
-- lists every entity deleted, as { kind, row }.
function _M.delete(s, kind, row)
    local gone, err = dependents(s, kind, row, {})
    if not gone then return nil, err end
    local doomed = {}
    for _, d in ipairs(gone) do
        doomed[d.row] = true
        remove_keys(s, d.kind, d.row)
    end
    for _, k in ipairs(kinds) do
        local kept = as_array({})
        for _, r in ipairs(s.list[k]) do
            if not doomed[r] then kept[#kept + 1] = r end
        end
        s.list[k] = kept
    end
    s.changed = true
    return gone
end

--------------------------------------------------------------------------------
-- Loading files (state, seed, declarative).

local function read_file(path)
    local f, err = io.open(path, "rb")
    if not f then return nil, err end
    local text = f:read("*a")
    f:close()
    return text
end

-- Kong's declarative files may list children inside their parent.
local NESTED = {
    services = { { "routes", "service" }, { "plugins", "service" } },
    routes = { { "plugins", "route" } },
    consumers = { { "plugins", "consumer" }, { "keyauth_credentials", "consumer" } },
    upstreams = { { "targets", "upstream" } },
}

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
    local def, key = defs[kind], nil
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
    local own, nested = {}, NESTED[kind] or {}
    for k, v in pairs(input) do own[k] = v end
    for _, n in ipairs(nested) do own[n[1]] = nil end
    if own.id == nil then own.id = stable_id(kind, own, taken) end
    local list = items[kind]
    list[#list + 1] = { input = own, where = where }
    for _, n in ipairs(nested) do
        local child_kind, field = n[1], n[2]
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

-- load_document(doc, source) -> s | nil, err naming the entity and the field.
local function load_document(doc, source)
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

    local s = index(empty_document(doc.node_id))
    for _, kind in ipairs(entities.load_order) do
        for _, item in ipairs(items[kind]) do
            local row, err = _M.insert(s, kind, item.input)
            if not row then
                return nil, fmt("%s: %s%s: %s", source, item.where, describe(kind, item.input), err.body.message)
            end
        end
    end
    return s
end

local function load_file(path)
    local text, err = read_file(path)
    if not text then return nil, "cannot read " .. tostring(err) end
    local doc, jerr = core.json_decode(text)
    if doc == nil then return nil, fmt("%s: %s", path, jerr) end
    return load_document(doc, path)
end

--------------------------------------------------------------------------------
-- The master: configure().

local ffi = require "ffi"
if not pcall(ffi.typeof, "struct gateway_pollfd") then
    ffi.cdef [[
    struct gateway_pollfd { int fd; short events; short revents; };
    int poll(struct gateway_pollfd *fds, unsigned long nfds, int timeout);
    ]]
end

-- The master cannot ngx.sleep; on a reload, old workers may be in the middle of a
-- write, so it waits for their lock like any writer (blocking is fine in the master).
-- nginx's clock only moves when told to: without update_time a lock would never
-- expire in the master's eyes.
local function master_lock()
    for _ = 1, LOCK_WAIT * 100 do
        if state_dict():add(LOCK_KEY, "master", LOCK_TTL) then return true end
        ffi.C.poll(nil, 0, 10)
        ngx.update_time()
    end
    return nil, "timed out waiting for the configuration lock"
end

local function publish(s, version)
    local text, err = encode(s)
    if not text then return nil, err end
    local ok, serr = config_dict():safe_set("config", text, 0, version)
    if not ok then
        return nil, fmt("the configuration (%d bytes) does not fit in lua_shared_dict gateway_config: %s",
            #text, serr)
    end
    config_dict():set("version", version)
    return true
end

-- Db-less mode has no state file; the node id still stays put if the state directory
-- lets us keep it.
local function dbless_node_id()
    local path = conf.state_file:gsub("[^/]*$", "") .. "node_id"
    local text = read_file(path)
    local id = text and text:match("^%s*(.-)%s*$")
    if is_uuid(id) then return id end
    id = core.uuid()
    local ok, err = core.write_file_atomic(path, id .. "\n")
    if not ok then ngx_log(NOTICE, "gateway: node id not kept across restarts: ", err) end
    return id
end

-- initial() -> s, nil, needs_write | nil, err: the configuration the master starts with.
local function initial()
    if conf.declarative_file then
        local s, err = load_file(conf.declarative_file)
        if not s then return nil, err end
        s.node_id = dbless_node_id()
        return s, nil, false
    end
    local text = read_file(conf.state_file)
    local s, err
    if text then
        local doc, jerr = core.json_decode(text)
        if doc == nil then return nil, fmt("%s: %s", conf.state_file, jerr) end
        s, err = load_document(doc, conf.state_file)
    elseif conf.seed_file then
        s, err = load_file(conf.seed_file)
        if s then s.node_id = nil end
    else
        s = index(empty_document(nil))
    end
    if not s then return nil, err end
    local changed = not text or not s.node_id
    s.node_id = s.node_id or core.uuid()
    return s, nil, changed
end

-- The entities whose series a reload must delete: those of the running configuration
-- (the shared dict outlives reloads) that `s` no longer has, as the Admin API's deletes
-- list them ({ kind, row }, targets with their upstream's name), with the running
-- prometheus plugins' configurations. Kept in gateway_state for worker 0, which the
-- zone is attached in (the master has no zone).
local FORGET_KEY = "db:forget"
local LABELLED = { "services", "routes", "consumers", "upstreams", "targets" }

local function remember_dropped(s)
    local text = config_dict():get("config")
    local old = text and core.json_decode(text)
    if type(old) ~= "table" then return end
    local gone, configs = {}, {}
    for _, kind in ipairs(LABELLED) do
        for _, row in ipairs(old[kind] or {}) do
            if not s[kind][row.id] then
                local g = { kind = kind, row = row }
                if kind == "targets" then
                    for _, u in ipairs(old.upstreams or {}) do
                        if row.upstream and u.id == row.upstream.id then g.upstream_name = u.name end
                    end
                end
                gone[#gone + 1] = g
            end
        end
    end
    for _, p in ipairs(old.plugins or {}) do
        if p.name == "prometheus" then configs[#configs + 1] = p.config end
    end
    if #gone > 0 then
        state_dict():set(FORGET_KEY, core.json_encode({ gone = gone, configs = configs }))
    end
end

-- (worker) The series a reload left to delete: { gone, configs } once, else nil.
function _M.take_dropped()
    local text = state_dict():get(FORGET_KEY)
    if not text then return nil end
    state_dict():delete(FORGET_KEY)
    return core.json_decode(text)
end

local function load_and_publish()
    local s, err, persist = initial()
    if not s then return nil, err end
    if persist then
        local ok, werr = core.write_file_atomic(conf.state_file, encode(s))
        if not ok then return nil, "cannot write the state file: " .. werr end
    end
    conf.node_id = s.node_id
    pcall(remember_dropped, s)
    -- Versions keep counting across reloads (the dict survives them).
    return publish(s, (config_dict():get("version") or 0) + 1)
end

-- configure{ state_file, declarative_file, seed_file } -> true | nil, err (master).
function _M.configure(opts)
    conf = {
        state_file = opts.state_file,
        declarative_file = opts.declarative_file,
        seed_file = opts.seed_file,
    }
    local locked, lerr = master_lock()
    if not locked then return nil, lerr end
    local ok, res, err = pcall(load_and_publish)
    state_dict():delete(LOCK_KEY)
    if not ok then return nil, res end
    return res, err
end

--------------------------------------------------------------------------------
-- Workers: snapshots.

local function install(s)
    current = s
    for _, fn in ipairs(callbacks) do
        local ok, err = pcall(fn, s)
        if not ok then ngx_log(ERR, "gateway: configuration change handler failed: ", printable(tostring(err))) end
    end
end

-- Installs the shared configuration if this worker's is not it; returns the snapshot.
local function sync()
    local version = config_dict():get("version")
    if not version or current and current.version == version then return current end
    local text, flags = config_dict():get("config")
    if not text then return current end
    local doc, err = core.json_decode(text)
    if doc == nil then
        ngx_log(ERR, "gateway: cannot decode the shared configuration: ", err)
        return current
    end
    local s = index(doc)
    s.version = flags
    install(s)
    return s
end

function _M.init_worker()
    sync()
    local ok, err = ngx.timer.every(SYNC_INTERVAL, function(premature)
        if premature then return end
        local synced, serr = pcall(sync)
        if not synced then ngx_log(ERR, "gateway: configuration sync failed: ", printable(tostring(serr))) end
    end)
    if not ok then ngx_log(ERR, "gateway: cannot start the configuration sync timer: ", err) end
end

-- This worker's current snapshot (nil before init_worker).
function _M.snapshot()
    return current
end

-- The latest snapshot, installed now if the timer has not got to it yet: what the
-- Admin API reads, so that a client sees its own writes whichever worker answers.
function _M.refresh()
    return sync()
end

-- on_change(fn): fn(snapshot) runs in the worker on every new snapshot (and now, if
-- there is one). It must not yield.
function _M.on_change(fn)
    callbacks[#callbacks + 1] = fn
    if current then
        local ok, err = pcall(fn, current)
        if not ok then ngx_log(ERR, "gateway: configuration change handler failed: ", printable(tostring(err))) end
    end
end

function _M.node_id()
    return current and current.node_id or conf.node_id
end

-- True in db-less mode (a declarative file; the Admin API is read-only).
function _M.dbless()
    return conf.declarative_file ~= nil
end

--------------------------------------------------------------------------------
-- Workers: writes.

local function lock()
    local token = ngx.worker.pid() .. ":" .. core.uuid()
    local deadline = ngx.now() + LOCK_WAIT
    local delay = 0.001
    while true do
        local ok, err = state_dict():add(LOCK_KEY, token, LOCK_TTL)
        if ok then return token end
        if err ~= "exists" then return nil, "cannot take the configuration lock: " .. tostring(err) end
        if ngx.now() >= deadline then return nil, "timed out waiting for the configuration lock" end
        ngx.sleep(delay)
        delay = math.min(delay * 2, 0.02)
    end
end

local function unlock(token)
    if state_dict():get(LOCK_KEY) == token then state_dict():delete(LOCK_KEY) end
end

-- Persists and publishes the working copy `s` made from `old_text` at `version`.
local function commit(s, token, old_text, version)
    local text, err = encode(s)
    if not text then return nil, internal_error("cannot encode the configuration: " .. err) end
    if #text > max_document() then return nil, too_large_error(#text) end
    -- A writer that outlived its lock must not overwrite a newer configuration.
    if state_dict():get(LOCK_KEY) ~= token or config_dict():get("version") ~= version then
        return nil, internal_error("the configuration lock expired during the write; nothing was changed")
    end
    local ok, werr = core.write_file_atomic(conf.state_file, text)
    if not ok then return nil, internal_error("cannot write the state file: " .. werr) end
    local next_version = version + 1
    local set, serr = config_dict():safe_set("config", text, 0, next_version)
    if not set then
        -- A failed set has dropped the old value: put back the old value and file, so
        -- that workers and the next start keep serving what they served.
        config_dict():safe_set("config", old_text, 0, version)
        core.write_file_atomic(conf.state_file, old_text)
        return nil, internal_error(fmt(
            "the configuration (%d bytes) does not fit in lua_shared_dict gateway_config: %s", #text, serr))
    end
    config_dict():set("version", next_version)
    s.version = next_version
    install(s)
    return true
end

-- A working copy of snapshot `snap`: new lists and indexes over the same entities
-- (no decoding). Entities are never changed in place (a change makes a new one), so
-- the snapshot the worker serves from stays as it was.
local function working_copy(snap)
    local doc = { node_id = snap.node_id }
    for _, kind in ipairs(kinds) do
        local list = as_array({})
        for i, row in ipairs(snap.list[kind]) do list[i] = row end
        doc[kind] = list
    end
    return index(doc)
end

local function write_locked(token, fn)
    local text, version = config_dict():get("config")
    if not text then return nil, internal_error("the shared configuration is missing") end
    -- This worker's snapshot is that version, unless another worker's write is not
    -- installed here yet: then install it first (what the sync timer would do).
    local snap = current
    if not snap or snap.version ~= version then snap = sync() end
    local s
    if snap and snap.version == version then
        s = working_copy(snap)
    else
        local doc, err = core.json_decode(text)
        if doc == nil then return nil, internal_error("cannot decode the shared configuration: " .. err) end
        s = index(doc)
    end
    local result, ferr = fn(s, ngx.time())
    if result == nil then return nil, ferr end
    if s.changed then
        local ok, cerr = commit(s, token, text, version)
        if not ok then return nil, cerr end
    end
    return result
end

-- write(fn) -> result | nil, err. fn(s, now) runs on a working copy of the latest
-- configuration while holding the lock every worker's writes take; it changes it
-- with insert/update/delete (passing `now`) and returns a result, or nil and an error
-- (then nothing is stored). A change is persisted, published and installed in this
-- worker before write returns. Errors are { status, body }.
function _M.write(fn)
    if _M.dbless() then
        return nil, fail(405, 12, "operation unsupported", "cannot change entities in DB-less mode")
    end
    local token, err = lock()
    if not token then return nil, internal_error(err) end
    local ok, result, ferr = pcall(write_locked, token, fn)
    unlock(token)
    if not ok then return nil, internal_error("write failed: " .. tostring(result)) end
    return result, ferr
end

return _M
