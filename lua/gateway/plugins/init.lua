-- The plugins the gateway knows, by name. Each is a directory, as Kong's are:
-- gateway/plugins/<name>/handler.lua (what the core calls), schema.lua (its config
-- record, see gateway.schema) and any modules of its own. A handler returns
--   { name, priority, schema = require "gateway.plugins.<name>.schema",
--     -- On the request path, for the instance that applies (gateway.proxy):
--     access = function(conf, ctx) ... end,   -- by priority (high first); false stops
--     log = function(conf, ctx) ... end,      -- by priority
--     -- Called by the core for every plugin that has them, knowing none by name:
--     init = function() ... end,              -- in the master (start, reload): load
--                                             -- what workers will need
--     init_worker = function() ... end,       -- once in each worker
--     configure = function(instances, snapshot) ... end,
--         -- each worker, on every new configuration: every instance (rows, enabled
--         -- or not, in creation order; {} for none) and the snapshot
--     entities_removed = function(removed, configs) ... end,
--         -- after a change (in the worker that made it) or a reload (in worker 0)
--         -- removed entities: `removed` as gateway.db.removed lists them, `configs`
--         -- every instance's config before and after the change
--     metrics = function() ... end,           -- each worker, every second: its gauges
--     status = function() return { ... } end, -- fields of the Admin API's /status
--     conflict, turns_off = ...,              -- Admin API checks (gateway.db.crud, below)
--   }
local core = require "ngx_prometheus"

local ipairs, pairs, pcall, tostring = ipairs, pairs, pcall, tostring

local _M = {}

