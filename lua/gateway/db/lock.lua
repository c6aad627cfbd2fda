-- gateway.db.lock: the configuration lock. Writers (workers' Admin API writes, the
-- master on start and reload) serialize on one key in lua_shared_dict gateway_state.
--
-- The key holds the holder's token, "<pid>:<start time>:<nonce>", without an expiry:
-- the lock is the holder process's for as long as that process lives, however long its
-- write takes. A lease could not work: a stalled fsync blocks the worker's event loop,
-- so nothing can renew it, and the stalled writer would carry on after it ran out. A
-- locked section never yields (reading, writing the state file and publishing are all
-- blocking calls), so only the holder's death can leave the lock behind; a waiter that
-- finds the holder gone (no such process, a zombie, or its pid now another process's:
-- the start time differs) takes the lock over. A waiter gives up after WAIT seconds
-- and leaves the lock to its live holder.

local ffi = require "ffi"
local core = require "ngx_prometheus"

local ipairs, pcall, tostring, tonumber = ipairs, pcall, tostring, tonumber

local _M = {}

local KEY, TAKEOVER_KEY = "db:lock", "db:lock:takeover"

-- How long a writer waits for the lock (a write stalled on a slow disk holds it).
local WAIT = 15

local function state_dict() return ngx.shared.gateway_state end

-- Each on its own: another module may have declared some of them already.
for _, decl in ipairs({
    "struct gateway_pollfd { int fd; short events; short revents; };",
    "int poll(struct gateway_pollfd *fds, unsigned long nfds, int timeout);",
    "int getpid(void);",
    "int kill(int pid, int sig);",
}) do
    pcall(ffi.cdef, decl)
end

local ESRCH = 3

-- The state and start time (clock ticks since boot) of process `pid`, from
-- /proc/<pid>/stat; nil where /proc cannot tell.
local function proc_stat(pid)
    local f = io.open("/proc/" .. pid .. "/stat", "rb")
    if not f then return nil end
    local text = f:read("*a")
    f:close()
    -- The command name (field 2) may hold spaces and parentheses: fields after its
    -- last ')' are fixed. State is field 3, start time field 22.
    local rest = text and text:match("^.*%)%s+(.*)$")
    if not rest then return nil end
    local fields = {}
    for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
    return fields[1], fields[20]
end

local self_token_prefix -- "<pid>:<start time>", for this process

local function self_prefix()
    local pid = ffi.C.getpid()
    -- Workers are forked from the master: compute it again in each process.
    if not self_token_prefix or self_token_prefix.pid ~= pid then
        local _, start = proc_stat(pid)
        self_token_prefix = { pid = pid, text = pid .. ":" .. (start or "?") }
    end
    return self_token_prefix.text
end

-- Whether the process that made `token` still lives.
local function alive(token)
    local pid, start = tostring(token):match("^(%d+):([^:]*):")
    pid = tonumber(pid)
    if not pid then return false end
    local state, now_start = proc_stat(pid)
    if state then
        if state == "Z" or state == "X" then return false end
        return start == "?" or now_start == start
    end
    -- No /proc entry: ask the kernel (EPERM means it exists, as another user's).
    if ffi.C.kill(pid, 0) == 0 then return true end
    return ffi.errno() ~= ESRCH
end

-- One attempt: true when `token` now holds the lock, false when a live holder has it,
-- nil, err on a dict failure.
local function try(token)
    local dict = state_dict()
    local ok, err = dict:add(KEY, token)
    if ok then return true end
    if err ~= "exists" then return nil, "cannot take the configuration lock: " .. tostring(err) end
    local holder = dict:get(KEY)
    if holder == nil or alive(holder) then return false end
    -- The holder died holding it. Several waiters may see that at once: the one that
    -- adds the takeover key replaces the dead token (nothing here yields, and no one
    -- else touches a dead holder's key), the others wait for the winner.
    if not dict:add(TAKEOVER_KEY, token, 1) then return false end
    if dict:get(KEY) == holder then
        dict:set(KEY, token)
        ngx.log(ngx.NOTICE, "gateway: took over the configuration lock of process ",
            holder:match("^%d+"), ", which died holding it")
    end
    dict:delete(TAKEOVER_KEY)
    return dict:get(KEY) == token
end

local function holder_pid()
    local holder = state_dict():get(KEY)
    return holder and holder:match("^%d+") or "?"
end

-- (master) token | nil, err. On a reload, old workers may be in the middle of a write,
-- so the master waits for their lock like any writer; the master cannot ngx.sleep and
-- waits with poll(2) (blocking is fine there). nginx's clock only moves when told to.
function _M.master()
    local token = self_prefix() .. ":master"
    ngx.update_time()
    local deadline = ngx.now() + WAIT
    while true do
        local ok, err = try(token)
        if ok then return token end
        if ok == nil then return nil, err end
        ngx.update_time()
        if ngx.now() >= deadline then
            return nil, "timed out waiting for the configuration lock, held by process " .. holder_pid()
        end
        ffi.C.poll(nil, 0, 10)
    end
end

-- (worker) token | nil, err: waits, yielding, until the lock is this request's.
function _M.take()
    local token = self_prefix() .. ":" .. core.uuid()
    local deadline = ngx.now() + WAIT
    local delay = 0.001
    while true do
        local ok, err = try(token)
        if ok then return token end
        if ok == nil then return nil, err end
        ngx.update_time()
        if ngx.now() >= deadline then
            return nil, "timed out waiting for the configuration lock, held by process " .. holder_pid()
        end
        ngx.sleep(delay)
        delay = math.min(delay * 2, 0.02)
    end
end

-- Whether `token` still holds the lock.
function _M.holds(token)
    return state_dict():get(KEY) == token
end

-- Lets go of the lock if `token` still holds it (only a takeover, after this process
-- died, could change the key between the two calls).
function _M.release(token)
    if _M.holds(token) then state_dict():delete(KEY) end
end

return _M
