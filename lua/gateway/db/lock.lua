-- gateway.db.lock: the configuration lock. Writers (workers' Admin API writes, the
-- master on start and reload) serialize on one key in lua_shared_dict gateway_state.
-- The TTL frees the lock of a worker that died holding it; waiters wait longer than
-- the TTL so that they outlive it.

local core = require "ngx_prometheus"
local ffi = require "ffi"

local tostring = tostring

local _M = {}

local KEY, TTL, WAIT = "db:lock", 5, 10

local function state_dict() return ngx.shared.gateway_state end

-- The master cannot ngx.sleep: it waits with poll(2) (blocking is fine there).
if not pcall(ffi.typeof, "struct gateway_pollfd") then
    ffi.cdef [[
    struct gateway_pollfd { int fd; short events; short revents; };
    int poll(struct gateway_pollfd *fds, unsigned long nfds, int timeout);
    ]]
end

-- (master) true | nil, err. On a reload, old workers may be in the middle of a write,
-- so the master waits for their lock like any writer. nginx's clock only moves when
-- told to: without update_time a lock would never expire in the master's eyes.
function _M.master()
    for _ = 1, WAIT * 100 do
        if state_dict():add(KEY, "master", TTL) then return true end
        ffi.C.poll(nil, 0, 10)
        ngx.update_time()
    end
    return nil, "timed out waiting for the configuration lock"
end

-- (master) Lets go of the lock master() took.
function _M.master_release()
    state_dict():delete(KEY)
end

-- (worker) token | nil, err: waits, yielding, until the lock is this request's.
function _M.take()
    local token = ngx.worker.pid() .. ":" .. core.uuid()
    local deadline = ngx.now() + WAIT
    local delay = 0.001
    while true do
        local ok, err = state_dict():add(KEY, token, TTL)
        if ok then return token end
        if err ~= "exists" then return nil, "cannot take the configuration lock: " .. tostring(err) end
        if ngx.now() >= deadline then return nil, "timed out waiting for the configuration lock" end
        ngx.sleep(delay)
        delay = math.min(delay * 2, 0.02)
    end
end

-- Whether `token` still holds the lock (a writer that outlived the TTL does not).
function _M.holds(token)
    return state_dict():get(KEY) == token
end

-- Lets go of the lock if `token` still holds it.
function _M.release(token)
    if _M.holds(token) then state_dict():delete(KEY) end
end

return _M
