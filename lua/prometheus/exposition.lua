-- prometheus.exposition: nginx-lua-prometheus's exposition, made from the zone's.
-- Pure string work (no nginx, no zone), so that unit tests run it as it runs in
-- nginx: label values as that library stores them, `le` as it prints bounds, and its
-- lines, in its order, from the text format the zone renders.

local type, tostring, tonumber, ipairs = type, tostring, tonumber, ipairs
local byte, sub, format, find, sort = string.byte, string.sub, string.format,
    string.find, table.sort
local INF = math.huge

local _M = {}

--------------------------------------------------------------------------------
-- Label values as that library stores them: a string up to its first byte that is
-- not well-formed UTF-8 (Unicode 6.2, table 3-7), anything else through tostring.

-- The index of the first byte of `s` not part of a well-formed UTF-8 sequence, or nil.
function _M.first_malformed(s)
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

function _M.label_string(v)
    if type(v) ~= "string" then return tostring(v) end
    local cut = _M.first_malformed(v)
    if cut then return sub(v, 1, cut - 1) end
    return v
end

-- ngxprom's hook (Family.fix_labels): the values a new series is named by.
function _M.fix_labels(values, n)
    local out = {}
    for i = 1, n do out[i] = _M.label_string(values[i]) end
    return out
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

-- Per bound, in order: its padded string (the sort key), its printed string; and
-- each bound's index by value.
function _M.bounds(buckets)
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

local TYPE_NAME = { counter = "counter", gauge = "gauge", histogram = "histogram" }

-- The lines of `text` (the zone's text format) for the metrics of `by_zone_name`
-- (zone family name -> metric: name, help, kind, braces, and for histograms the
-- bounds' strings from _M.bounds), with the error metric `error_name` at `errors`;
-- HELP and TYPE from `registry` (metric name -> metric), names after `prefix`.
function _M.lines(text, by_zone_name, registry, prefix, error_name, errors)
    local entries = { { error_name, tostring(errors) } }
    local metric, zname
    local pending = {}
    for line in text:gmatch("[^\n]+") do
        if byte(line, 1) == 35 then -- "#"
            local n = line:match("^# TYPE (%S+) ")
            if n then
                zname = n
                metric = by_zone_name[n]
                for i = #pending, 1, -1 do pending[i] = nil end
            end
        elseif metric then
            local key, value = line:match("^(.*) (%S+)$")
            if key then add_sample(entries, metric, zname, key, value, pending) end
        end
    end
    sort(entries, by_key)
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
        out[#out + 1] = prefix .. (e[3] or e[1]) .. " " .. tostring(value_of(e[2])) .. "\n"
    end
    return out
end


return _M
