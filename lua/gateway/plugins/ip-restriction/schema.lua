-- ip-restriction's configuration: rules, and the answer a refused client gets.
local core = require "ngx_prometheus"

-- Rules are checked one by one on every request: a list is at most this long.
local MAX_RULES = 256

-- IPv4-mapped IPv6 rules (`::ffff:a.b.c.d`, `::/0`) are read the way clients are
-- unmapped by the Rust module's rule parser, the one shared with prometheus_allow/deny.
local function valid_rule(v)
    local rules, err = core.ip_rules({ v }, {})
    if not rules then return nil, err end
    return true
end

return {
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
