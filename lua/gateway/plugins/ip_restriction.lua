-- ip-restriction: allow or deny clients by IP address or CIDR (IPv4 and IPv6), matched
-- by the Rust module (cidr-utils). A denied client gets `status` and `message`.
local core = require "ngx_prometheus"

local _M = {
    name = "ip-restriction",
    -- Before authentication: refuse early and cheaply.
    priority = 3000,
}

-- Rules are checked one by one on every request: a list is at most this long.
local MAX_RULES = 256

--------------------------------------------------------------------------------
-- IPv4-mapped IPv6 rules. A client connected over IPv4 to a dual-stack socket
-- arrives as ::ffff:a.b.c.d and is matched as the IPv4 address a.b.c.d (the Rust
-- matcher unmaps it), so rules are read the same way: an IPv6 rule inside
-- ::ffff:0:0/96 (`::ffff:a.b.c.d`, `::ffff:a.b.c.0/120`, `::ffff:0:0/96`) means the
-- IPv4 address or network (::ffff:0:0/96+n is a.b.c.d/n), and an IPv6 network that
-- contains all of ::ffff:0:0/96 (`::/0`, `::/80`) also covers every IPv4 client. An
-- address means the same client whichever socket it came in on.

local floor, tonumber, fmt = math.floor, tonumber, string.format

-- The eight 16-bit groups of an IPv6 address (already known valid), or nil.
local function groups(addr)
    local head, a, b, c, d = addr:match("^(.*:)(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    if head then
        addr = fmt("%s%x:%x", head, tonumber(a) * 256 + tonumber(b), tonumber(c) * 256 + tonumber(d))
    end
    local list = {}
    local left, right = addr:match("^(.-)::(.*)$")
    local function push(part)
        for g in part:gmatch("[^:]+") do list[#list + 1] = tonumber(g, 16) end
    end
    if left then
        push(left)
        local n_left = #list
        local tail = {}
        for g in right:gmatch("[^:]+") do tail[#tail + 1] = tonumber(g, 16) end
        for _ = 1, 8 - n_left - #tail do list[#list + 1] = 0 end
        for _, g in ipairs(tail) do list[#list + 1] = g end
    else
        push(addr)
    end
    if #list ~= 8 then return nil end
    return list
end

local MAPPED = { 0, 0, 0, 0, 0, 0xffff, 0, 0 }

-- Whether the first `bits` bits of two group lists are equal.
local function same_prefix(x, y, bits)
    for i = 1, 8 do
        local take = bits - (i - 1) * 16
        if take <= 0 then return true end
        if take >= 16 then
            if x[i] ~= y[i] then return false end
        else
            local unit = 2 ^ (16 - take)
            if floor(x[i] / unit) ~= floor(y[i] / unit) then return false end
        end
    end
    return true
end

-- The rules that mean, for unmapped clients, what `rule` (a valid rule) means.
local function normalize(rule)
    local addr, len = rule:match("^([^/]*)/?(%d*)$")
    if not addr or not addr:find(":", 1, true) then return { rule } end
    local g = groups(addr)
    if not g then return { rule } end
    local bits = len ~= "" and tonumber(len) or 128
    if bits >= 96 and same_prefix(g, MAPPED, 96) then
        local v4 = fmt("%d.%d.%d.%d", floor(g[7] / 256), g[7] % 256, floor(g[8] / 256), g[8] % 256)
        return { bits == 128 and v4 or (v4 .. "/" .. (bits - 96)) }
    end
    if bits < 96 and same_prefix(g, MAPPED, bits) then
        return { rule, "0.0.0.0/0" }
    end
    return { rule }
end

-- Every rule of `list`, normalized.
function _M.normalize(list)
    local out = {}
    for _, rule in ipairs(list or {}) do
        for _, r in ipairs(normalize(rule)) do out[#out + 1] = r end
    end
    return out
end

local function valid_rule(v)
    local rules, err = core.ip_rules({ v }, {})
    if not rules then return nil, err end
    rules, err = core.ip_rules(_M.normalize({ v }), {})
    if not rules then return nil, err end
    return true
end

_M.schema = {
    fields = {
        { allow = { type = "array", len_max = MAX_RULES, elements = { type = "string", custom = valid_rule },
            description = "Addresses or CIDRs allowed; when set, every other client is refused. "
                .. "IPv4-mapped IPv6 rules (::ffff:a.b.c.d) mean the IPv4 address." } },
        { deny = { type = "array", len_max = MAX_RULES, elements = { type = "string", custom = valid_rule },
            description = "Addresses or CIDRs refused; checked before allow." } },
        -- A final error status only: 1xx would leave the client waiting for the real
        -- answer (101 switches protocols), 2xx and 3xx would pass for success.
        { status = { type = "integer", default = 403, between = { 400, 599 },
            description = "Status sent to a refused client (400 to 599)." } },
        { message = { type = "string", default = "Your IP address is not allowed", len_max = 1024,
            description = "Message sent to a refused client." } },
    },
    entity_checks = function(conf)
        if (not conf.allow or #conf.allow == 0) and (not conf.deny or #conf.deny == 0) then
            return nil, { allow = "at least one of 'allow' or 'deny' must be given" }
        end
        return true
    end,
}

-- Compiled rules per plugin configuration (configurations are immutable snapshots).
local compiled = setmetatable({}, { __mode = "k" })

function _M.access(conf, ctx)
    local rules = compiled[conf]
    if not rules then
        rules = core.ip_rules(_M.normalize(conf.allow), _M.normalize(conf.deny))
        compiled[conf] = rules
    end
    if rules and rules:allows(ngx.var.remote_addr) then
        return true
    end
    ctx.exit_status, ctx.exit_message = conf.status, conf.message
    return false
end

return _M
