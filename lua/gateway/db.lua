-- gateway.db: the entity store, as the rest of the gateway uses it, and each worker's
-- view of it.
--
-- Every entity lives in one JSON document
--   { "_format_version": "1", "node_id": "<uuid>", "services": [...], "routes": [...], ... }
-- (references stored as { "id": ... }), published in lua_shared_dict gateway_config
-- and persisted to the state file before it is (gateway.db.publish). The state file
-- is the source of truth: it is loaded by the master on start and on `nginx -s reload`.
--
-- Master (init_by_lua):  db.configure{ state_file, declarative_file, seed_file }
-- Workers:               db.init_worker(), db.snapshot(), db.on_change(fn),
--                        db.on_removed(fn), db.node_id()
-- The Admin API:         db.refresh(), db.write(fn) with db.find/insert/update/delete/merge
--
-- The jobs live in gateway/db/: errors (Kong's error bodies), index (a document and
-- its indexes), crud (changes to an index), declarative (loading files), lock (the
-- writers' lock), publish (the shared dict and the state file), master (start and
-- reload). This file keeps the workers' side: snapshots, their sync, and writes.
--
-- A snapshot is this worker's view, rebuilt whenever the version changes and never
-- mutated afterwards (treat it as read-only):
--   { version, node_id, services = { [id] = entity }, ..., list = { services = { in
--     creation order } }, by_name = { services|routes|upstreams = { [name] = entity },
--     consumers = { [username] = entity }, keyauth_credentials = { [key] = entity } } }

local core = require "ngx_prometheus"
local index = require "gateway.db.index"
local crud = require "gateway.db.crud"
local errors = require "gateway.db.errors"
local lock = require "gateway.db.lock"
local publish = require "gateway.db.publish"
local master = require "gateway.db.master"
local removed_between = require("gateway.db.removed").between

local printable = core.printable
local ipairs, tostring, pcall = ipairs, tostring, pcall

local _M = {}

-- How often workers look for a new version (a change reaches every worker within it).
local SYNC_INTERVAL = 0.1

local current         -- this worker's snapshot
local callbacks = {}  -- on_change handlers
local on_removed = {} -- on_removed handlers

_M.find = index.find
_M.insert = crud.insert
_M.update = crud.update
_M.merge = crud.merge
_M.delete = crud.delete
_M.configure = master.configure

--------------------------------------------------------------------------------
-- Snapshots.

local function install(s)
    current = s
    for _, fn in ipairs(callbacks) do
        local ok, err = pcall(fn, s)
        if not ok then ngx.log(ngx.ERR, "gateway: configuration change handler failed: ", printable(tostring(err))) end
    end
end

-- Installs the shared configuration if this worker's is not it; returns the snapshot.
local function sync()
    local version = publish.version()
    if not version or current and current.version == version then return current end
    local text, flags = publish.current()
    if not text then return current end
    local doc, err = core.json_decode(text)
    if doc == nil then
        ngx.log(ngx.ERR, "gateway: cannot decode the shared configuration: ", err)
        return current
    end
    local s = index.build(doc)
    s.version = flags
    install(s)
    return s
end

-- on_removed(fn): fn(removed, plugins_before, plugins_after) runs in the worker that
-- made a change, after it is stored, when the change removed entities (or renamed
-- them: gateway.db.removed), and in worker 0 after a reload that did; with the plugin
-- rows of the configuration before and after. A failure is logged, never raised.
function _M.on_removed(fn)
    on_removed[#on_removed + 1] = fn
end

local function removed_handlers(gone, before, after)
    if #gone == 0 then return end
    for _, fn in ipairs(on_removed) do
        local ok, err = pcall(fn, gone, before, after)
        if not ok then ngx.log(ngx.ERR, "gateway: after removing entities: ", printable(tostring(err))) end
    end
end

function _M.init_worker()
    sync()
    local ok, err = ngx.timer.every(SYNC_INTERVAL, function(premature)
        if premature then return end
        local synced, serr = pcall(sync)
        if not synced then ngx.log(ngx.ERR, "gateway: configuration sync failed: ", printable(tostring(serr))) end
    end)
    if not ok then ngx.log(ngx.ERR, "gateway: cannot start the configuration sync timer: ", err) end
    -- What a reload removed (a declarative file, an edited state file) is handed over
    -- once, by worker 0, as what the Admin API's writes remove is.
    if ngx.worker.id() == 0 then
        ngx.timer.at(0, function(premature)
            if premature then return end
            local taken = publish.take_removed()
            if not taken then return end
            local after = current and current.list.plugins
            removed_handlers(taken.removed or {}, taken.plugins, after)
        end)
    end
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
        if not ok then ngx.log(ngx.ERR, "gateway: configuration change handler failed: ", printable(tostring(err))) end
    end
end

function _M.node_id()
    return current and current.node_id or master.conf.node_id
end

-- True in db-less mode (a declarative file; the Admin API is read-only).
function _M.dbless()
    return master.conf.declarative_file ~= nil
end

--------------------------------------------------------------------------------
-- Writes.

local function write_locked(token, fn)
    local text, version = publish.current()
    if not text then return nil, errors.internal("the shared configuration is missing") end
    -- This worker's snapshot is that version, unless another worker's write is not
    -- installed here yet: then install it first (what the sync timer would do).
    local snap = current
    if not snap or snap.version ~= version then snap = sync() end
    local s, old
    if snap and snap.version == version then
        s, old = index.working_copy(snap), snap.list
    else
        local doc, err = core.json_decode(text)
        if doc == nil then return nil, errors.internal("cannot decode the shared configuration: " .. err) end
        -- The index adopts the document's lists, which the change edits.
        s, old = index.build(doc), core.json_decode(text)
    end
    local result, ferr = fn(s, ngx.time())
    if result == nil then return nil, ferr end
    if s.changed then
        local next_version, cerr = publish.commit(s, token, text, version, master.conf.state_file)
        if not next_version then return nil, cerr end
        s.version = next_version
        install(s)
        return result, nil, removed_between(old, s), old.plugins, s.list.plugins
    end
    return result
end

-- write(fn) -> result | nil, err. fn(s, now) runs on a working copy of the latest
-- configuration while holding the lock every worker's writes take; it changes it
-- with insert/update/delete (passing `now`) and returns a result, or nil and an error
-- (then nothing is stored). A change is persisted, published and installed in this
-- worker before write returns, and what it removed handed to the on_removed
-- handlers. Errors are { status, body } (gateway.db.errors).
function _M.write(fn)
    if _M.dbless() then return nil, errors.dbless() end
    local token, err = lock.take()
    if not token then return nil, errors.busy(err) end
    local ok, result, ferr, gone, before, after = pcall(write_locked, token, fn)
    lock.release(token)
    if not ok then return nil, errors.internal("write failed: " .. tostring(result)) end
    if gone then removed_handlers(gone, before, after) end
    return result, ferr
end

return _M
