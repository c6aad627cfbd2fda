-- gateway.db.master: what the master does on start and on `nginx -s reload`: reads
-- the configuration (the state file, else the seed file; or a declarative file in
-- db-less mode), writes the state file if it was new, and publishes it. Workers
-- inherit `conf`.

local core = require "ngx_prometheus"
local schema = require "gateway.schema"
local index = require "gateway.db.index"
local declarative = require "gateway.db.declarative"
local publish = require "gateway.db.publish"
local lock = require "gateway.db.lock"

local is_uuid = schema.is_uuid
local ipairs, pcall = ipairs, pcall
local fmt = string.format

local _M = {}

-- { state_file, declarative_file, seed_file, node_id }, set by configure().
_M.conf = {}

-- Where db-less mode keeps the node id: beside the state file.
local function node_id_path(conf)
    return (conf.state_file:gsub("[^/]*$", "")) .. "node_id"
end

-- Db-less mode has no state file; the node id still stays put if the state directory
-- lets us keep it.
local function dbless_node_id(conf)
    local path = node_id_path(conf)
    local text, rerr, missing = declarative.read_file(path)
    local id = text and text:match("^%s*(.-)%s*$")
    if is_uuid(id) then return id end
    id = core.uuid()
    if not text and not missing then
        -- Kept for the next start that can read it.
        ngx.log(ngx.WARN, "gateway: cannot read the node id, using ", id, " until a restart: ", rerr)
        return id
    end
    local ok, err = core.write_file_atomic(path, id .. "\n")
    if not ok then ngx.log(ngx.NOTICE, "gateway: node id not kept across restarts: ", err) end
    return id
end

-- initial(conf) -> s, nil, needs_write | nil, err: the configuration the master starts with.
local function initial(conf)
    if conf.declarative_file then
        local s, err = declarative.load_file(conf.declarative_file)
        if not s then return nil, err end
        s.node_id = dbless_node_id(conf)
        return s, nil, false
    end
    local text, rerr, missing = declarative.read_file(conf.state_file)
    -- Only a missing state file is a first start: one that cannot be read is refused,
    -- never replaced by the seed or an empty configuration.
    if not text and not missing then return nil, "cannot read " .. rerr end
    local s, err
    if text then
        local doc, jerr = core.json_decode(text)
        if doc == nil then return nil, fmt("%s: %s", conf.state_file, jerr) end
        s, err = declarative.load_document(doc, conf.state_file)
    elseif conf.seed_file then
        s, err = declarative.load_file(conf.seed_file)
        if s then s.node_id = nil end
    else
        s = index.build(index.empty_document(nil))
    end
    if not s then return nil, err end
    local changed = not text or not s.node_id
    s.node_id = s.node_id or core.uuid()
    return s, nil, changed
end

local function load_and_publish(conf)
    -- Under the lock no writer is between its temporary file and its rename: what is
    -- left beside the state (a writer killed mid-write, up to a whole document each)
    -- is stale, unless its process lives on (an old worker of a reload).
    core.remove_stale_temporaries(conf.state_file)
    core.remove_stale_temporaries(node_id_path(conf))
    local s, err, persist = initial(conf)
    if not s then return nil, err end
    if persist then
        local ok, werr = core.write_file_atomic(conf.state_file, index.encode(s))
        if not ok then return nil, "cannot write the state file: " .. werr end
    end
    conf.node_id = s.node_id
    -- A narrower plugin instance that turns off what a wider one records: said as the
    -- Admin API says it of a write (gateway.plugins.shadow_warnings).
    local ok, warnings = pcall(require("gateway.plugins").all_shadow_warnings, s.plugins)
    for _, w in ipairs(ok and warnings or {}) do
        ngx.log(ngx.WARN, "gateway: ", schema.printable(w))
    end
    pcall(publish.remember_removed, s)
    return publish.publish(s)
end

-- configure{ state_file, declarative_file, seed_file } -> true | nil, err
function _M.configure(opts)
    local conf = {
        state_file = opts.state_file,
        declarative_file = opts.declarative_file,
        seed_file = opts.seed_file,
    }
    _M.conf = conf
    local token, lerr = lock.master()
    if not token then return nil, lerr end
    local ok, res, err = pcall(load_and_publish, conf)
    lock.release(token)
    if not ok then return nil, res end
    return res, err
end

return _M
