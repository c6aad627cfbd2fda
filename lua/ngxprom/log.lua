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
-- a second records them (the same two calls the gateway's plugin makes).

local ffi = require "ffi"
local prom = require "ngxprom"
local base = require "resty.core.base"

local C = ffi.C
local get_request = base.get_request
local request_facts = C.ngx_prom_request_facts
local record_request = C.ngx_prom_record_request
local facts = ffi.new("ngx_prom_facts_t")
local new_handles = ffi.typeof("ngx_prom_request_handles_t")
local count_error = C.ngx_prom_count_error
local LABEL_COUNT = prom.core.reasons.label_count
local tostring, select, error, type, pairs = tostring, select, error, type, pairs
local log_once = prom.log_once
local renew, STALE = prom.renew, prom.STALE

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
    local hist = { buckets = opts.buckets, lowest = opts.lowest, highest = opts.highest, precision = opts.precision,
        group = "http", unit = "seconds" }
    local self = setmetatable({ nlabels = #labels, entries = {} }, Logger)
    self.requests = zone:counter(ns .. "_requests_total", "Requests by response status code.",
        append(labels, "code"), { max_series = opts.max_series, group = "http" })
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
            "Bytes received from clients, request line and headers included.", labels,
            { group = "http", unit = "bytes" })
        self.sent = zone:counter(ns .. "_sent_bytes_total", "Bytes sent to clients.", labels,
            { group = "http", unit = "bytes" })
    end
    return self
end

local function handle_of(family, values)
    if not family then return 0 end
    return family:child(values).handle
end

-- Slow path, once per label set and worker: resolves every family's series. Kept out
-- of `_entry` so that the cached path has no closures or allocations and compiles.
function Logger:_new_entry(n, ...)
    local values = { ... }
    if select("#", ...) ~= n or #values ~= n then
        return nil, "expected " .. n .. " label values, got " .. select("#", ...)
    end
    local h = new_handles()
    h.ms_per_unit = 1000
    h.request_latency = handle_of(self.latency, values)
    h.upstream_latency = handle_of(self.upstream, values)
    h.received_bytes = handle_of(self.received, values)
    h.sent_bytes = handle_of(self.sent, values)
    local entry = { handles = h, codes = {}, values = values }
    if n == 0 then
        self.entries = entry
        return entry
    end
    local node = self.entries
    for i = 1, n - 1 do
        local nxt = node[values[i]]
        if not nxt then nxt = {}; node[values[i]] = nxt end
        node = nxt
    end
    node[values[n]] = entry
    return entry
end

-- The cached entry for a label set: the FFI struct of handles and per-code counters.
-- Up to three labels are looked up without a loop: an inner loop of one to three
-- iterations inside the caller's loop makes LuaJIT abort and blacklist the trace.
function Logger:_entry(...)
    local n = self.nlabels
    if select("#", ...) == n then
        local node = self.entries
        if n > 0 then
            local a, b, c = ...
            node = node[a]
            if n > 1 and node then node = node[b] end
            if n > 2 and node then node = node[c] end
            if n > 3 and node then
                for i = 4, n do
                    node = node[(select(i, ...))]
                    if node == nil then break end
                end
            end
        end
        if node ~= nil and node.handles ~= nil then return node end
    end
    return self:_new_entry(n, ...)
end

-- Records the current request. Call from log_by_lua with the label values, in order.
-- Never raises: failures are counted and logged once.
function Logger:log(...)
    local r = get_request()
    if not r then return nil, "no request" end
    local entry, err = self:_entry(...)
    if not entry then
        local slot = self.requests.slot
        if slot then count_error(slot, LABEL_COUNT) end
        log_once("log helper: " .. err)
        return nil, err
    end
    if request_facts(r, facts) ~= 0 then return nil, "no request" end
    local status = facts.status
    local code = entry.codes[status]
    if not code then
        local values = {}
        for i = 1, self.nlabels do values[i] = entry.values[i] end
        values[self.nlabels + 1] = tostring(status)
        code = self.requests:child(values).handle
        if code ~= 0 then entry.codes[status] = code end
    end
    local h = entry.handles
    h.requests = code
    if record_request(facts, h) == STALE then self:_renew(entry) end
    return true
end

-- A series of `entry` was deleted (this request's update to it was dropped and
-- counted): its children resolve their labels again, for the next request.
function Logger:_renew(entry)
    local values = entry.values
    local h = entry.handles
    for field, family in pairs({ request_latency = self.latency, upstream_latency = self.upstream,
                                 received_bytes = self.received, sent_bytes = self.sent }) do
        local child = family:child(values)
        renew(child)
        h[field] = child.handle
    end
    for status in pairs(entry.codes) do
        local with_code = {}
        for i = 1, self.nlabels do with_code[i] = values[i] end
        with_code[self.nlabels + 1] = tostring(status)
        renew(self.requests:child(with_code))
    end
    entry.codes = {}
end

return _M
