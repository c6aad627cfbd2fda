-- The gateway's metrics: the families of the prometheus plugin in both namings, the
-- per-request recording, and the gauges refreshed every second in each worker.
--
-- Naming 'prometheus' (namespace "gateway" by default) | naming 'kong':
--   <ns>_http_requests_total{service,route,code,source,consumer}   | kong_http_requests_total{service,route,code,source,workspace,consumer}
--   <ns>_request_latency_seconds{service,route}                    | kong_request_latency_ms{service,route,workspace}
--   <ns>_upstream_latency_seconds{service,route}                   | kong_upstream_latency_ms{service,route,workspace}
--   <ns>_latency_seconds{service,route}  (the gateway's own share) | kong_kong_latency_ms{service,route,workspace}
--   <ns>_bandwidth_bytes_total{service,route,direction,consumer}   | kong_bandwidth_bytes{service,route,direction,workspace,consumer}
--   <ns>_upstream_target_health{upstream,target,address,state}     | kong_upstream_target_health{...same}
--   <ns>_memory_lua_shared_dict_bytes{shared_dict}                 | kong_memory_lua_shared_dict_bytes{shared_dict}
--   <ns>_memory_lua_shared_dict_total_bytes{shared_dict}           | kong_memory_lua_shared_dict_total_bytes{shared_dict}
--   <ns>_memory_workers_lua_vms_bytes{pid}                         | kong_memory_workers_lua_vms_bytes{pid}
--   <ns>_nginx_timers{state}                                       | kong_nginx_timers{state}
--   <ns>_node_info{node_id,version}                                | kong_node_info{node_id,version}
--   <ns>_datastore_reachable                                       | kong_datastore_reachable
--   (module: nginx_connections{state}, nginx_requests_total)       | kong_nginx_connections_total{state}, kong_nginx_requests_total
--   (module: nginx_metric_errors_total{zone,reason})               | kong_nginx_metric_errors_total

local prom = require "ngxprom"
local new_recorder = require("ngxprom.log").recorder
local core = require "ngx_prometheus"
local base = require "resty.core.base"

local get_request = base.get_request
local tostring, tonumber, pairs, ipairs, setmetatable = tostring, tonumber, pairs, ipairs, setmetatable

local request_facts = prom.request_facts
local facts = prom.new_facts()
local batch_set, batch_exemplar = prom.batch_set, prom.batch_exemplar

local _M = {}

-- The zone `metrics` (conf/gateway.conf), reached on first use rather than when this
-- module is loaded; the store likewise (the unit specs load it with stand-ins).
local zone_, db_
local function metrics_zone()
    zone_ = zone_ or prom.zone("metrics")
    return zone_
end

-- Status codes as label strings, made once.
local code_strings = setmetatable({}, {
    __index = function(t, k)
        local s = tostring(k)
        t[k] = s
        return s
    end,
})

-- Histogram shape for latencies: nginx measures milliseconds; keep 1 ms to 1 h.
local function latency_opts(kong, buckets_ms, limit)
    -- Division, not multiplication by 0.001: 700 / 1000 is exactly the double 0.7.
    local per_unit = kong and 1 or 1000
    local buckets = {}
    for i, b in ipairs(buckets_ms) do buckets[i] = b / per_unit end
    return {
        buckets = buckets, lowest = 1 / per_unit, highest = 3600000 / per_unit, precision = 2,
        max_series = limit, group = "http",
        -- OpenMetrics' `# UNIT` only for base units: Kong's `_ms` families have none.
        unit = (not kong) and "seconds" or nil,
    }
end

-- The families of a plugin configuration's naming, one descriptor each: the field
-- of the family set, type, name, help, labels, and `buckets` (the config field of a
-- latency histogram) or `http` (request families: group "http", `series_limit`).
local function descriptors(conf)
    local kong = conf.naming == "kong"
    local ns = kong and "kong" or conf.namespace
    local reqs_labels = kong and { "service", "route", "code", "source", "workspace", "consumer" }
        or { "service", "route", "code", "source", "consumer" }
    local lat_labels = kong and { "service", "route", "workspace" } or { "service", "route" }
    local bw_labels = kong and { "service", "route", "direction", "workspace", "consumer" }
        or { "service", "route", "direction", "consumer" }
    local unit = kong and "_ms" or "_seconds"
    local list = {
        { field = "requests", type = "counter", name = ns .. "_http_requests_total", http = true,
          help = "HTTP requests by service, route, status code and source.", labels = reqs_labels },
        { field = "request_latency", type = "histogram", name = ns .. "_request_latency" .. unit,
          buckets = "request_latency_buckets", labels = lat_labels,
          help = "Time from the first byte read from the client to the last byte sent." },
        { field = "upstream_latency", type = "histogram", name = ns .. "_upstream_latency" .. unit,
          buckets = "upstream_latency_buckets", labels = lat_labels,
          help = "Time spent waiting for the upstream service." },
        { field = "gateway_latency", type = "histogram",
          name = ns .. (kong and "_kong_latency_ms" or "_latency_seconds"),
          buckets = "gateway_latency_buckets", labels = lat_labels,
          help = "Time spent in the gateway itself: request latency minus upstream latency." },
        { field = "bandwidth", type = "counter", http = true, unit = (not kong) and "bytes" or nil,
          name = ns .. (kong and "_bandwidth_bytes" or "_bandwidth_bytes_total"), labels = bw_labels,
          help = "Bytes received from clients (ingress) and sent to them (egress)." },
        { field = "target_health", type = "gauge", name = ns .. "_upstream_target_health",
          help = "Health of upstream targets: 1 for the target's current state, 0 for the others.",
          labels = { "upstream", "target", "address", "state" } },
        { field = "dict_bytes", type = "gauge", name = ns .. "_memory_lua_shared_dict_bytes",
          help = "Bytes allocated in each lua_shared_dict.", labels = { "shared_dict" } },
        { field = "dict_total", type = "gauge", name = ns .. "_memory_lua_shared_dict_total_bytes",
          help = "Capacity of each lua_shared_dict in bytes.", labels = { "shared_dict" } },
        { field = "lua_vms", type = "gauge", name = ns .. "_memory_workers_lua_vms_bytes",
          help = "Memory used by each worker's Lua VM, in bytes.", labels = { "pid" } },
        { field = "timers", type = "gauge", name = ns .. "_nginx_timers",
          help = "Lua timers in this worker, by state.", labels = { "state" } },
        { field = "node_info", type = "gauge", name = ns .. "_node_info",
          help = "The gateway node: id and version.", labels = { "node_id", "version" } },
        { field = "datastore", type = "gauge", name = ns .. "_datastore_reachable",
          help = "1 when the configuration store can be read, 0 otherwise." },
    }
    if kong then
        list[#list + 1] = { field = "connections", type = "gauge", name = "kong_nginx_connections_total",
            help = "nginx connections by state.", labels = { "state" } }
        list[#list + 1] = { field = "nginx_requests", type = "gauge", name = "kong_nginx_requests_total",
            help = "Requests nginx received." }
        list[#list + 1] = { field = "metric_errors", type = "counter", name = "kong_nginx_metric_errors_total",
            help = "Errors while recording metrics (sum of nginx_metric_errors_total)." }
    end
    return list, kong
end

-- Plugin configurations with the same key share one family set.
local function set_key(conf)
    if conf.naming == "kong" then return "kong" end
    return "prometheus:" .. conf.namespace
end

local sets = {}

-- Family set key -> whether an enabled instance of it asks for exemplars (the
-- configure phase's; until it ran, the first instance's own field decides).
local exemplars_wanted = {}

-- The families whose series carry a request's exemplar: the request count and the
-- latencies (never the byte counts).
local EXEMPLAR_FIELDS = { "requests", "request_latency", "upstream_latency", "gateway_latency" }
local carries_exemplars = {}
for _, f in ipairs(EXEMPLAR_FIELDS) do carries_exemplars[f] = true end

-- The family set of a naming; families register in the zone on first use.
local function family_set(conf)
    local key = set_key(conf)
    local set = sets[key]
    if set then return set end
    local list, kong = descriptors(conf)
    -- `source` of a response the gateway made itself (no route, a plugin's refusal,
    -- an unreachable or timed-out upstream), not the upstream.
    set = { kong = kong, own_source = kong and "kong" or "gateway" }
    local zone = metrics_zone()
    local exemplars = exemplars_wanted[key]
    if exemplars == nil then exemplars = conf.exemplars == true end
    for _, d in ipairs(list) do
        local opts
        if d.buckets then
            opts = latency_opts(kong, conf[d.buckets], conf.series_limit)
            opts.expire = conf.expire
        elseif d.http then
            opts = { max_series = conf.series_limit, group = "http", unit = d.unit, expire = conf.expire }
        end
        if carries_exemplars[d.field] then opts.exemplars = exemplars end
        set[d.field] = zone[d.type](zone, d.name, d.help, d.labels, opts)
    end
    sets[key] = set
    return set
end

-- Whether two plugin configurations would expose a family name (or a sample name)
-- in common without sharing their families: `namespace = "foo"` and
-- `namespace = "foo_request"` both make `foo_request_latency_seconds`. Returns the
-- two families that clash, or nil.
function _M.clash(a, b)
    if set_key(a) == set_key(b) then return nil end
    local exposed = {}
    for _, d in ipairs((descriptors(a))) do
        for _, n in ipairs(core.exposition_names(d.name, d.type)) do exposed[n] = d.name end
    end
    for _, d in ipairs((descriptors(b))) do
        for _, n in ipairs(core.exposition_names(d.name, d.type)) do
            if exposed[n] then return exposed[n], d.name end
        end
    end
    return nil
end

-- The entities that label the gateway's series: the label, the field of ngx.ctx the
-- proxy sets to the entity (nil: not a request's), and the label's value for one.
local LABELLED = {
    services = { label = "service", ctx = "service", value = function(e) return e.name or e.id end },
    routes = { label = "route", ctx = "route", value = function(e) return e.name or e.id end },
    consumers = { label = "consumer", ctx = "consumer", value = function(e) return e.username or e.id end },
    upstreams = { label = "upstream", value = function(e) return e.name end },
}

-- Whether the service, route and consumer of a request are in the latest
-- configuration.
local function still_configured(ctx)
    db_ = db_ or require "gateway.db"
    local latest = db_.refresh()
    if not latest then return false end
    for kind, l in pairs(LABELLED) do
        local e = l.ctx and ctx[l.ctx]
        if e and not latest[kind][e.id] then return false end
    end
    return true
end

-- The child of `family` whose labels have the values of `by_name` (label -> value), in
-- the family's order: its descriptor's, the one place each naming's order is written.
-- Nil when it cannot be had.
local function child_named(family, by_name)
    local labels, values = family.spec.labels, {}
    for i = 1, #labels do values[i] = by_name[labels[i]] end
    local child = family:child(values)
    if child.handle ~= 0 then return child end
end

-- A plugin configuration's entries, made for its recorder (ngxprom.log's): the batch
-- of one (service, route, consumer) with the series the configuration turns on, and
-- its requests children by status and source.
local Entries = {}
Entries.__index = Entries

function Entries:new_entry(values, _, ctx)
    -- A worker still on the previous configuration for a moment must not bring back
    -- the series of a route (service, consumer) the Admin API just deleted.
    if not still_configured(ctx) then return nil end
    local set, conf = self.set, self.conf
    local entry = prom.batch(set.kong and 1 or 1000)
    local names = { service = values[1], route = values[2], consumer = values[3], workspace = "default" }
    if conf.latency_metrics then
        batch_set(entry, "request_latency", child_named(set.request_latency, names))
        batch_set(entry, "upstream_latency", child_named(set.upstream_latency, names))
        batch_set(entry, "gateway_latency", child_named(set.gateway_latency, names))
    end
    if conf.bandwidth_metrics then
        names.direction = "ingress"
        batch_set(entry, "received_bytes", child_named(set.bandwidth, names))
        names.direction = "egress"
        batch_set(entry, "sent_bytes", child_named(set.bandwidth, names))
        names.direction = nil
    end
    entry.codes, entry.names = {}, names
    -- A series of the entry deleted because what it names is gone from the latest
    -- configuration (the request was routed by the one before) must not come back.
    entry.may_renew = still_configured
    return entry
end

-- "service" when the upstream sent the response, else the gateway's own source.
function Entries:new_code(entry, status, from_upstream)
    local names = entry.names
    names.code = code_strings[status]
    names.source = from_upstream == 1 and "service" or self.set.own_source
    return child_named(self.set.requests, names)
end

-- Recorders by plugin configuration (immutable per snapshot), bounded like a family's
-- label cache.
local recorders = setmetatable({}, { __mode = "k" })

local function recorder_of(conf)
    local set = family_set(conf)
    local rec = new_recorder(setmetatable({ set = set, conf = conf }, Entries), 3, set.requests.cache_size)
    recorders[conf] = rec
    return rec
end

-- Records one request. `ctx` is ngx.ctx as the proxy filled it. Steady state: two FFI
-- calls (read the request, record it) and a few table lookups. A series deleted or
-- expired meanwhile is made anew and the request counted in it, once (ngxprom's
-- batches), unless what it names is gone from the latest configuration.
function _M.log(conf, ctx)
    local r = get_request()
    if not r or request_facts(r, facts) ~= 0 then return end
    local consumer = ""
    if conf.per_consumer and ctx.consumer then
        consumer = ctx.consumer.username or ctx.consumer.id
    end
    local rec = recorders[conf] or recorder_of(conf)
    local entry = rec:entry(ctx, ctx.service_label or "", ctx.route_label or "", consumer)
    if not entry then return end
    if conf.exemplars then batch_exemplar(entry, r, zone_.slot or 0) end
    rec:record(facts, entry, conf.status_code_metrics, ctx)
end

-- The entities_removed phase: deletes, from every family of both namings (and of
-- every namespace `configs` name), the series labelled with entities that are gone
-- (`removed`, gateway.db.removed's { kind, row, refs }: a target's series are its
-- upstream's). Returns how many series were deleted.
function _M.forget(removed, configs)
    -- Family name -> its labels, as a set.
    local families = {}
    local namings = { { naming = "kong" }, { naming = "prometheus", namespace = "gateway" } }
    for _, c in ipairs(configs or {}) do namings[#namings + 1] = c end
    for _, c in ipairs(namings) do
        for _, d in ipairs((descriptors(c))) do
            local labels = {}
            for _, l in ipairs(d.labels or {}) do labels[l] = true end
            families[d.name] = labels
        end
    end
    local deleted = 0
    for _, g in ipairs(removed) do
        local match
        local l = LABELLED[g.kind]
        if g.kind == "targets" then
            local upstream = g.refs and g.refs.upstream
            match = { upstream = upstream and upstream.name, target = g.row.target }
        elseif l then
            match = { [l.label] = l.value(g.row) }
        end
        if match then
            local names = {}
            for name, labels in pairs(families) do
                local has_all = true
                for label in pairs(match) do has_all = has_all and labels[label] == true end
                if has_all then names[#names + 1] = name end
            end
            deleted = deleted + (metrics_zone():delete_labelled(names, match) or 0)
        end
    end
    return deleted
end

--------------------------------------------------------------------------------
-- Configuration changes and the per-second gauges.

-- Prometheus plugin configurations of the current snapshot, by family set.
local active = {}
-- The family sets the previous snapshot's instances (enabled or not) named.
local named_before = {}

-- The configure phase, on every new snapshot with every instance of the plugin:
-- declares the families of every naming in use and applies bucket changes (the global
-- instance's buckets win, then the oldest).
function _M.configure(instances, snapshot)
    local by_set, wanted = {}, {}
    for _, p in ipairs(instances) do
        if p.enabled ~= false then
            local key = set_key(p.config)
            wanted[key] = wanted[key] or p.config.exemplars == true
            local global = not (p.service or p.route or p.consumer)
            local cur = by_set[key]
            if not cur or (global and not cur.global) then
                by_set[key] = { conf = p.config, global = global }
            end
        end
    end
    -- A naming (or namespace) that no instance names any more (a changed `naming` or
    -- `namespace`, a delete) leaves the zone, as a deleted route's series do: its
    -- frozen series would otherwise stay in every scrape. A disabled instance keeps its
    -- naming's series, as it keeps its configuration. Each worker does it as it takes
    -- the new configuration; the last one to switch deletes what a request still
    -- recorded under the old one meanwhile.
    local named = {}
    for _, p in ipairs(instances) do named[set_key(p.config)] = true end
    for key in pairs(named_before) do
        if not named[key] and sets[key] then
            for _, fam in pairs(sets[key]) do
                if type(fam) == "table" and fam.reset then
                    local ok, err = pcall(fam.reset, fam)
                    if not ok then prom.log_once("prometheus plugin: " .. tostring(err)) end
                end
            end
        end
    end
    named_before = named
    active = {}
    exemplars_wanted = wanted
    for key, chosen in pairs(by_set) do
        local conf = chosen.conf
        local set = family_set(conf)
        active[key] = { set = set, conf = conf, upstream_health = false }
        -- Series made from now on keep exemplars while an enabled instance asks for
        -- them; the ones kept are shown while it does.
        for _, field in ipairs(EXEMPLAR_FIELDS) do
            local fam = set[field]
            if (fam.spec.exemplars == true) ~= wanted[key] then
                local ok, err = pcall(fam.set_exemplars, fam, wanted[key])
                if not ok then prom.log_once("prometheus plugin: " .. tostring(err)) end
            end
        end
        -- The request families expire as the chosen instance says (as its buckets).
        for _, fam in ipairs({ set.requests, set.request_latency, set.upstream_latency,
                               set.gateway_latency, set.bandwidth }) do
            if (fam.spec.expire or 0) ~= (conf.expire or 0) then
                local ok, err = pcall(fam.set_expire, fam, conf.expire or 0)
                if not ok then prom.log_once("prometheus plugin: " .. tostring(err)) end
            end
        end
        for fam, field in pairs({ request_latency = "request_latency_buckets",
                                   upstream_latency = "upstream_latency_buckets",
                                   gateway_latency = "gateway_latency_buckets" }) do
            local want = latency_opts(set.kong, conf[field]).buckets
            local have = set[fam].spec.buckets or {}
            local same = #want == #have
            for i = 1, #want do same = same and want[i] == have[i] end
            if not same then
                local ok, err = pcall(set[fam].set_buckets, set[fam], want)
                if not ok then prom.log_once("prometheus plugin: " .. tostring(err)) end
            end
        end
    end
    for _, p in ipairs(instances) do
        if p.enabled ~= false and p.config.upstream_health_metrics then
            local key = set_key(p.config)
            if active[key] then active[key].upstream_health = true end
        end
    end
    _M.snapshot = snapshot
end

--------------------------------------------------------------------------------
-- Series labelled by worker pid (`*_memory_workers_lua_vms_bytes{pid}`). A worker
-- that is replaced (reload, crash) or no longer started (fewer workers) retires its
-- pid, and its series are deleted: at once, then again every second for a while, in
-- case the old worker refreshed once more before it learnt it was exiting.

local state = ngx.shared.gateway_state
local RETIRED = "retired_worker_pids"
local RETIRE_SWEEP = 10

local function retire(pid)
    state:rpush(RETIRED, pid .. " " .. (ngx.now() + RETIRE_SWEEP))
end

-- Records this worker's pid under its id; the pid it replaces (and, in worker 0, the
-- pids of ids the new worker count no longer has) retire.
local function register_worker()
    local id, pid = ngx.worker.id(), ngx.worker.pid()
    if not id then return end
    local key = "worker_pid|" .. id
    local previous = state:get(key)
    state:set(key, pid)
    if previous and previous ~= pid then retire(previous) end
    if id == 0 then
        local count = ngx.worker.count()
        for i = count, (state:get("worker_count") or 0) - 1 do
            local gone = state:get("worker_pid|" .. i)
            if gone then
                retire(gone)
                state:delete("worker_pid|" .. i)
            end
        end
        state:set("worker_count", count)
    end
end

-- The pid-labelled families of both namings and of every namespace in use.
local function pid_families()
    local names, seen = {}, {}
    local confs = { { naming = "kong" }, { naming = "prometheus", namespace = "gateway" } }
    for _, a in pairs(active) do confs[#confs + 1] = a.conf end
    for _, c in ipairs(confs) do
        for _, d in ipairs((descriptors(c))) do
            if d.labels and d.labels[1] == "pid" and not seen[d.name] then
                seen[d.name] = true
                names[#names + 1] = d.name
            end
        end
    end
    return names
end

-- Worker 0, every second: deletes the series of retired pids, keeping each pid
-- listed until its sweep time is over.
local function sweep_retired()
    local n = state:llen(RETIRED)
    if not n or n == 0 then return end
    local names, now = pid_families(), ngx.now()
    for _ = 1, n do
        local entry = state:lpop(RETIRED)
        if not entry then break end
        local pid, until_ = entry:match("^(%d+) (.+)$")
        if pid then
            metrics_zone():delete_labelled(names, { pid = pid })
            if tonumber(until_) > now then state:rpush(RETIRED, entry) end
        end
    end
end

local DICTS = { "gateway_config", "gateway_state" }
local HEALTH_STATES = { "healthy", "unhealthy", "dns_error", "healthchecks_off" }

-- Each worker, every second: its own VM memory and timers, and the shared gauges.
local function refresh(health)
    -- A worker on its way out (reload) stops reporting: its pid is retired.
    if ngx.worker.exiting() then return end
    local pid = tostring(ngx.worker.pid())
    local snapshot = _M.snapshot
    for _, a in pairs(active) do
        local set = a.set
        set.lua_vms:labels(pid):set(collectgarbage("count") * 1024)
        set.timers:labels("running"):set(ngx.timer.running_count())
        set.timers:labels("pending"):set(ngx.timer.pending_count())
        for _, name in ipairs(DICTS) do
            local d = ngx.shared[name]
            if d then
                set.dict_total:labels(name):set(d:capacity())
                set.dict_bytes:labels(name):set(d:capacity() - d:free_space())
            end
        end
        if snapshot then
            set.node_info:labels(snapshot.node_id or "", core.version):set(1)
        end
        set.datastore:labels():set(snapshot and 1 or 0)
        if set.kong then
            local s = core.stub_status()
            if s then
                for _, name in ipairs({ "accepted", "handled", "active", "reading", "writing", "waiting" }) do
                    set.connections:labels(name):set(s[name])
                end
                set.connections:labels("total"):set(s.requests)
                set.nginx_requests:labels():set(s.requests)
            end
        end
        if a.upstream_health and snapshot and health then
            for _, t in ipairs(health.targets(snapshot)) do
                for _, health_state in ipairs(HEALTH_STATES) do
                    set.target_health:labels(t.upstream, t.target, t.address, health_state)
                        :set(health_state == t.state and 1 or 0)
                end
            end
        end
    end
end

-- Module errors mirrored into kong_nginx_metric_errors_total, by one worker; the
-- amount already mirrored lives in a shared dict so a restarted worker adds only news.
local function mirror_errors()
    local a = active.kong
    if not a or ngx.worker.id() ~= 0 then return end
    local st = metrics_zone():status()
    if not st then return end
    local total = 0
    for _, n in pairs(st.errors) do total = total + n end
    local mirrored = state:get("kong_metric_errors_mirrored") or 0
    if total > mirrored then
        a.set.metric_errors:labels():inc(total - mirrored)
        state:set("kong_metric_errors_mirrored", total)
    end
end

function _M.init_worker()
    register_worker()
end

-- The metrics phase, every second in each worker: the gauges, the mirrored errors
-- and (worker 0) the retired workers' series.
function _M.refresh()
    local fine, e = pcall(refresh, require "gateway.balancer")
    if not fine then prom.log_once("metrics refresh: " .. tostring(e)) end
    pcall(mirror_errors)
    if ngx.worker.id() == 0 then
        fine, e = pcall(sweep_retired)
        if not fine then prom.log_once("retired workers' series: " .. tostring(e)) end
    end
end

-- The exposition text, as the metrics port serves it (for the Admin API).
function _M.status()
    return metrics_zone():status()
end

return _M
