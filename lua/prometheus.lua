-- prometheus: the API of nginx-lua-prometheus (0.20240525) on ngx-prometheus' zone.
--
--   prometheus_zone prometheus_metrics 10m;       # instead of lua_shared_dict
--   init_worker_by_lua_block {
--       prometheus = require("prometheus").init("prometheus_metrics")
--       metric_requests = prometheus:counter("nginx_http_requests_total",
--           "Number of HTTP requests", {"host", "status"})
--   }
--   log_by_lua_block { metric_requests:inc(1, {ngx.var.server_name, ngx.var.status}) }
--   location /metrics { content_by_lua_block { prometheus:collect() } }
--
-- Every metric is a family of ngxprom (one implementation of recording): updates are
-- exact at once in every worker, nothing is synced or evicted. What users of that
-- library see is kept: runtime problems are logged and counted in its error metric,
-- never raised; mistakes at registration are refused as there; collect() prints the
-- same bytes (names, help, label order, `le` formatting, order of lines).

local prom = require "ngxprom"
local exposition = require "prometheus.exposition"

local count_error = prom.count_error
local REASON = prom.core.reasons
local log_once = prom.log_once
-- ngxprom's update forms with label values, called as functions (one lookup less per
-- update than as methods of the family).
local counter_add = prom.updates.counter.inc
local gauge_set_to, gauge_add = prom.updates.gauge.set, prom.updates.gauge.inc
local histogram_add = prom.updates.histogram.observe
local type, tostring, tonumber, select, pcall, error, setmetatable, ipairs, pairs =
    type, tostring, tonumber, select, pcall, error, setmetatable, ipairs, pairs
local find, concat, sort = string.find, table.concat, table.sort
local ngx_log, ERR = ngx.log, ngx.ERR
local INF = math.huge
local unpack = unpack

local Prometheus = { _VERSION = "0.20240525" }
local mt = { __index = Prometheus }

local DEFAULT_DICT = "prometheus_metrics"
local DEFAULT_ERROR_METRIC = "nginx_metric_errors_total"
local ERROR_METRIC_HELP = "Number of nginx-lua-prometheus errors"
-- The library's default buckets, 5 ms to 10 s.
local DEFAULT_BUCKETS = { 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.4, 0.5,
    0.75, 1, 1.5, 2, 3, 4, 5, 10 }
-- Metric names starting with it are refused there (its own keys); kept refused.
local RESERVED_PREFIX = "__ngx_prom__"

