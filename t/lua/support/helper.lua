-- busted's helper (make lua-unit): the `ngx` global the pure modules reach for outside
-- a request, with nginx's meaning. ngx.time is the wall clock in seconds (nginx
-- caches it; the unit is the same); ngx.log keeps its lines in ngx.logged for specs
-- to look at. Anything else raises: a module that needs more is not pure, and its
-- spec should say so rather than run on a guess.
local logged = {}

_G.ngx = setmetatable({
    ERR = 4,     -- NGX_LOG_ERR
    NOTICE = 6,  -- NGX_LOG_NOTICE
    logged = logged,
    time = function() return os.time() end,
    log = function(level, ...)
        logged[#logged + 1] = { level = level, message = table.concat({ ... }) }
    end,
}, { __index = function(_, k)
    error("ngx." .. tostring(k) .. " has no stand-in in unit tests", 2)
end })
