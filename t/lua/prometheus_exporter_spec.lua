-- The prometheus plugin's exporter (gateway/plugins/prometheus/exporter.lua): which
-- series a request is recorded in, in each naming's label order, made once per label
-- set through ngxprom.log's recorder (loaded as it is, with its label cache), kept
-- from coming back for what the latest configuration no longer has, and deleted when
-- entities are removed. The zone, the C calls that record and the store are stand-ins
-- (they need nginx: the gateway suite records for real); they keep what they were given.
local fake = { logged = {}, recorded = {}, deleted = {}, resets = {}, facts = {}, exemplars = {} }

local Family = {}
Family.__index = Family

-- One child per label set, made (and counted) once, as the zone's families do.
function Family:child(values)
    local copy = {}
    for i = 1, #self.spec.labels do copy[i] = values[i] end
    local key = table.concat(copy, "\0")
    local child = self.children[key]
    if not child then
        self.made = self.made + 1
        child = { handle = self.made, values = copy, family = self }
        self.children[key] = child
    end
    return child
end
function Family:labels(...) return self:child({ ... }) end
function Family:reset() fake.resets[#fake.resets + 1] = self.name end
function Family:set_expire(s) self.spec.expire = s end
function Family:set_buckets(b) self.spec.buckets = b end
function Family:set_exemplars(on) self.spec.exemplars = on end

local zone = { families = {} }
local function declare(kind)
    return function(_, name, _, labels, opts)
        local f = zone.families[name]
        if f then return f end
        f = setmetatable({ name = name, kind = kind, children = {}, made = 0, cache_size = 10000,
            spec = { labels = labels or {}, expire = opts and opts.expire, buckets = opts and opts.buckets,
                exemplars = opts and opts.exemplars } }, Family)
        zone.families[name] = f
        return f
    end
end
zone.counter, zone.gauge, zone.histogram = declare("counter"), declare("gauge"), declare("histogram")
function zone.delete_labelled(_, names, match)
    table.sort(names)
    fake.deleted[#fake.deleted + 1] = { names = names, match = match }
    return 1
end

local prom = {
    core = { reasons = { label_count = 1 } },
    zone = function() return zone end,
    new_facts = function() return {} end,
    request_facts = function(_, out)
        for k, v in pairs(fake.facts) do out[k] = v end
        return 0
    end,
    batch = function(ms_per_unit) return { handles = { ms_per_unit = ms_per_unit }, children = {} } end,
    batch_set = function(b, field, child)
        b.children[field] = child
        b.handles[field] = child and child.handle or 0
    end,
    record = function(_, batch, requests, arg)
        fake.recorded[#fake.recorded + 1] = { batch = batch, requests = requests, arg = arg }
        return true
    end,
    batch_exemplar = function(batch, r, slot)
        fake.exemplars[#fake.exemplars + 1] = { batch = batch, r = r, slot = slot }
    end,
    log_once = function(msg) fake.logged[#fake.logged + 1] = msg end,
    count_error = function() end,
    invalid_label = function() end,
}

-- The latest configuration, as gateway.db.refresh would give it.
local latest
package.loaded["ngxprom"] = prom
package.loaded["resty.core.base"] = { get_request = function() return "r" end }
package.loaded["gateway.db"] = { refresh = function() return latest end }
ngx.shared = {}

local exporter = require "gateway.plugins.prometheus.exporter"
local schema = require "gateway.schema"
local plugin_schema = require "gateway.plugins.prometheus.schema"

-- A plugin configuration with its schema's defaults, and every switch on.
local function conf(over)
    local c = { status_code_metrics = true, latency_metrics = true, bandwidth_metrics = true,
        per_consumer = true }
    for k, v in pairs(over or {}) do c[k] = v end
    return assert(schema.validate(plugin_schema, c))
end

local svc, rt, ann = { id = "s1", name = "svc" }, { id = "r1", name = "rt" }, { id = "c1", username = "ann" }
local function ctx() return { service = svc, route = rt, consumer = ann, service_label = "svc", route_label = "rt" } end

local function values(child) return child and table.concat(child.values, ",") end

describe("the prometheus plugin's exporter", function()
    before_each(function()
        latest = { services = { s1 = svc }, routes = { r1 = rt }, consumers = { c1 = ann } }
        fake.recorded, fake.deleted, fake.resets, fake.logged, fake.exemplars = {}, {}, {}, {}, {}
        fake.facts = { status = 200, from_upstream = 1 }
    end)

    it("records in the 'prometheus' naming's label order, in seconds", function()
        exporter.log(conf({ namespace = "order" }), ctx())
        local rec = fake.recorded[1]
        assert.equal(1000, rec.batch.handles.ms_per_unit)
        assert.equal("svc,rt,200,service,ann", values(rec.requests))
        assert.equal("svc,rt", values(rec.batch.children.request_latency))
        assert.equal("svc,rt", values(rec.batch.children.gateway_latency))
        assert.equal("svc,rt,ingress,ann", values(rec.batch.children.received_bytes))
        assert.equal("svc,rt,egress,ann", values(rec.batch.children.sent_bytes))
        assert.equal("order_http_requests_total", rec.requests.family.name)
    end)

    it("records in Kong's label order, workspace included, in milliseconds", function()
        fake.facts = { status = 502, from_upstream = 0 }
        exporter.log(conf({ naming = "kong" }), ctx())
        local rec = fake.recorded[1]
        assert.equal(1, rec.batch.handles.ms_per_unit)
        assert.equal("svc,rt,502,kong,default,ann", values(rec.requests))
        assert.equal("svc,rt,default", values(rec.batch.children.upstream_latency))
        assert.equal("svc,rt,egress,default,ann", values(rec.batch.children.sent_bytes))
        assert.equal("kong_http_requests_total", rec.requests.family.name)
    end)

    it("makes a label set's series once, and a requests series once per status and source", function()
        local c = conf({ namespace = "once" })
        exporter.log(c, ctx())
        exporter.log(c, ctx())
        fake.facts = { status = 200, from_upstream = 0 }
        exporter.log(c, ctx())
        exporter.log(c, ctx())
        assert.equal(fake.recorded[1].batch, fake.recorded[4].batch)
        assert.equal(fake.recorded[1].requests, fake.recorded[2].requests)
        assert.equal("svc,rt,200,gateway,ann", values(fake.recorded[3].requests))
        assert.equal(2, zone.families["once_http_requests_total"].made)
        assert.equal(1, zone.families["once_request_latency_seconds"].made)
        -- The request's context goes to the batch, for its may_renew.
        assert.equal("rt", fake.recorded[4].arg.route_label)
    end)

    it("records only what the switches turn on", function()
        exporter.log(conf({ namespace = "off", status_code_metrics = false, latency_metrics = false,
            bandwidth_metrics = false, per_consumer = false }), ctx())
        local rec = fake.recorded[1]
        assert.is_nil(rec.requests)
        assert.same({}, rec.batch.children)
    end)

    it("does not bring back the series of a route the latest configuration lacks", function()
        local c = conf({ namespace = "gone" })
        latest.routes = {}
        exporter.log(c, ctx())
        assert.same({}, fake.recorded)
        assert.equal(0, zone.families["gone_http_requests_total"].made)
        -- A cached entry whose route goes: its series are not renewed.
        latest.routes = { r1 = rt }
        exporter.log(c, ctx())
        local batch = fake.recorded[1].batch
        assert.is_true(batch.may_renew(ctx()))
        latest.routes = {}
        assert.is_false(batch.may_renew(ctx()))
    end)

    it("deletes the series labelled with removed entities, from every naming", function()
        local n = exporter.forget({
            { kind = "routes", row = { id = "r9", name = "old" }, refs = {} },
            { kind = "consumers", row = { id = "c9" }, refs = {} },
            { kind = "targets", row = { id = "t9", target = "10.0.0.1:80" }, refs = { upstream = { name = "pool" } } },
            { kind = "plugins", row = { id = "p9", name = "key-auth" }, refs = {} },
        }, { conf({ namespace = "extra" }) })
        assert.equal(3, n)
        assert.same({ route = "old" }, fake.deleted[1].match)
        assert.truthy(table.concat(fake.deleted[1].names, " "):find("extra_http_requests_total", 1, true))
        assert.truthy(table.concat(fake.deleted[1].names, " "):find("kong_request_latency_ms", 1, true))
        assert.is_nil(table.concat(fake.deleted[1].names, " "):find("upstream_target_health", 1, true))
        assert.same({ consumer = "c9" }, fake.deleted[2].match)
        assert.same({ upstream = "pool", target = "10.0.0.1:80" }, fake.deleted[3].match)
        assert.same({ "extra_upstream_target_health", "gateway_upstream_target_health", "kong_upstream_target_health" },
            fake.deleted[3].names)
    end)

    it("resets a naming's families once no instance names it", function()
        local c = conf({ namespace = "left" })
        exporter.configure({ { id = "p1", enabled = true, config = c } }, {})
        assert.same({}, fake.resets)
        exporter.configure({}, {})
        assert.truthy(table.concat(fake.resets, " "):find("left_http_requests_total", 1, true))
    end)

    it("gives a request's batch its exemplar only where the field is on", function()
        local off, on = conf({ namespace = "xoff" }), conf({ namespace = "xon", exemplars = true })
        exporter.log(off, ctx())
        assert.same({}, fake.exemplars)
        exporter.log(on, ctx())
        assert.equal(1, #fake.exemplars)
        assert.equal("r", fake.exemplars[1].r)
        assert.equal(fake.recorded[2].batch, fake.exemplars[1].batch)
    end)

    it("keeps exemplars in the count and latency families while an enabled instance asks", function()
        local fams = { "xs_http_requests_total", "xs_request_latency_seconds",
            "xs_upstream_latency_seconds", "xs_latency_seconds" }
        local function kept()
            local out = {}
            for _, n in ipairs(fams) do out[#out + 1] = zone.families[n].spec.exemplars end
            return out
        end
        local plain, with = conf({ namespace = "xs" }), conf({ namespace = "xs", exemplars = true })
        exporter.configure({ { id = "p1", enabled = true, config = plain } }, {})
        assert.same({ false, false, false, false }, kept())
        -- A scoped instance that asks is enough; the global one does not.
        exporter.configure({ { id = "p1", enabled = true, config = plain },
            { id = "p2", enabled = true, route = { id = "r1" }, config = with } }, {})
        assert.same({ true, true, true, true }, kept())
        assert.is_falsy(zone.families["xs_bandwidth_bytes_total"].spec.exemplars)
        -- Disabled, it no longer counts.
        exporter.configure({ { id = "p1", enabled = true, config = plain },
            { id = "p2", enabled = false, route = { id = "r1" }, config = with } }, {})
        assert.same({ false, false, false, false }, kept())
    end)
end)

describe("the prometheus plugin's schema", function()
    it("has exemplars off by default and takes only a boolean", function()
        assert.is_false(conf().exemplars)
        assert.is_true(conf({ exemplars = true }).exemplars)
        local ok, errs = schema.validate(plugin_schema, { exemplars = "yes" })
        assert.is_nil(ok)
        assert.truthy(errs.exemplars, "exemplars")
    end)
end)