-- The plugins shipped with the gateway (Kong's bundled plugins).
local names = { "ip-restriction", "key-auth", "prometheus" }
local known = {}
for _, name in ipairs(names) do known[name] = true end

-- The plugin module for `name`, or nil when no such plugin exists.
function _M.get(name)
    if not known[name] then return nil end
    return require("gateway.plugins." .. name .. ".handler")
end

-- Makes plugin `name` known besides the shipped ones (its handler is
-- gateway.plugins.<name>.handler on the package path), as Kong's `plugins` setting
-- does; to be called before the configuration is loaded. Returns its module.
function _M.add(name)
    if type(name) ~= "string" or not name:find("^[%w%-_]+$") then
        error("a plugin name is letters, digits, '-' and '_'", 2)
    end
    local mod = require("gateway.plugins." .. name .. ".handler")
    if not known[name] then
        known[name] = true
        names[#names + 1] = name
        table.sort(names)
    end
    return mod
end

-- Calls plugin `name`'s `phase` with the arguments, if it has that phase. A failure
-- is logged, never raised: one plugin cannot keep the others from their phase.
local function call(name, phase, ...)
    local mod = _M.get(name)
    local fn = mod and mod[phase]
    if not fn then return nil end
    local ok, res = pcall(fn, ...)
    if not ok then
        ngx.log(ngx.ERR, "gateway: plugin ", name, ", phase ", phase, ": ", core.printable(tostring(res)))
        return nil
    end
    return res
end

-- In the master: every plugin's handler loaded, and its init phase.
function _M.init()
    for _, name in ipairs(names) do call(name, "init") end
end

-- Every plugin's per-second refresh of what its metrics show.
local function metrics()
    for _, name in ipairs(names) do call(name, "metrics") end
end
_M.metrics = metrics

-- Each worker: every plugin's init_worker, then its metrics phase every second (and
-- once at once, so that a scrape just after start sees the gauges).
function _M.init_worker()
    for _, name in ipairs(names) do call(name, "init_worker") end
    local ok, err = ngx.timer.every(1, function(premature)
        if not premature then metrics() end
    end)
    if not ok then ngx.log(ngx.ERR, "gateway: cannot start the plugins' metrics timer: ", err) end
    ngx.timer.at(0, function(premature)
        if not premature then metrics() end
    end)
end

-- Plugin rows of `list` by name: every known plugin has a list, empty for none.
local function by_name(list)
    local out = {}
    for _, name in ipairs(names) do out[name] = {} end
    for _, p in ipairs(list or {}) do
        local l = out[p.name]
        if l then l[#l + 1] = p end
    end
    return out
end

-- A new configuration snapshot: every plugin's configure with its instances.
function _M.configure(snapshot)
    local instances = by_name(snapshot.list.plugins)
    for _, name in ipairs(names) do call(name, "configure", instances[name], snapshot) end
end

-- A change or reload removed entities (`removed`, gateway.db.removed): every plugin's
-- entities_removed, with its instances' configs in the plugin rows `before` and `after`.
function _M.entities_removed(removed, before, after)
    if not removed or #removed == 0 then return end
    local old, new = by_name(before), by_name(after)
    for _, name in ipairs(names) do
        local configs = {}
        for _, p in ipairs(old[name]) do configs[#configs + 1] = p.config end
        for _, p in ipairs(new[name]) do configs[#configs + 1] = p.config end
        call(name, "entities_removed", removed, configs)
    end
end

-- The plugins' fields of /status, merged (a field two plugins give: the later name's).
function _M.status()
    local out = {}
    for _, name in ipairs(names) do
        local part = call(name, "status")
        if type(part) == "table" then
            for k, v in pairs(part) do out[k] = v end
        end
    end
    return out
end

local SCOPES = { "service", "route", "consumer" }

-- Whether instance `a`'s scope is strictly inside `b`'s: every scope field `b` sets, `a`
-- sets to the same entity, and `a` sets more (so `a` wins wherever both apply).
local function narrower(a, b)
    local more = false
    for _, f in ipairs(SCOPES) do
        local x, y = a[f] and a[f].id, b[f] and b[f].id
        if y and x ~= y then return false end
        if x and not y then more = true end
    end
    return more
end

local function scope_of(p)
    local parts = {}
    for _, f in ipairs(SCOPES) do
        if p[f] and p[f].id then parts[#parts + 1] = f .. " " .. p[f].id end
    end
    return #parts > 0 and table.concat(parts, ", ") or "global"
end

-- Warnings about instance `row` (just stored) and the other enabled instances of its
-- plugin in `others` (rows by id): where a narrower instance turns off what a wider
-- one records (the plugin's `turns_off(narrow_conf, wide_conf)` names the fields),
-- the requests both apply to lose it. Kong behaves the same; it is a trap there too.
function _M.shadow_warnings(row, others)
    local mod = _M.get(row.name)
    local out = {}
    if not (mod and mod.turns_off) or row.enabled == false then return out end
    for _, other in pairs(others) do
        if other.id ~= row.id and other.name == row.name and other.enabled ~= false then
            local narrow, wide
            if narrower(row, other) then narrow, wide = row, other
            elseif narrower(other, row) then narrow, wide = other, row end
            local fields = narrow and mod.turns_off(narrow.config, wide.config)
            if fields and #fields > 0 then
                out[#out + 1] = string.format(
                    "%s plugin %s (%s) turns off %s, which %s (%s) records, for the requests both apply to",
                    row.name, narrow.id, scope_of(narrow), table.concat(fields, ", "), wide.id, scope_of(wide))
            end
        end
    end
    table.sort(out)
    return out
end

-- Every warning shadow_warnings gives about the instances `rows` (by id) among
-- themselves, each once, sorted: what a configuration loaded without the Admin API (a
-- declarative file, the state or seed file, at start or reload) has the log say.
function _M.all_shadow_warnings(rows)
    local seen, out = {}, {}
    for _, row in pairs(rows) do
        for _, w in ipairs(_M.shadow_warnings(row, rows)) do
            if not seen[w] then
                seen[w] = true
                out[#out + 1] = w
            end
        end
    end
    table.sort(out)
    return out
end

-- Every plugin name, sorted.
function _M.names()
    return names
end

return _M
