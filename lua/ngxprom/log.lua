-- ngxprom.log: per-request metrics from the log phase, read natively from the request.
--
--   local http = require("ngxprom.log").new(prom.zone("metrics"), { labels = {"route"} })
--   log_by_lua_block { http:log(ngx.var.route) }
--
-- Families (prefix `namespace`, default "nginx_http"):
--   <ns>_requests_total{<labels>,code}           counter   (status = true)
--   <ns>_request_duration_seconds{<labels>}      histogram (latency = true)
--   <ns>_upstream_duration_seconds{<labels>}     histogram (upstream_latency = true)
--   <ns>_received_bytes_total{<labels>}          counter   (bandwidth = true)
--   <ns>_sent_bytes_total{<labels>}              counter   (bandwidth = true)
-- Status, times and sizes come from the request struct in one FFI call, not ngx.var;
-- a second records them (the same two calls the gateway's plugin makes), through
-- ngxprom's batches: a series deleted or expired meanwhile is made anew and the
-- request counted in it, once.

local prom = require "ngxprom"
local base = require "resty.core.base"

local get_request = base.get_request
local request_facts, count_error = prom.request_facts, prom.count_error
local facts = prom.new_facts()
local record, new_batch, batch_set = prom.record, prom.batch, prom.batch_set
local LABEL_COUNT = prom.core.reasons.label_count
local tostring, select, error, type, pairs, setmetatable = tostring, select, error, type, pairs, setmetatable
local log_once = prom.log_once
local label_cache = require "ngxprom.cache"
local cache_put, cache_revive, invalid_label = label_cache.put, label_cache.revive, prom.invalid_label

local _M = {}
local Logger = {}
Logger.__index = Logger

local function append(list, v)
    local out = {}
    for i = 1, #list do out[i] = list[i] end
    out[#out + 1] = v
    return out
end

function _M.new(zone, opts)
    opts = opts or {}
    local ns = opts.namespace or "nginx_http"
    local labels = opts.labels or {}
    if type(labels) ~= "table" then error("labels must be an array of names", 2) end
    local function on(k) return opts[k] == nil or opts[k] end
    -- The label cache's size: per family, and for this logger's entries (see
    -- ngxprom's label cache). max_series and expire apply to every family.
    local cache = opts.cache
    local hist = { buckets = opts.buckets, lowest = opts.lowest, highest = opts.highest, precision = opts.precision,
        group = "http", unit = "seconds", max_series = opts.max_series, expire = opts.expire, cache = cache }
    local bytes = { group = "http", unit = "bytes", max_series = opts.max_series, expire = opts.expire,
        cache = cache }
    local self = setmetatable({ nlabels = #labels }, Logger)
    self.requests = zone:counter(ns .. "_requests_total", "Requests by response status code.",
        append(labels, "code"), { max_series = opts.max_series, expire = opts.expire, group = "http",
            cache = cache })
    -- The entries' cache is as large as the families'.
    self.recorder = _M.recorder(self, #labels, self.requests.cache_size)
    self.status = on("status")
    if on("latency") then
        self.latency = zone:histogram(ns .. "_request_duration_seconds",
            "Time from the first byte read from the client to the log phase.", labels, hist)
    end
    if on("upstream_latency") then
        self.upstream = zone:histogram(ns .. "_upstream_duration_seconds",
            "Time spent waiting for upstream responses, over every upstream tried.", labels, hist)
    end
    if on("bandwidth") then
        self.received = zone:counter(ns .. "_received_bytes_total",
            "Bytes received from clients, request line and headers included.", labels, bytes)
        self.sent = zone:counter(ns .. "_sent_bytes_total", "Bytes sent to clients.", labels, bytes)
    end
    return self
end

-- The child of `family` for `values`, or nil without the family.
local function child_of(family, values)
    if family then return family:child(values) end
end

--------------------------------------------------------------------------------
-- Recorders: a label cache (ngxprom's kind) of entries, for the log phase. An entry
-- is a batch (ngxprom's: the series one request updates, recorded by one C call,
-- stale series renewed) for one label set, with its requests children by status and
-- source; the maker says what series an entry has:
--   maker:new_entry(values, n, arg) -> entry | nil, err   (values[1..n] as given; once
--       per label set and worker while it stays cached; n is the count given, which
--       the maker checks; nil caches nothing)
--   maker:new_code(entry, status, from_upstream) -> requests child | nil
-- This module's loggers record through one, and so does the gateway's prometheus
-- plugin (its entries have more series: the gateway's own latency).

local Recorder = {}
Recorder.__index = Recorder

-- A recorder of label sets of `nlabels` values, caching `cache_size` of them per
-- generation.
function _M.recorder(maker, nlabels, cache_size)
    return setmetatable({ maker = maker, nlabels = nlabels, cache = {}, old = {}, cached = 0,
        cache_size = cache_size }, Recorder)
end

-- Slow path, once per label set and worker (while it stays cached): the entry from
-- the previous generation, else the maker's. Kept out of `entry` so that the cached
-- path has no closures or allocations and compiles.
function Recorder:_miss(arg, n, ...)
    local values = { ... }
    local count = select("#", ...)
    if count == n and n > 0 then
        local entry = cache_revive(self, values, n)
        if entry then return entry end
    end
    local entry, err = self.maker:new_entry(values, count, arg)
    if not entry then return nil, err end
    if n == 0 then
        self.unlabelled = entry
    else
        cache_put(self, values, n, entry)
    end
    return entry
end

-- The entry for a label set (the values, in order); `arg` goes to the maker. Up to
-- three labels are looked up without a loop: an inner loop of one to three
-- iterations inside the caller's loop makes LuaJIT abort and blacklist the trace.
function Recorder:entry(arg, ...)
    local n = self.nlabels
    if select("#", ...) == n then
        local node
        if n == 0 then
            node = self.unlabelled
        else
            local a, b, c = ...
            node = self.cache[a]
            if n > 1 and node then node = node[b] end
            if n > 2 and node then node = node[c] end
            if n > 3 and node then
                for i = 4, n do
                    node = node[(select(i, ...))]
                    if node == nil then break end
                end
            end
        end
        if node ~= nil then return node end
    end
    local entry, err = self:_miss(arg, n, ...)
    return entry, err
end

-- Records the request facts `f` (ngxprom.request_facts') in `entry`, and in its
-- requests child for the status and source unless `codes` is false. `arg` goes to
-- the entry's may_renew (ngxprom's batches). Returns true, or nil and why.
function Recorder:record(f, entry, codes, arg)
    local code = nil
    if codes then
        local key = f.status * 2 + f.from_upstream
        code = entry.codes[key]
        if not code then
            code = self.maker:new_code(entry, f.status, f.from_upstream)
            if code then entry.codes[key] = code end
        end
    end
    local ok, err = record(f, entry, code, arg)
    return ok, err
end

--------------------------------------------------------------------------------
-- Loggers: the families of `new`, labelled with the caller's labels (and the
-- requests family with `code`).

-- The families whose series an entry's struct holds, by field.
local FIELDS = { request_latency = "latency", upstream_latency = "upstream",
                 received_bytes = "received", sent_bytes = "sent" }

-- A logger's entry for values[1..n] (its recorder's maker). A label set that every
-- family sent to its overflow series shares one entry, the logger's `overflow`, whose
-- requests go to the requests family's overflow series whatever their code.
function Logger:new_entry(values, n)
    if n ~= self.nlabels then
        local slot = self.requests.slot
        if slot then count_error(slot, LABEL_COUNT) end
        local err = "expected " .. self.nlabels .. " label values, got " .. n
        log_once("log helper: " .. err)
        return nil, err
    end
    -- A value that cannot be a label value is counted and logged once (not once per
    -- family); nothing is cached for it.
    local id, err = self.requests:_ensure()
    if not id then
        log_once(err)
        return nil, err
    end
    local bad = invalid_label(self.requests, values, n)
    if bad then return nil, bad end
    local children, any, folded = {}, false, true
    for field, name in pairs(FIELDS) do
        local child = child_of(self[name], values)
        children[field] = child
        if child then
            any = true
            if not child.overflow then folded = false end
        end
    end
    folded = folded and any and n > 0
    local entry
    if folded then
        entry = self.overflow
        if not entry then
            entry = { codes = {}, overflow = true }
            self.overflow = entry
        end
    else
        entry = { codes = {}, values = values }
    end
    -- An entry is a batch (see ngxprom's), with its requests children by status.
    if not entry.handles then
        local b = new_batch(1000)
        entry.handles, entry.children = b.handles, b.children
    end
    for field in pairs(FIELDS) do batch_set(entry, field, children[field]) end
    return entry
end

-- The requests child of `entry` for `status`, or nil when it cannot be had (its
-- recorder's maker; the source is not a label here).
function Logger:new_code(entry, status)
    local child
    if entry.overflow then
        child = self.requests:_overflow()
    else
        local values = {}
        for i = 1, self.nlabels do values[i] = entry.values[i] end
        values[self.nlabels + 1] = tostring(status)
        child = self.requests:child(values)
    end
    if not child or child.handle == 0 then return nil end
    return child
end

-- Records the current request. Call from log_by_lua with the label values, in order.
-- Never raises: failures are counted and logged once.
function Logger:log(...)
    local r = get_request()
    if not r then return nil, "no request" end
    local recorder = self.recorder
    local entry, err = recorder:entry(nil, ...)
    if not entry then return nil, err end
    if request_facts(r, facts) ~= 0 then return nil, "no request" end
    local ok, rerr = recorder:record(facts, entry, true, nil)
    return ok, rerr
end

return _M
