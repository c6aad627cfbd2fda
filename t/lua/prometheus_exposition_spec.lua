-- prometheus.exposition: nginx-lua-prometheus's label values, `le` strings and lines,
-- made from the zone's text format (the drop-in's collect(); t/dropin.rs compares the
-- whole page with the real library's in nginx).
local exposition = require "prometheus.exposition"

-- A metric as prometheus.lua registers it.
local function metric(name, kind, help, buckets, braces)
    local m = { name = name, kind = kind, help = help, braces = braces == true }
    if buckets then
        m.sorted_le, m.shown_le, m.bucket_index = exposition.bounds(buckets)
    end
    return m
end

local function lines(text, metrics, prefix, errors)
    local by_zone, registry = {}, { nginx_metric_errors_total = {
        name = "nginx_metric_errors_total", kind = "counter",
        help = "Number of nginx-lua-prometheus errors" } }
    for _, m in ipairs(metrics) do
        by_zone[(prefix or "") .. m.name] = m
        registry[m.name] = m
    end
    return table.concat(exposition.lines(text, by_zone, registry, prefix or "",
        "nginx_metric_errors_total", errors or 0))
end

describe("prometheus.exposition", function()
    it("cuts a label value at its first byte that is not well-formed UTF-8", function()
        local cut = exposition.label_string
        assert.equal("baz", cut("baz\189\166qux"))
        assert.equal("bad1", cut("bad1\195\195bad"))
        assert.equal("bad2", cut("bad2\224\161\209bad"))
        assert.equal("", cut("\224\143\175"))        -- E0 needs A0..BF next
        assert.equal("\237\129\128", cut("\237\129\128"))
        assert.equal("", cut("\237\160\128"))        -- a surrogate (ED A0..)
        assert.equal("\244\143\143\143", cut("\244\143\143\143"))
        assert.equal("", cut("\244\144\128\128"))    -- above U+10FFFF
        assert.equal("", cut("\244"))                -- cut short
        assert.equal("¢€𤭢", cut("¢€𤭢"))
        assert.equal("z\1", cut("z\1"))              -- control characters stay
    end)

    it("prints other label values through tostring", function()
        assert.same({ "0", "15.5", "1e+20", "true", "-3" },
            exposition.fix_labels({ 0, 15.5, 1e20, true, -3 }, 5))
    end)

    it("pads bounds to one width so that they sort as numbers, and prints them bare", function()
        local sorted, shown, index = exposition.bounds({ 0.000005, 5, 50000 })
        assert.same({ "00000.000005", "00005.000000", "50000.000000" }, sorted)
        assert.same({ "5e-06", "5", "50000" }, shown)
        assert.equal(2, index[5])
        -- %f keeps six decimals: 3.123232001 prints as 3.123232, as there.
        local _, shown2 = exposition.bounds({ 0.08, 3.123232001, 1500000 })
        assert.same({ "0.08", "3.123232", "1500000" }, shown2)
    end)

    it("sorts lines by key, HELP and TYPE first, buckets no value reached left out", function()
        local text = table.concat({
            "# HELP other Not ours.", "# TYPE other counter", "other 9",
            "# HELP h H", "# TYPE h histogram",
            'h_bucket{a="x",le="0.1"} 0', 'h_bucket{a="x",le="1"} 2', 'h_bucket{a="x",le="+Inf"} 3',
            'h_sum{a="x"} 3.5', 'h_count{a="x"} 3',
            'h_bucket{a="y",le="0.1"} 0', 'h_bucket{a="y",le="1"} 0', 'h_bucket{a="y",le="+Inf"} 0',
            'h_sum{a="y"} 0', 'h_count{a="y"} 0',
            "# HELP c C", "# TYPE c counter", 'c{b="2"} 1', 'c{b="10"} 1e+20',
            "",
        }, "\n")
        local got = lines(text, { metric("h", "histogram", "H", { 0.1, 1 }), metric("c", "counter", "C") }, "", 4)
        assert.equal(table.concat({
            "# HELP c C\n# TYPE c counter\n",
            'c{b="10"} 1e+20\n', 'c{b="2"} 1\n',
            "# HELP h H\n# TYPE h histogram\n",
            'h_bucket{a="x",le="1"} 2\n', 'h_bucket{a="x",le="+Inf"} 3\n',
            'h_count{a="x"} 3\n', 'h_sum{a="x"} 3.5\n',
            "# HELP nginx_metric_errors_total Number of nginx-lua-prometheus errors\n",
            "# TYPE nginx_metric_errors_total counter\n",
            "nginx_metric_errors_total 4\n",
        }), got)
    end)

    it("puts braces after a metric registered with an empty table of labels", function()
        local text = "# HELP e E\n# TYPE e counter\ne 0\n# HELP g G\n# TYPE g histogram\n"
            .. 'g_bucket{le="1"} 1\ng_bucket{le="+Inf"} 1\ng_sum 0.5\ng_count 1\n'
        local got = lines(text, { metric("e", "counter", "E", nil, true),
            metric("g", "histogram", "G", { 1 }, true) })
        assert.truthy(got:find("e{} 0\n", 1, true))
        assert.truthy(got:find("g_sum{} 0.5\n", 1, true))
        assert.truthy(got:find('g_bucket{le="1"} 1\n', 1, true))
    end)

    it("names every line after the prefix, the error metric too", function()
        local text = "# HELP p_m M\n# TYPE p_m gauge\np_m 0.30000000000000004\n"
        local got = lines(text, { metric("m", "gauge", "M") }, "p_")
        assert.equal("# HELP p_m M\n# TYPE p_m gauge\np_m 0.3\n"
            .. "# HELP p_nginx_metric_errors_total Number of nginx-lua-prometheus errors\n"
            .. "# TYPE p_nginx_metric_errors_total counter\np_nginx_metric_errors_total 0\n", got)
    end)

    it("leaves a metric without help without a HELP line", function()
        local got = lines("# HELP q \n# TYPE q counter\nq 1\n", { metric("q", "counter") })
        assert.truthy(got:find("\n# TYPE q counter\nq 1\n", 1, true))
        assert.falsy(got:find("# HELP q", 1, true))
    end)
end)
