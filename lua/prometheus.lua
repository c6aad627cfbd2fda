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
local ffi = require "ffi"

local C = ffi.C
local count_error = C.ngx_prom_count_error
local REASON = prom.core.reasons
local log_once = prom.log_once
local type, tostring, tonumber, select, pcall, error, setmetatable, ipairs, pairs =
    type, tostring, tonumber, select, pcall, error, setmetatable, ipairs, pairs
local byte, sub, format, find, concat, sort = string.byte, string.sub, string.format,
    string.find, table.concat, table.sort
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
local TYPE_NAME = { counter = "counter", gauge = "gauge", histogram = "histogram" }

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
-- Label values as that library stores them: a string up to its first byte that is
-- not well-formed UTF-8 (Unicode 6.2, table 3-7), anything else through tostring.

-- The index of the first byte of `s` not part of a well-formed UTF-8 sequence, or nil.
local function first_malformed(s)
    local i, n = 1, #s
    while i <= n do
        local c = byte(s, i)
        if c < 0x80 then
            i = i + 1
        else
            local len, lo, hi
            if c >= 0xC2 and c <= 0xDF then len, lo, hi = 2, 0x80, 0xBF
            elseif c == 0xE0 then len, lo, hi = 3, 0xA0, 0xBF
            elseif c == 0xED then len, lo, hi = 3, 0x80, 0x9F
            elseif c >= 0xE1 and c <= 0xEF then len, lo, hi = 3, 0x80, 0xBF
            elseif c == 0xF0 then len, lo, hi = 4, 0x90, 0xBF
            elseif c >= 0xF1 and c <= 0xF3 then len, lo, hi = 4, 0x80, 0xBF
            elseif c == 0xF4 then len, lo, hi = 4, 0x80, 0x8F
            else return i end
            if i + len - 1 > n then return i end
            local b = byte(s, i + 1)
            if b < lo or b > hi then return i end
            for j = i + 2, i + len - 1 do
                b = byte(s, j)
                if b < 0x80 or b > 0xBF then return i end
            end
            i = i + len
        end
    end
    return nil
end

local function label_string(v)
    if type(v) ~= "string" then return tostring(v) end
    local cut = first_malformed(v)
    if cut then return sub(v, 1, cut - 1) end
    return v
end

-- ngxprom's hook (Family.fix_labels): the values a new series is named by.
local function fix_labels(values, n)
    local out = {}
    for i = 1, n do out[i] = label_string(values[i]) end
    return out
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

local function counter_inc(self, value, label_values)
    local v = 1
    if value ~= nil then v = number(value) end
    -- Checked before the series is looked up, as there: a refused increment makes none.
    if not v or not (v >= 0) or v == INF then
        return refuse(self, REASON.invalid_value,
            "increment " .. tostring(value) .. " refused: counters only go up by finite amounts")
    end
    local ok, err = self.family:inc(v, label_values)
    return ok, err
end

local function gauge_set(self, value, label_values)
    if not value then
        return refuse(self, REASON.invalid_value, "no value passed")
    end
    local v = number(value)
    if not v or v ~= v then
        return refuse(self, REASON.invalid_value, "value " .. tostring(value) .. " is not a number")
    end
    local ok, err = self.family:set(v, label_values)
    return ok, err
end

local function gauge_inc(self, value, label_values)
    local v = 1
    if value ~= nil then v = number(value) end
    if not v or v ~= v then
        return refuse(self, REASON.invalid_value, "value " .. tostring(value) .. " is not a number")
    end
    local ok, err = self.family:inc(v, label_values)
    return ok, err
end

local function histogram_observe(self, value, label_values)
    if not value then
        return refuse(self, REASON.invalid_value, "no value passed")
    end
    local v = number(value)
    if not v or v ~= v then
        return refuse(self, REASON.invalid_value, "value " .. tostring(value) .. " is not a number")
    end
    local ok, err = self.family:observe(v, label_values)
    return ok, err
end

-- del(label_values): that series goes at once, in every worker (there is nothing to
-- wait for: no worker holds unsynced increments).
local function metric_del(self, label_values)
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
    local fixed = fix_labels(values, n)
    local ok, err = self.family:del(unpack(fixed, 1, n))
    return ok, err
end

local function metric_reset(self)
    local n, err = self.family:reset()
    if not n then return nil, err end
    return true
end

--------------------------------------------------------------------------------
-- `le` as that library prints it: each bound through one printf format shared by the
-- histogram's bounds ("%0<w>.<p>f", wide and precise enough for all of them, so that
-- the formatted bounds sort as numbers: the order of its lines), then through
-- tonumber and tostring (leading and trailing zeros gone).

local function bound_format(buckets)
    local order, precision = 1, 1
    for _, b in ipairs(buckets) do
        local s = format("%f", b):gsub("0*$", "")
        local dot = find(s, ".", 1, true)
        if dot - 1 > order then order = dot - 1 end
        if #s - dot > precision then precision = #s - dot end
    end
    return "%0" .. (order + precision + 1) .. "." .. precision .. "f"
