-- ip-restriction: allow or deny clients by IP address or CIDR (IPv4 and IPv6), matched
-- by the Rust module (cidr-utils). A denied client gets `status` and `message`.
local core = require "ngx_prometheus"

local _M = {
    name = "ip-restriction",
    -- Before authentication: refuse early and cheaply.
    priority = 3000,
}

local function valid_rule(v)
    local rules, err = core.ip_rules({ v }, {})
    if not rules then return nil, err end
    return true
end

_M.schema = {
    fields = {
        { allow = { type = "array", elements = { type = "string", custom = valid_rule },
            description = "Addresses or CIDRs allowed; when set, every other client is refused." } },
        { deny = { type = "array", elements = { type = "string", custom = valid_rule },
            description = "Addresses or CIDRs refused; checked before allow." } },
        { status = { type = "integer", default = 403, between = { 100, 599 },
            description = "Status sent to a refused client." } },
        { message = { type = "string", default = "Your IP address is not allowed",
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
        rules = core.ip_rules(conf.allow or {}, conf.deny or {})
        compiled[conf] = rules
    end
    if rules and rules:allows(ngx.var.remote_addr) then
        return true
    end
    ctx.exit_status, ctx.exit_message = conf.status, conf.message
    return false
end

return _M