--------------------------------------------------------------------------------
-- Errors: logged once per worker and message (ngxprom's log), counted in the zone's
-- nginx_metric_errors_total{reason}; the error metric collect() prints sums them.

-- Refusals counted before any worker had the zone (registration in init_by_lua):
-- every worker inherits the same number from the master and adds it when printing.
local counted_before_workers = 0

local function count(zone, reason)
    local slot = zone.slot or zone:_attach()
    if slot then
        count_error(slot, reason)
    else
        counted_before_workers = counted_before_workers + 1
    end
end

-- A refused update: counted, logged once; returns nil and why, as ngxprom does.
local function refuse(metric, reason, msg)
    count(metric.family.zone, reason)
    msg = "metric \"" .. metric.name .. "\": " .. msg
    log_once(msg)
    return nil, msg
end

--------------------------------------------------------------------------------
-- Metrics. Each holds its ngxprom family; the methods are copied into it (one lookup
-- on the request path, not a metatable's).

-- A number from what the caller passed (numbers, or strings such as ngx.var values),
-- or nil.
local function number(v)
    if type(v) == "number" then return v end
    return tonumber(v)
end

-- The label values' check every update shares, then `update` of ngxprom's family.
local function update_labelled(self, update, v, label_values)
    if label_values ~= nil and type(label_values) ~= "table" then
        return refuse(self, REASON.label_count, "label values must be a table")
    end
    local ok, err = update(self.family, v, label_values)
    return ok, err
end

-- `v` is `value` read as a number (nil when it is not one).
local function update_number(self, update, v, value, label_values)
    if not v or v ~= v then
        return refuse(self, REASON.invalid_value, "value " .. tostring(value) .. " is not a number")
    end
    return update_labelled(self, update, v, label_values)
end

-- An update whose value may not be left out (gauge:set, histogram:observe).
local function update_required(self, update, value, label_values)
    if not value then
        return refuse(self, REASON.invalid_value, "no value passed")
    end
    return update_number(self, update, number(value), value, label_values)
end

local function counter_inc(self, value, label_values)
    local v = 1
    if value ~= nil then v = number(value) end
    -- Checked before the series is looked up, as there: a refused increment makes none.
    -- `not (v >= 0)` and not `v < 0`: NaN must be refused too.
    if not v or not (v >= 0) or v == INF then -- luacheck: ignore 581
        return refuse(self, REASON.invalid_value,
            "increment " .. tostring(value) .. " refused: counters only go up by finite amounts")
    end
    return update_labelled(self, counter_add, v, label_values)
end

local function gauge_set(self, value, label_values)
    return update_required(self, gauge_set_to, value, label_values)
end

local function gauge_inc(self, value, label_values)
    local v = 1
    if value ~= nil then v = number(value) end
    return update_number(self, gauge_add, v, value, label_values)
end

local function histogram_observe(self, value, label_values)
    return update_required(self, histogram_add, value, label_values)
end

-- del(label_values): that series goes at once, in every worker (there is nothing to
-- wait for: no worker holds unsynced increments).
local function metric_del(self, label_values)
    if label_values ~= nil and type(label_values) ~= "table" then
        return refuse(self, REASON.label_count, "label values must be a table")
    end
    local values = label_values or {}
    local n = #values
    if n ~= self.label_count then
        -- ngxprom counts and logs the wrong count.
        local ok, err = self.family:del(unpack(values, 1, n))
        return ok, err
    end
    for i = 1, n do
        if values[i] == nil or values[i] ~= values[i] then
            local ok, err = self.family:del(unpack(values, 1, n))
            return ok, err
        end
    end
    local fixed = exposition.fix_labels(values, n)
    local ok, err = self.family:del(unpack(fixed, 1, n))
    return ok, err
end

local function metric_reset(self)
    local n, err = self.family:reset()
    if not n then return nil, err end
    return true
end

--------------------------------------------------------------------------------
-- Registration.

local function check_names(name, label_names)
    if not name:match("^[a-zA-Z_:][a-zA-Z0-9_:]*$") then
        return "Metric name '" .. name .. "' is invalid"
    end
    if find(name, RESERVED_PREFIX, 1, true) == 1 then
        return "Prefix '" .. RESERVED_PREFIX .. "' is reserved for internal purposes"
    end
    for _, l in ipairs(label_names or {}) do
        if l == "le" then return "Invalid label name 'le' in " .. name end
        if type(l) ~= "string" or not l:match("^[a-zA-Z_][a-zA-Z0-9_]*$") then
            return "Metric '" .. name .. "' label name '" .. tostring(l) .. "' is invalid"
        end
    end
end

-- Whether `name` collides with a metric this instance has: the same name, or the
-- sample names of a histogram (_bucket, _count, _sum).
local function duplicate(self, name, kind)
    local r = self.registry
    if r[name] then return true end
    if kind == "histogram" then
        return r[name .. "_count"] or r[name .. "_sum"] or r[name .. "_bucket"]
    end
    local base = name:gsub("_bucket$", ""):gsub("_count$", ""):gsub("_sum$", "")
    return r[base] ~= nil
end

-- A registration refused at run time, as there: logged, counted, nil returned.
function Prometheus:log_error(...)
    local parts = { ... }
    for i = 1, select("#", ...) do parts[i] = tostring(parts[i]) end
    count(self.zone, REASON.lua)
    log_once(concat(parts))
end

function Prometheus:log_error_kv(key, value, err)
    self:log_error("Error while setting '", key, "' to '", value, "': '", err, "'")
end

-- Sorted bounds without repeats (that library takes them in any order, and then
-- counts some observations in too few buckets).
local function sorted_bounds(buckets)
    local list = {}
    for i, b in ipairs(buckets) do
        if type(b) ~= "number" then error("bucket boundaries should be numeric", 4) end
        list[i] = b
    end
    sort(list)
    local out = {}
    for _, b in ipairs(list) do
        if b ~= out[#out] then out[#out + 1] = b end
    end
    return out
end

-- expire from the APISIX fork's `exptime` (seconds, may be fractional): whole seconds.
local function expire_of(exptime)
    if type(exptime) ~= "number" or exptime <= 0 then return nil end
    return math.ceil(exptime)
end

local METHODS = {
    counter = { inc = counter_inc, del = metric_del, reset = metric_reset },
    gauge = { set = gauge_set, inc = gauge_inc, del = metric_del, reset = metric_reset },
    histogram = { observe = histogram_observe, reset = metric_reset },
}

local function register(self, kind, name, help, label_names, buckets, exptime)
    if not self.initialized then
        ngx_log(ERR, "Prometheus module has not been initialized")
        return
    end
    if type(name) ~= "string" then error("metric name must be a string", 3) end
    if label_names ~= nil and type(label_names) ~= "table" then
        error("label names must be an array", 3)
    end
    local bad = check_names(name, label_names)
    if bad then
        self:log_error(bad)
        return
    end
    if duplicate(self, name, kind) then
        self:log_error("Duplicate metric " .. name)
        return
    end
    local opts = { expire = expire_of(exptime) }
    if kind == "histogram" then
        buckets = sorted_bounds(buckets or DEFAULT_BUCKETS)
        opts.buckets = buckets
        -- The HDR range reaches down to the smallest bound (default 1e-6).
        local lowest = 1e-6
        for _, b in ipairs(buckets) do
            if b > 0 and b < lowest then lowest = b end
        end
        opts.lowest = lowest
    end
    local zname = self.prefix .. name
    -- Help is printed through %s there: a number is help too.
    local ok, family, err = pcall(self.zone[kind], self.zone, zname,
        help == nil and "" or tostring(help), label_names, opts)
    if not ok then
        -- Refused by this module where that library accepts (a name it reserves, a
        -- clash with another family's exposition, more than 128 buckets).
        self:log_error(tostring(family))
        return
    end
    if err then log_once(err) end
    family.fix_labels = exposition.fix_labels
    local metric = {
        name = name, help = help, kind = kind, label_names = label_names,
        label_count = label_names and #label_names or 0, family = family, parent = self,
        -- a table of label names, even empty, puts braces after the name
        braces = label_names ~= nil,
    }
    for k, f in pairs(METHODS[kind]) do metric[k] = f end
    if kind == "histogram" then
        metric.buckets = buckets
        metric.bucket_count = #buckets
        metric.sorted_le, metric.shown_le, metric.bucket_index = exposition.bounds(buckets)
    end
    self.registry[name] = metric
    self.by_zone_name[zname] = metric
    return metric
end

function Prometheus:counter(name, help, label_names, exptime)
    return (register(self, "counter", name, help, label_names, nil, exptime))
end

-- The fourth argument: the APISIX fork's exptime (a number); Kong's `local_storage`
-- (true) is accepted, and the gauge is shared like any other.
function Prometheus:gauge(name, help, label_names, exptime)
    return (register(self, "gauge", name, help, label_names, nil, exptime))
end

function Prometheus:histogram(name, help, label_names, buckets, exptime)
    return (register(self, "histogram", name, help, label_names, buckets, exptime))
end

--------------------------------------------------------------------------------
-- init

-- Per zone name: zone family name -> metric, for every instance of this worker.
local registered = {}

local function zone_missing(err)
    return err and (err:find("^unknown zone") or err:find("^no prometheus_zone"))
end

function Prometheus.init(dict_name, options_or_prefix)
    local phase = ngx.get_phase()
    if phase ~= "init" and phase ~= "init_worker" and phase ~= "timer" then
        error("Prometheus.init can only be called from init_by_lua_block, "
            .. "init_worker_by_lua_block or a timer", 2)
    end
    dict_name = dict_name or DEFAULT_DICT
    if type(dict_name) ~= "string" then error("dict_name must be a string", 2) end
    local zone = prom.zone(dict_name)
    local slot, err = zone:_attach()
    if not slot and zone_missing(err) then
        error("Dictionary '" .. dict_name .. "' does not seem to exist: this drop-in keeps"
            .. " metrics in a zone, declare it with `prometheus_zone " .. dict_name
            .. " 10m;` (" .. err .. ")", 2)
    end
    -- collect() shows the zone's families registered through any instance in this
    -- worker (that library shows every key of its dictionary), HELP and TYPE from
    -- this one's.
    local shown = registered[dict_name]
    if not shown then
        shown = {}
        registered[dict_name] = shown
    end
    local self = setmetatable({ zone = zone, registry = {}, by_zone_name = shown }, mt)
    local opts = options_or_prefix
    if type(opts) == "table" then
        self.prefix = opts.prefix or ""
        self.error_metric_name = opts.error_metric_name or DEFAULT_ERROR_METRIC
        -- Accepted and needless: updates are in the zone at once.
        self.sync_interval = opts.sync_interval or 1
    else
        self.prefix = opts or ""
        self.error_metric_name = DEFAULT_ERROR_METRIC
        self.sync_interval = 1
    end
    self.dict_name = dict_name
    self.initialized = true
    -- The error metric: printed by collect() from the zone's error counts.
    self.registry[self.error_metric_name] = {
        name = self.error_metric_name, help = ERROR_METRIC_HELP, kind = "counter",
    }
    return self
end

-- Needless here (no per-worker counters to start); accepted.
function Prometheus:init_worker(sync_interval)
    if sync_interval ~= nil then self.sync_interval = sync_interval end
end

-- The zone's error counts but stale_handle (an update through a deleted series'
-- handle, then applied to the series made anew: nothing was lost).
local function error_count(zone)
    local slot = zone.slot or zone:_attach()
    local n = counted_before_workers
    if not slot then return n end
    local status = prom.core.status(slot)
    for reason, v in pairs(status.errors) do
        if reason ~= "stale_handle" then n = n + v end
    end
    return n
end

-- That library's lines (see prometheus.exposition), or with `write_fn` (Kong's
-- form) the whole text passed to it.
function Prometheus:metric_data(write_fn)
    if not self.initialized then
        ngx_log(ERR, "Prometheus module has not been initialized")
        return
    end
    local text = self.zone:render() or ""
    local out = exposition.lines(text, self.by_zone_name, self.registry, self.prefix,
        self.error_metric_name, error_count(self.zone))
    if type(write_fn) == "function" then
        write_fn(concat(out))
        return
    end
    return out
end

function Prometheus:collect()
    ngx.header.content_type = "text/plain"
    ngx.print(self:metric_data())
end

return Prometheus
