-- ngxprom: Prometheus metrics in an nginx shared zone, recorded through LuaJIT FFI.
--
--   local prom = require "ngxprom"
--   local metrics = prom.zone("metrics")            -- a `prometheus_zone` by name
--   local reqs = metrics:counter("app_requests_total", "Requests.", {"route", "code"})
--   reqs:labels("/api", "200"):inc()                -- resolve once, then FFI calls only
--
-- Declaring families works anywhere (init_by_lua too); they reach the zone on first
-- use in a worker. Misuse (bad names, wrong argument types) raises, naming the
-- culprit; runtime failures (a full zone, a wrong number of label values) never
-- raise: they are logged once per worker, counted in `nginx_metric_errors_total`, and
-- the update is dropped.

local ffi = require "ffi"
local core = require "ngx_prometheus"
local label_cache = require "ngxprom.cache"

local C = ffi.C
local type, select, setmetatable, error, pcall, ipairs, pairs =
    type, select, setmetatable, error, pcall, ipairs, pairs
local unpack = unpack
local ngx_log, ERR = ngx.log, ngx.ERR

-- The module's whole C boundary, declared and bound here once (the structs' layouts
-- are checked against the Rust ones by t/nginx.rs). ngxprom.log and the gateway's
-- exporter take what they call from this module (as lua-resty-core's modules take
-- resty.core.base's), never from ffi.C themselves.
if not pcall(ffi.typeof, "ngx_prom_facts_t") then
    ffi.cdef [[
    int  ngx_prom_counter_inc(uint64_t handle, uint64_t n);
    int  ngx_prom_counter_add(uint64_t handle, double v);
    int  ngx_prom_gauge_set(uint64_t handle, double v);
    int  ngx_prom_gauge_add(uint64_t handle, double v);
    int  ngx_prom_histogram_observe(uint64_t handle, double v);
    int  ngx_prom_counter_add_x(uint64_t handle, double v, const char *id, size_t len);
    int  ngx_prom_histogram_observe_x(uint64_t handle, double v, const char *id, size_t len);
    void ngx_prom_count_error(uint32_t slot, uint32_t reason);
    typedef struct {
        double status, request_ms, upstream_ms, received_bytes, sent_bytes, from_upstream;
    } ngx_prom_facts_t;
    typedef struct {
        uint64_t requests, request_latency, upstream_latency, gateway_latency;
        uint64_t received_bytes, sent_bytes;
        double ms_per_unit;
        const char *exemplar;
        size_t exemplar_len;
    } ngx_prom_request_handles_t;
    int  ngx_prom_request_facts(const void *r, ngx_prom_facts_t *out);
    int  ngx_prom_record_request(const ngx_prom_facts_t *f,
                                 const ngx_prom_request_handles_t *h);
    int  ngx_prom_request_exemplar(const void *r, uint32_t slot, char *buf, size_t cap);
    ]]
end

local counter_inc = C.ngx_prom_counter_inc
local counter_add = C.ngx_prom_counter_add
local gauge_set = C.ngx_prom_gauge_set
local gauge_add = C.ngx_prom_gauge_add
local observe = C.ngx_prom_histogram_observe
local counter_add_x = C.ngx_prom_counter_add_x
local observe_x = C.ngx_prom_histogram_observe_x
local count_error = C.ngx_prom_count_error
local request_facts = C.ngx_prom_request_facts
local REASON = core.reasons
-- What the update functions return, named once on the Rust side (lua/ffi.rs).
local FFI_OK, FFI_STALE = core.codes.FFI_OK, core.codes.FFI_STALE

local _M = { _VERSION = core.version, core = core }

-- For ngxprom.log and the gateway's exporter: count_error(slot, core.reasons.<reason>);
-- request_facts(r, facts) fills a new_facts() struct from request `r`
-- (resty.core.base's get_request()) and returns 0, or not 0 without a request.
_M.count_error, _M.request_facts = count_error, request_facts
_M.new_facts = ffi.typeof("ngx_prom_facts_t")

-- mlua raises error objects; Lua callers get the message alone, at their own level.
local function message(err)
    local s = tostring(err):match("^[^\n]*")
    return (s:gsub("^runtime error: ", ""))
end

-- Runtime failures are logged once per worker and message. Messages may carry label
-- values a client chose: they are logged in printable form, and at most
-- MAX_LOGGED distinct ones are remembered (then one line says the rest are dropped).
local MAX_LOGGED = 1000
local logged, n_logged = {}, 0
local printable = core.printable
local function log_once(msg)
    if logged[msg] then return end
    if n_logged >= MAX_LOGGED then
        if n_logged == MAX_LOGGED then
            n_logged = n_logged + 1
            ngx_log(ERR, "ngxprom: more than ", MAX_LOGGED, " distinct errors: no more are logged",
                " by this worker (nginx_metric_errors_total still counts them)")
        end
        return
    end
    logged[msg] = true
    n_logged = n_logged + 1
    ngx_log(ERR, "ngxprom: ", printable(msg))
end
_M.log_once = log_once

--------------------------------------------------------------------------------
-- Children: one series of a family, holding its handle and its label values.
--
-- An update through the handle of a series that was deleted (by `del`, `reset`, an
-- expiry, or another worker) returns FFI_STALE: it was not applied, and was counted as
-- `stale_handle`. The child then resolves its labels again (making the series anew)
-- and applies the update there, so a child kept anywhere goes on working and the
-- update is counted once.

-- Stands in for a series that could not be made: updates do nothing (the refusal was
-- counted when it happened) and never raise.
local function noop() return nil, "series unavailable" end
local NULL = { handle = 0, inc = noop, add = noop, set = noop, dec = noop, observe = noop, del = noop }

-- A new handle for a child whose series was deleted; false when it cannot be made
-- (counted and logged like any refusal). The overflow child takes the overflow
-- series anew, and its family's cache is dropped: the label sets folded into it are
-- looked at again (there may be room for them now).
local function renew(child)
    local family = child.family
    local handle, err
    if child.overflow then
        family:_forget()
        handle, err = core.overflow_series(family.slot, family.id)
    else
        handle, err = core.series(family.slot, family.id, child.values)
    end
    if not handle then
        log_once(err)
        return false
    end
    child.handle = handle
    return true
end

-- Deletes this child's series (see Family:del).
local function del(child)
    return child.family:del(unpack(child.values, 1, child.family.nlabels))
end

-- How many times an update dropped as stale is renewed and retried before it is given
-- up: each retry goes to the series its labels name now, so only a series deleted again
-- between the renewal and the retry (by another worker, within microseconds) makes
-- one more; giving up is counted as stale_handle and logged.
local MAX_RENEW = 3

-- An update that did not go in (`rc` from the FFI call, not FFI_OK): the series was
-- deleted (FFI_STALE: the update was not applied; the child resolves its labels again and
-- the update is retried, so it lands once, in the series that exists now), or the
-- module refused the value (counted there as invalid_value, or zone_full for a
-- histogram chunk): logged once, returns nil and why.
local function not_recorded(child, rc, update, v)
    local tries = 0
    while rc == FFI_STALE do
        tries = tries + 1
        if tries > MAX_RENEW then
            local msg = "metric \"" .. child.family.name .. "\": update dropped: its series"
                .. " was deleted again each time it was made anew"
            log_once(msg)
            return nil, msg
        end
        if not renew(child) then return nil, "series unavailable" end
        rc = update(child.handle, v)
        if rc == FFI_OK then return true end
    end
    local family = child.family
    local why
    if v ~= v then
        why = "NaN is not a value"
    elseif family.kind == "counter" then
        why = "counters only go up by finite amounts"
    elseif family.kind == "gauge" then
        why = "the result would be NaN"
    else
        why = "no room in the zone for the value's histogram chunk"
    end
    local msg = "metric \"" .. family.name .. "\": update dropped: " .. why
    log_once(msg)
    return nil, msg
end

-- The updates, one definition each, shared by the children's methods and the
-- families' forms with label values (`family:inc(v, { a, b })`). Always called as
-- statements, never as tail calls, so a misuse error at level 3 names the user's call
-- one frame above the method. They return true, or nil and why (see not_recorded).
-- An update with an exemplar (`x`, a trace id string): the update, then the exemplar
-- kept if the family keeps them (a refused id is counted as invalid_exemplar, the
-- update still counts). A stale series is renewed and the update retried without it.
local function exemplar_update(child, update, plain, v, x)
    if type(x) ~= "string" then error("exemplar must be a string", 4) end
    local rc = update(child.handle, v, x, #x)
    if rc == FFI_OK then return true end
    local ok, err = not_recorded(child, rc, plain, v)
    return ok, err
end

local function counter_update(child, n, x)
    if x ~= nil then
        if n == nil then n = 1 elseif type(n) ~= "number" then
            error("increment must be a number", 3)
        end
        local ok, err = exemplar_update(child, counter_add_x, counter_add, n, x)
        return ok, err
    end
    if n == nil then
        -- The common case takes the integer entry: no float checks on the C side.
        local rc = counter_inc(child.handle, 1)
        if rc == FFI_OK then return true end
        local ok, err = not_recorded(child, rc, counter_inc, 1)
        return ok, err
    end
    if type(n) ~= "number" then error("increment must be a number", 3) end
    local rc = counter_add(child.handle, n)
    if rc == FFI_OK then return true end
    local ok, err = not_recorded(child, rc, counter_add, n)
    return ok, err
end

-- gauge_add of `v` (default 1) times `sign`, or gauge_set when `sign` is nil.
local function gauge_update(child, v, sign)
    if sign == nil then
        if type(v) ~= "number" then error("value must be a number", 3) end
        local rc = gauge_set(child.handle, v)
        if rc == FFI_OK then return true end
        local ok, err = not_recorded(child, rc, gauge_set, v)
        return ok, err
    end
    if v == nil then v = 1 elseif type(v) ~= "number" then error("value must be a number", 3) end
    v = sign * v
    local rc = gauge_add(child.handle, v)
    if rc == FFI_OK then return true end
    local ok, err = not_recorded(child, rc, gauge_add, v)
    return ok, err
end

local function histogram_update(child, v, x)
    if type(v) ~= "number" then error("value must be a number", 3) end
    if x ~= nil then
        local ok, err = exemplar_update(child, observe_x, observe, v, x)
        return ok, err
    end
    local rc = observe(child.handle, v)
    if rc == FFI_OK then return true end
    local ok, err = not_recorded(child, rc, observe, v)
    return ok, err
end

local Counter = { del = del }
Counter.__index = Counter
function Counter:inc(n, exemplar)
    local ok, err = counter_update(self, n, exemplar)
    return ok, err
end
Counter.add = Counter.inc

local Gauge = { del = del }
Gauge.__index = Gauge
function Gauge:set(v)
    local ok, err = gauge_update(self, v, nil)
    return ok, err
end
function Gauge:inc(v)
    local ok, err = gauge_update(self, v, 1)
    return ok, err
end
function Gauge:dec(v)
    local ok, err = gauge_update(self, v, -1)
    return ok, err
end

local Histogram = { del = del }
Histogram.__index = Histogram
function Histogram:observe(v, exemplar)
    local ok, err = histogram_update(self, v, exemplar)
    return ok, err
end

-- The method each kind of child is called with most. A method found in the table
-- itself is one lookup in a trace; through the metatable it is a failed lookup, the
-- metatable, its __index and the lookup there (~25 instructions per call on the
-- request path). It fits in the child's hash part as a fourth field at no cost.
Counter.hot, Gauge.hot, Histogram.hot = "inc", "set", "observe"
local CHILD = { counter = Counter, gauge = Gauge, histogram = Histogram }

--------------------------------------------------------------------------------
-- Batches: the updates one request makes, recorded by one C call
-- (ngx_prom_record_request) through a struct of handles; ngxprom.log and the
-- gateway's prometheus plugin record through them. Beside the struct, a batch keeps
-- the child of each of its series, so a series deleted or expired meanwhile is
-- handled as a child's: the call applies every update whose handle is live and
-- reports, by field, those it dropped as stale; their children resolve their labels
-- again and those updates alone are recorded again. The request is so counted once in
-- each of its series, in the one that exists after the delete.
--
--   local b = prom.batch(1000)                  -- milliseconds per histogram unit
--   prom.batch_set(b, "request_latency", family:labels("/api"))
--   prom.record(facts, b, requests_child)       -- facts: ngx_prom_request_facts'

local record_request = C.ngx_prom_record_request
local new_handles = ffi.typeof("ngx_prom_request_handles_t")
local band = require("bit").band

-- The struct's fields, in the order of their bits in record_request's result
-- (STALE_BIT * 2^(i-1)); REFUSED: some update was refused for another reason (counted).
local BATCH_FIELDS = { "requests", "request_latency", "upstream_latency", "gateway_latency",
    "received_bytes", "sent_bytes" }
local STALE_BIT, REFUSED = core.codes.STALE_BIT, core.codes.BATCH_REFUSED

-- A new batch whose histograms take `ms_per_unit` milliseconds per unit (1000 for
-- seconds). `batch.may_renew`, if set, is asked (with record's `arg`) before a deleted
-- series is made anew: false drops the updates to it (a plugin whose route is gone).
function _M.batch(ms_per_unit)
    local h = new_handles()
    h.ms_per_unit = ms_per_unit
    return { handles = h, children = {} }
end

-- Makes `child` the series of `field` in `batch`; nil (or a child that could not be
-- made) leaves the field out. "requests" is given to each record instead.
function _M.batch_set(batch, field, child)
    if child and child.handle ~= 0 then
        batch.children[field] = child
        batch.handles[field] = child.handle
    else
        batch.children[field] = nil
        batch.handles[field] = 0
    end
end

-- The request's exemplar id, written by ngx_prom_request_exemplar: one buffer per
-- worker, read by the record call that follows in the same log handler.
local request_exemplar = C.ngx_prom_request_exemplar
local MAX_ID = core.max_exemplar_id
local exemplar_buf = ffi.new("char[?]", MAX_ID)

-- Makes the next record of `batch` carry the exemplar of request `r` (resty.core.base's
-- get_request()) on its count and latencies: the trace id of its `traceparent` when
-- valid, else `$request_id`; an invalid `traceparent` is counted as invalid_exemplar
-- in the zone of `slot`. Call it before every record of a batch it was called for
-- once (the id is the current request's).
function _M.batch_exemplar(batch, r, slot)
    local h = batch.handles
    h.exemplar = exemplar_buf
    h.exemplar_len = request_exemplar(r, slot, exemplar_buf, MAX_ID)
end

-- The struct the updates dropped as stale are recorded again through.
local again = ffi.new("ngx_prom_request_handles_t")

-- After record_request returned `rc` (not 0): renews the children of the updates it
-- dropped as stale and records those again, until every one went in (or MAX_RENEW
-- tries). Returns true, or nil and why.
local function settle(facts, batch, requests, rc, arg)
    if rc < 0 then return nil, "no request" end
    local h = batch.handles
    local refused = band(rc, REFUSED)
    local stale = band(rc, REFUSED - 1)
    for _ = 1, MAX_RENEW do
        if stale == 0 then break end
        if batch.may_renew and not batch.may_renew(arg) then return nil, "series deleted" end
        ffi.fill(again, ffi.sizeof(again))
        again.ms_per_unit = h.ms_per_unit
        again.exemplar, again.exemplar_len = h.exemplar, h.exemplar_len
        for i = 1, #BATCH_FIELDS do
            if band(stale, STALE_BIT * 2 ^ (i - 1)) ~= 0 then
                local field = BATCH_FIELDS[i]
                local child = requests
                if i > 1 then child = batch.children[field] end
                -- The child may have been renewed already, through another batch that
                -- shares it: then its handle is new and only the struct lags behind.
                if child and (child.handle ~= h[field] or renew(child)) then
                    h[field] = child.handle
                    again[field] = child.handle
                end
            end
        end
        rc = record_request(facts, again)
        refused = refused + band(rc, REFUSED)
        stale = band(rc, REFUSED - 1)
    end
    if stale ~= 0 then
        local msg = "request update dropped: its series was deleted again each time it was made anew"
        log_once(msg)
        return nil, msg
    end
    if refused ~= 0 then return nil, "an update was refused" end
    return true
end

-- Records one request: `facts` as ngx_prom_request_facts filled them into the series
-- of `batch`, and one into `requests` (a child, or nil for none). Steady state: one
-- FFI call. Returns true, or nil and why (what failed was counted).
function _M.record(facts, batch, requests, arg)
    local h = batch.handles
    if requests then h.requests = requests.handle else h.requests = 0 end
    local rc = record_request(facts, h)
    if rc == FFI_OK then return true end
    local ok, err = settle(facts, batch, requests, rc, arg)
    return ok, err
end

--------------------------------------------------------------------------------
-- Families.

local Family = {}
Family.__index = Family

-- Registers the family in its zone on first use in a worker. Returns its id, or nil,
-- why and whether that is misuse (a declaration the zone's family contradicts) rather
-- than a runtime failure (a full zone: counted as zone_full).
function Family:_ensure()
    local id = self.id
    if id then return id end
    local slot, err = self.zone:_attach()
    if not slot then return nil, err end
    local ok, res, rerr = pcall(core.register, slot, self.spec)
    if not ok then return nil, message(res), true end
    if not res then
        count_error(slot, REASON.zone_full)
        return nil, rerr
    end
    self.id, self.slot = res, slot
    return res
end

--------------------------------------------------------------------------------
-- The label cache (ngxprom.cache): per family, the children of the label sets this
-- worker used, bounded.

local CACHE_SIZE = label_cache.SIZE
local cache_find, cache_put, cache_revive = label_cache.find, label_cache.put, label_cache.revive

-- Why label value `v` cannot name a series, or nil when it can: strings, numbers
-- (not NaN) and booleans can; nil (a hole, a missing variable), NaN and anything
-- else cannot. A client may choose what reaches here: a runtime failure, not misuse.
local function bad_label_value(v)
    local t = type(v)
    if t == "string" or t == "boolean" then return nil end
    if t == "number" then
        if v ~= v then return "is NaN" end
        return nil
    end
    return "is a " .. t .. ", not a string"
end

-- The first of values[1..n] that cannot be a label value, as a message naming the
-- family and the label; counted as invalid_label_value and logged once.
local function invalid_label(family, values, n)
    for i = 1, n do
        local why = bad_label_value(values[i])
        if why then
            count_error(family.slot, REASON.invalid_label_value)
            local msg = "metric \"" .. family.name .. "\": the value of label \""
                .. family.spec.labels[i] .. "\" " .. why
            log_once(msg)
            return msg
        end
    end
end
_M.invalid_label = invalid_label

-- A wrong number of label values (`n`) for `what`: a runtime failure, counted and
-- logged once; returns the message.
local function wrong_count(family, what, n)
    count_error(family.slot, REASON.label_count)
    local msg = "metric \"" .. family.name .. "\": " .. what .. " " .. family.nlabels
        .. " label values, got " .. n
    log_once(msg)
    return msg
end

local function new_child(family, handle, values)
    local mt = family.child_mt
    local child = setmetatable({ handle = handle, family = family, values = values }, mt)
    -- The kind's most used method in the child itself (see `hot` at the children).
    child[mt.hot] = mt[mt.hot]
    return child
end

-- The child of the family's overflow series (one per family and worker), or nil when
-- it cannot be had (a family without labels, a zone without room).
function Family:_overflow()
    local child = self.overflow
    if child then return child end
    local handle, value = core.overflow_series(self.slot, self.id)
    if not handle then return nil end
    local values = {}
    for i = 1, self.nlabels do values[i] = value end
    child = new_child(self, handle, values)
    child.overflow = true
    self.overflow = child
    return child
end

-- This worker forgets every child it cached (they make their series anew if used).
function Family:_forget()
    self.cache, self.old, self.cached, self.unlabelled = {}, {}, 0, nil
end

-- The child for label values (a Lua array of `n`) that the current generation of the
-- cache does not have: from the previous one, else from the zone (then cached).
function Family:_miss(values, n)
    if n == self.nlabels and n > 0 then
        local child = cache_revive(self, values, n)
        if child then return child end
    end
    local id, err = self:_ensure()
    if not id then
        log_once(err)
        return NULL, err
    end
    if n ~= self.nlabels then
        return NULL, wrong_count(self, "expected", n)
    end
    local bad = invalid_label(self, values, n)
    if bad then return NULL, bad end
    -- The cache keeps the child under the values as given; the series is named by
    -- the family's `fix_labels(values, n)` when it has one (prometheus.lua makes
    -- them the strings nginx-lua-prometheus would have stored).
    local key = values
    if self.fix_labels then values = self.fix_labels(values, n) end
    local handle, serr, overflow = core.series(self.slot, id, values)
    if not handle then
        log_once(serr)
        return NULL, serr
    end
    local child
    if overflow then
        -- max_series or a full zone sent this label set to the overflow series
        -- (counted): it shares the family's overflow child.
        log_once(overflow)
        child = self:_overflow()
        if not child then return NULL, overflow end
        child.handle = handle
    else
        child = new_child(self, handle, values)
    end
    if n == 0 then self.unlabelled = child else cache_put(self, key, n, child) end
    return child
end

-- The child for these label values. Steady state: one table lookup per label, no
-- allocation, so LuaJIT keeps the caller's trace.
function Family:labels(...)
    local n = self.nlabels
    local node
    if n == 0 then
        node = self.unlabelled
    else
        local a, b, c, d = ...
        node = self.cache[a]
        if n > 1 and node then node = node[b] end
        if n > 2 and node then node = node[c] end
        if n > 3 and node then node = node[d] end
        if n > 4 and node then
            for i = 5, n do
                node = node[(select(i, ...))]
                if not node then break end
            end
        end
    end
    if node and select("#", ...) == n then return node end
    local child, err = self:_miss({ ... }, select("#", ...))
    return child, err
end

-- The child for a Lua array of label values. Unrolled like labels(): a loop here
-- becomes a trace of its own, the caller's trace stops at it and the rest of the
-- caller's log_by_lua block (FFI calls included) runs in the interpreter, which made
-- inc(v, {a, b, c}) cost 3x what labels(a, b, c):inc() costs (bench/request-path.sh).
-- The table is read at constant indexes only, never measured with `#`: then a
-- `{ a, b, c }` written in the call never leaves the trace and LuaJIT does not
-- allocate it at all (allocation sinking), which halves what such a call costs.
function Family:child(values)
    local n = self.nlabels
    local node, extra
    if n == 0 then
        node, extra = self.unlabelled, values[1]
    else
        node = self.cache[values[1]]
        if n == 1 then
            extra = values[2]
        elseif node then
            node = node[values[2]]
            if n == 2 then
                extra = values[3]
            elseif node then
                node = node[values[3]]
                if n == 3 then
                    extra = values[4]
                elseif node then
                    node = node[values[4]]
                    if n == 4 then
                        extra = values[5]
                    elseif node then
                        for i = 5, n do
                            node = node[values[i]]
                            if not node then break end
                        end
                        extra = values[n + 1]
                    end
                end
            end
        end
    end
    -- A leaf of the cache is reached with n non-nil values; one more means the
    -- wrong number, which _resolve reports.
    if node and extra == nil then return node end
    local child, err = self:_miss(values, #values)
    return child, err
end

-- The update forms with label values, `family:inc(v, { a, b })`, one set per type:
-- the child straight to the shared update, not through the child's method (on the
-- request path that is one metatable lookup less per call). A child that could not be
-- made (NULL, handle 0) records nothing, as its methods do.
local child_of = Family.child
local NO_LABELS = {}

-- The child for `values`, or nil when it could not be made.
local function live_child(family, values)
    local child = child_of(family, values or NO_LABELS)
    if child.handle ~= 0 then return child end
end

local CounterFamily, GaugeFamily, HistogramFamily = {}, {}, {}

function CounterFamily:inc(v, values, exemplar)
    local child = live_child(self, values)
    if not child then return nil, "series unavailable" end
    local ok, err = counter_update(child, v, exemplar)
    return ok, err
end
CounterFamily.add = CounterFamily.inc

function GaugeFamily:set(v, values)
    local child = live_child(self, values)
    if not child then return nil, "series unavailable" end
    local ok, err = gauge_update(child, v, nil)
    return ok, err
end
function GaugeFamily:inc(v, values)
    local child = live_child(self, values)
    if not child then return nil, "series unavailable" end
    local ok, err = gauge_update(child, v, 1)
    return ok, err
end
function GaugeFamily:dec(v, values)
    local child = live_child(self, values)
    if not child then return nil, "series unavailable" end
    local ok, err = gauge_update(child, v, -1)
    return ok, err
end

function HistogramFamily:observe(v, values, exemplar)
    local child = live_child(self, values)
    if not child then return nil, "series unavailable" end
    local ok, err = histogram_update(child, v, exemplar)
    return ok, err
end

-- Deletes the series with these label values, in every worker: its memory is reused,
-- and a child of it kept anywhere makes it anew on its next update (from zero).
-- Returns true, false when there was no such series, or nil and why (a wrong number
-- of label values: counted and logged once).
function Family:del(...)
    local id, err = self:_ensure()
    if not id then return nil, err end
    local n = select("#", ...)
    if n ~= self.nlabels then
        return nil, wrong_count(self, "del expected", n)
    end
    local values = { ... }
    local bad = invalid_label(self, values, n)
    if bad then return nil, bad end
    -- This worker's cache forgets the child, in both generations: the next labels()
    -- makes the series anew.
    if n == 0 then
        self.unlabelled = nil
    else
        for _, node in ipairs({ self.cache, self.old }) do
            node = cache_find(node, values, n - 1)
            if node then node[values[n]] = nil end
        end
    end
    local ok, res = pcall(core.delete_series, self.slot, id, values)
    if not ok then error(message(res), 2) end
    return res
end

-- Series of the family not updated for `seconds` are deleted by the module's sweep
-- (0: never). Same as the `expire` option; may change at any time.
function Family:set_expire(seconds)
    if type(seconds) ~= "number" then error("expire must be a number", 2) end
    local id, err = self:_ensure()
    if not id then return nil, err end
    local ok, res = pcall(core.set_expire, self.slot, id, seconds)
    if not ok then error(message(res), 2) end
    self.spec.expire = seconds
    return true
end

-- Whether series made from now on keep exemplars (the `exemplars` option; counters and
-- histograms). Switched off, the exemplars kept are no longer shown; switched on
-- again, they are, beside new ones. A series made while it was off keeps none.
function Family:set_exemplars(on)
    if type(on) ~= "boolean" then error("exemplars must be a boolean", 2) end
    local id, err = self:_ensure()
    if not id then return nil, err end
    local was = self.spec.exemplars
    self.spec.exemplars = on
    local ok, res, rerr = pcall(core.register, self.slot, self.spec)
    if not ok or not res then
        self.spec.exemplars = was
        if not ok then error(message(res), 2) end
        return nil, rerr
    end
    return true
end

-- Deletes every series of the family; returns how many.
function Family:reset()
    local id, err = self:_ensure()
    if not id then return nil, err end
    self:_forget()
    return core.reset(self.slot, id)
end

-- Replaces a histogram's bucket bounds; recorded data is kept.
function Family:set_buckets(buckets)
    local id, err = self:_ensure()
    if not id then return nil, err end
    local ok, res = pcall(core.set_buckets, self.slot, id, buckets)
    if not ok then error(message(res), 2) end
    self.spec.buckets = buckets
    return true
end

-- The value at quantile q (0..1) of one histogram series, from its HDR counts; nil
-- and why when there is no such series or it has no observations.
function Family:quantile(q, values)
    if type(q) ~= "number" or not (q >= 0 and q <= 1) then
        error("quantile must be a number from 0 to 1, got " .. tostring(q), 2)
    end
    if values ~= nil and type(values) ~= "table" then
        error("label values must be an array", 2)
    end
    local id, err = self:_ensure()
    if not id then return nil, err end
    values = values or NO_LABELS
    local n = #values
    if n ~= self.nlabels then return nil, wrong_count(self, "quantile expected", n) end
    local bad = invalid_label(self, values, n)
    if bad then return nil, bad end
    local ok, res, qerr = pcall(core.quantile, self.slot, id, values, q)
    if not ok then error(message(res), 2) end
    return res, qerr
end

-- Each kind's family methods: the common ones and its own update forms, in one flat
-- table (a method is one lookup away, not two). The request-path ones, HOT, are also
-- put in each family table itself, for the reason given at the children's.
local FAMILY, HOT = {}, {}
for kind, own in pairs({ counter = CounterFamily, gauge = GaugeFamily, histogram = HistogramFamily }) do
    local mt = {}
    for k, f in pairs(Family) do mt[k] = f end
    for k, f in pairs(own) do mt[k] = f end
    mt.__index = mt
    FAMILY[kind] = mt
    HOT[kind] = { labels = Family.labels }
    for k, f in pairs(own) do HOT[kind][k] = f end
end
-- The update forms with label values by kind (`family:inc(v, { a, b })`...), for
-- prometheus.lua, which calls them as functions.
_M.updates = HOT

--------------------------------------------------------------------------------
-- Zones.

local Zone = {}
Zone.__index = Zone

function Zone:_attach()
    local slot = self.slot
    if slot then return slot end
    local err
    slot, err = core.zone(self.name)
    if not slot then return nil, err end
    self.slot = slot
    -- Families declared before the zone was reachable (in init_by_lua) register now,
    -- in declaration order, which is the exposition's order.
    for _, f in ipairs(self.order) do
        local ok, ferr = f:_ensure()
        if not ok then log_once(ferr) end
    end
    return slot
end

-- A family's declaration as the module reads it; raises naming the culprit.
local function spec_of(kind, name, help, labels, opts, level)
    local spec = {
        name = name, help = help, type = kind, labels = labels or {},
        buckets = opts.buckets, lowest = opts.lowest, highest = opts.highest,
        precision = opts.precision, max_series = opts.max_series, expire = opts.expire,
        unit = opts.unit, group = opts.group, quantiles = opts.quantiles,
        overflow = opts.overflow, exemplars = opts.exemplars, native_only = opts.native_only,
    }
    local ok, err = pcall(core.validate, spec)
    if not ok then error(message(err), level + 1) end
    return spec
end

function Zone:_family(kind, name, help, labels, opts, level)
    if type(name) ~= "string" then error("metric name must be a string", level) end
    opts = opts or {}
    local cache_size = opts.cache or CACHE_SIZE
    if type(cache_size) ~= "number" or cache_size < 1 or cache_size % 1 ~= 0
        or cache_size > 1e9 then
        error("metric \"" .. name .. "\": cache must be a whole number from 1 to 1e9", level)
    end
    local f = self.families[name]
    if f then
        if f.kind ~= kind then
            error("metric \"" .. name .. "\" is already declared as a " .. f.kind, level)
        end
        local have, want = table.concat(f.spec.labels, ", "), table.concat(labels or {}, ", ")
        if have ~= want then
            error("metric \"" .. name .. "\" is already declared with labels [" .. have .. "]", level)
        end
        -- A new size applies from the next generation on.
        if opts.cache then f.cache_size = cache_size end
        return f
    end
    local spec = spec_of(kind, name, help, labels, opts, level)
    f = setmetatable({
        zone = self, name = name, kind = kind, spec = spec, nlabels = #spec.labels,
        cache = {}, old = {}, cached = 0, cache_size = cache_size, child_mt = CHILD[kind],
    }, FAMILY[kind])
    for k, fn in pairs(HOT[kind]) do f[k] = fn end
    -- In a worker, register now so that a conflicting declaration raises here (and
    -- the family is not kept); a full zone is a runtime failure: the family is
    -- returned with the error, records nothing (counted) until the zone has room.
    local rerr
    if self:_attach() then
        local id, why, misuse = f:_ensure()
        if not id then
            if misuse then error(why, level) end
            log_once(why)
            rerr = why
        end
    end
    self.families[name] = f
    self.order[#self.order + 1] = f
    return f, rerr
end

-- Not tail calls: errors raised at level 3 must find the caller's frame.
function Zone:counter(name, help, labels, opts)
    local f, err = self:_family("counter", name, help, labels, opts, 3)
    return f, err
end
function Zone:gauge(name, help, labels, opts)
    local f, err = self:_family("gauge", name, help, labels, opts, 3)
    return f, err
end
function Zone:histogram(name, help, labels, opts)
    local f, err = self:_family("histogram", name, help, labels, opts, 3)
    return f, err
end

-- The exposition, as `prometheus_metrics` serves it: format "text" (default),
-- "openmetrics" or "json".
function Zone:render(format)
    local slot, err = self:_attach()
    if not slot then return nil, err end
    local ok, res = pcall(core.render, slot, format)
    if not ok then error(message(res), 2) end
    return res
end

-- Deletes the series of family `names` (a name, or a list of names: those the zone has;
-- none is declared here) whose labels have every value of `match` ({ label = value }),
-- in one walk over the zone; returns how many. This worker's children of those
-- families are forgotten (they make their series anew if used again; other workers'
-- find theirs stale on their next update and do the same).
function Zone:delete_labelled(names, match)
    local slot, err = self:_attach()
    if not slot then return nil, err end
    if type(names) == "string" then names = { names } end
    for _, name in ipairs(names) do
        local f = self.families[name]
        if f then f:_forget() end
    end
    local ok, res = pcall(core.delete_labelled, slot, names, match)
    if not ok then error(message(res), 2) end
    return res
end

-- { capacity_bytes, used_bytes, families, series, errors = { reason = n } }
function Zone:status()
    local slot, err = self:_attach()
    if not slot then return nil, err end
    return core.status(slot)
end

local zones = {}

-- The zone declared by `prometheus_zone <name>`; nil name: the first one declared.
function _M.zone(name)
    if name ~= nil and type(name) ~= "string" then error("zone name must be a string", 2) end
    local key = name or ""
    local z = zones[key]
    if not z then
        z = setmetatable({ name = key, families = {}, order = {} }, Zone)
        zones[key] = z
    end
    return z
end

return _M
