-- The gateway's phase handlers: thin, each hands over to the module that does the work.
--   init (master)        db.configure: state file, declarative or seed file;
--                        dns.configure: resolvers, hosts file
--   init_worker          db sync timer, proxy (router, balancer health), active health
--                        checks (worker 0 probes), the plugins'
--                        phases (init_worker, metrics every second, entities_removed)
--   access / resume (https services) / balancer / log   proxy.*
--   error_page (the proxy's error location)            proxy.error_page

local _M = {}

local function nonempty(s)
    if s and s ~= "" then return s end
    return nil
end

function _M.init(opts)
    local db = require "gateway.db"
    local ok, err = db.configure({
        state_file = opts.prefix .. "/state/gateway.json",
        declarative_file = nonempty(opts.declarative),
        seed_file = nonempty(opts.seed),
    })
    if not ok then
        error("gateway: " .. tostring(err), 0)
    end
    ok, err = require("gateway.dns").configure(opts.dns)
    if not ok then
        error("gateway: " .. tostring(err), 0)
    end
    -- Preload in the master: workers inherit the code and never read the checkout.
    require "gateway.proxy"
    require "gateway.admin"
    require "gateway.status"
    require "gateway.error_page"
    require "gateway.openapi"
    require("gateway.plugins").init()
end

function _M.init_worker()
    local db = require "gateway.db"
    local plugins = require "gateway.plugins"
    db.init_worker()
    require("gateway.proxy").init_worker()
    -- After the proxy: its configuration handler builds the rings the probes use.
    require("gateway.healthcheck").init_worker()
    plugins.init_worker()
    -- What an Admin API write or a reload removed reaches every plugin (metric series
    -- labelled with a deleted route leave the zone).
    db.on_removed(plugins.entities_removed)
end

function _M.access()
    return require("gateway.proxy").access()
end

function _M.resume()
    return require("gateway.proxy").resume()
end

function _M.balancer()
    return require("gateway.proxy").balancer()
end

function _M.log()
    return require("gateway.proxy").log()
end

function _M.error_page()
    return require("gateway.proxy").error_page()
end

return _M
