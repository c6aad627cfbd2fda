-- ip-restriction: allow or deny clients by IP address or CIDR (IPv4 and IPv6), matched
-- by the Rust module (cidr-utils). A denied client gets `status` and `message`.
local core = require "ngx_prometheus"

local _M = {
    name = "ip-restriction",
    -- Before authentication: refuse early and cheaply.
    priority = 3000,
}

_M.schema = require "gateway.plugins.ip-restriction.schema"

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