end

local function histogram_bounds(buckets)
    local fmt = bound_format(buckets)
    local sorted, shown, index = {}, {}, {}
    for i, b in ipairs(buckets) do
        local padded = format(fmt, b)
        sorted[i] = padded
        shown[i] = tostring(tonumber(padded))
        index[b] = i
    end
    return sorted, shown, index
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
    local ok, family, err = pcall(self.zone[kind], self.zone, zname, help or "", label_names, opts)
    if not ok then
        -- Refused by this module where that library accepts (a name it reserves, a
        -- clash with another family's exposition, more than 128 buckets).
        self:log_error(tostring(family))
        return
    end
    if err then log_once(err) end
    family.fix_labels = fix_labels
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
        metric.sorted_le, metric.shown_le, metric.bucket_index = histogram_bounds(buckets)
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
    local self = setmetatable({ zone = zone, registry = {}, by_zone_name = {} }, mt)
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

--------------------------------------------------------------------------------
-- The exposition, as that library prints it: every line keyed as it keys them (label
-- values escaped, `le` padded so that bounds sort as numbers, "Inf" last), sorted by
-- key, HELP and TYPE before the first line of each metric, values through tostring.
-- Built from the zone's own text rendering, the families of this worker's
-- registrations only; buckets that no observation reached are left out, as there.

-- The metric name a key belongs to, as that library finds it (for HELP and TYPE).
local function short_name(key)
    local brace = find(key, "{", 1, true)
    if not brace then return key end
    local b = find(key, "_bucket{", 1, true)
    if b and find(key, "le=", 1, true) then return sub(key, 1, b - 1) end
    return sub(key, 1, brace - 1)
end

local function value_of(text)
    if text == "+Inf" then return INF end
    if text == "-Inf" then return -INF end
    if text == "NaN" then return 0 / 0 end
    return tonumber(text)
end

-- Appends { key, value } entries for one family's sample line.
local function add_sample(entries, metric, zname, key, value, pending)
    local name = metric.name
    local rest = sub(key, #zname + 1)
    if metric.kind ~= "histogram" then
        if rest == "" and metric.braces then rest = "{}" end
        entries[#entries + 1] = { name .. rest, value }
        return
    end
    local suffix, labels = rest:match("^(_%l+)(.*)$")
    if suffix == "_bucket" then
        local head, le = labels:match('^(.*)le="([^"]*)"}$')
        if not head then return end
        local i, sorted, shown
        if le == "+Inf" then
            sorted, shown = "Inf", "+Inf"
        else
            i = metric.bucket_index[tonumber(le)]
            if not i then return end
            sorted, shown = metric.sorted_le[i], metric.shown_le[i]
        end
        if value_of(value) ~= 0 then
            local pre = name .. "_bucket" .. head
            pending[#pending + 1] = { pre .. 'le="' .. sorted .. '"}', value,
                pre .. 'le="' .. shown .. '"}' }
        end
    elseif suffix == "_sum" or suffix == "_count" then
        if labels == "" and metric.braces then labels = "{}" end
        pending[#pending + 1] = { name .. suffix .. labels, value }
        if suffix == "_count" then
            -- A series no observation reached has no lines there.
            if value_of(value) ~= 0 then
                for _, e in ipairs(pending) do entries[#entries + 1] = e end
            end
            for i = #pending, 1, -1 do pending[i] = nil end
        end
    end
end

local function by_key(a, b) return a[1] < b[1] end

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

function Prometheus:metric_data(write_fn)
    if not self.initialized then
        ngx_log(ERR, "Prometheus module has not been initialized")
        return
    end
    local entries = { { self.error_metric_name, tostring(error_count(self.zone)) } }
    local text = self.zone:render() or ""
    local metric, zname
    local pending = {}
    for line in text:gmatch("[^\n]+") do
        if byte(line, 1) == 35 then -- "#"
            local n = line:match("^# TYPE (%S+) ")
            if n then
                zname = n
                metric = self.by_zone_name[n]
                for i = #pending, 1, -1 do pending[i] = nil end
            end
        elseif metric then
            local key, value = line:match("^(.*) (%S+)$")
            if key then add_sample(entries, metric, zname, key, value, pending) end
        end
    end
    sort(entries, by_key)
    local prefix, registry = self.prefix, self.registry
    local out, seen = {}, {}
    for _, e in ipairs(entries) do
        local short = short_name(e[1])
        if not seen[short] then
            seen[short] = true
            local m = registry[short]
            if m then
                if m.help then out[#out + 1] = format("# HELP %s%s %s\n", prefix, short, m.help) end
                out[#out + 1] = format("# TYPE %s%s %s\n", prefix, short, TYPE_NAME[m.kind])
            end
        end
        local v = value_of(e[2])
        out[#out + 1] = prefix .. (e[3] or e[1]) .. " " .. tostring(v) .. "\n"
    end
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
