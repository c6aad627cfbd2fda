-- gateway.db.publish: hands a configuration to the workers. The document, as JSON, is
-- the value of key "config" in lua_shared_dict gateway_config (its flags hold the
-- version); key "version" holds the same version for cheap polling, and key "seq" the
-- counter versions are taken from. A worker's change is written to the state file
-- before it is published: the file is the source of truth on the next start.

local core = require "ngx_prometheus"
local index = require "gateway.db.index"
local errors = require "gateway.db.errors"
local lock = require "gateway.db.lock"
local removed = require "gateway.db.removed"

local type, tostring = type, tostring
local fmt = string.format

local _M = {}

local LOST = "this write no longer holds the configuration lock; nothing was changed"

local function config_dict() return ngx.shared.gateway_config end
local function state_dict() return ngx.shared.gateway_state end

-- The whole configuration, as JSON, is at most half of lua_shared_dict gateway_config
-- (8 MiB with the 16m of conf/gateway.conf): every change re-encodes it, every worker
-- decodes it once per change, and a new copy always fits beside the old one.
local function max_document()
    return math.floor(config_dict():capacity() / 2)
end

-- Versions come from one counter, incremented atomically: no two configurations ever
-- get the same one, across workers, reloads (the dict survives them) and failed writes.
local function next_version()
    local dict = config_dict()
    local v, err = dict:incr("seq", 1, dict:get("version") or 0)
    if not v then return nil, "cannot count configuration versions: " .. tostring(err) end
    return v
end

-- The published version (nil before the master's first publish).
function _M.version()
    return config_dict():get("version")
end

-- The published document: text, version | nil.
function _M.current()
    return config_dict():get("config")
end

-- (master) publish(s) -> true | nil, err
function _M.publish(s)
    local text, err = index.encode(s)
    if not text then return nil, err end
    local version, verr = next_version()
    if not version then return nil, verr end
    local ok, serr = config_dict():safe_set("config", text, 0, version)
    if not ok then
        return nil, fmt("the configuration (%d bytes) does not fit in lua_shared_dict gateway_config: %s",
            #text, serr)
    end
    config_dict():set("version", version)
    return true
end

-- (worker) commit(s, token, old_text, version, state_file) -> new version | nil, err:
-- persists and publishes the working copy `s` made from `old_text` at `version`
-- while `token` holds the lock. The lock cannot pass to another writer while this
-- process lives (gateway.db.lock); the state file's rename is still fenced: it happens
-- only if, once the new contents are on disk, `token` holds the lock and `version` is
-- still the published one, so a writer that lost either can never replace a newer file.
function _M.commit(s, token, old_text, version, state_file)
    local text, err = index.encode(s)
    if not text then return nil, errors.internal("cannot encode the configuration: " .. err) end
    if #text > max_document() then return nil, errors.too_large(#text, max_document()) end
    local function current_writer()
        return lock.holds(token) and config_dict():get("version") == version
    end
    if not current_writer() then return nil, errors.internal(LOST) end
    local ok, werr = core.write_file_atomic(state_file, text, current_writer)
    if not ok then
        if not current_writer() then return nil, errors.internal(LOST) end
        return nil, errors.internal("cannot write the state file: " .. werr)
    end
    local new_version, verr = next_version()
    if not new_version then return nil, errors.internal(verr) end
    local set, serr = config_dict():safe_set("config", text, 0, new_version)
    if not set then
        -- A failed set has dropped the old value: put back the old value and file, so
        -- that workers and the next start keep serving what they served.
        config_dict():safe_set("config", old_text, 0, version)
        core.write_file_atomic(state_file, old_text)
        return nil, errors.internal(fmt(
            "the configuration (%d bytes) does not fit in lua_shared_dict gateway_config: %s", #text, serr))
    end
    config_dict():set("version", new_version)
    return new_version
end

-- What a reload removed: the entities of the running configuration (the shared dict
-- outlives reloads) that `s` no longer has (gateway.db.removed), with the running
-- configuration's plugins (whose configs say where their traces are). Kept in
-- gateway_state for worker 0, which hands it to the plugins (the master has no zone).
local REMOVED_KEY = "db:removed"

-- (master, before publishing `s`)
function _M.remember_removed(s)
    local text = config_dict():get("config")
    local old = text and core.json_decode(text)
    if type(old) ~= "table" then return end
    local gone = removed.between(old, s)
    if #gone > 0 then
        state_dict():set(REMOVED_KEY, core.json_encode({ removed = gone, plugins = old.plugins or {} }))
    end
end

-- (worker) What the last reload removed: { removed, plugins } once, else nil.
function _M.take_removed()
    local text = state_dict():get(REMOVED_KEY)
    if not text then return nil end
    state_dict():delete(REMOVED_KEY)
    return core.json_decode(text)
end

return _M
