-- ngxprom.cache: the label cache, pure Lua (no FFI: the unit specs load it as it is).
--
-- The label cache: per family, the children of the label sets this worker used, in a
-- tree keyed by one label value per level. It is bounded so that a client who chooses
-- a label value cannot grow the worker's memory: two generations, `cache` (read by the
-- hot path) and `old`; when `cache` holds `cache_size` label sets, it becomes `old`
-- and a new one starts. A label set found in `old` moves back to `cache`, so every
-- set used at least once per generation stays cached, and a family with at most
-- `cache_size` label sets in use never misses after warming up. At most 2 x
-- `cache_size` label sets are kept; the rest are garbage. Label sets sent to the
-- overflow series all share one child, the family's `overflow`. An owner is
-- { cache = {}, old = {}, cached = 0, cache_size = n }: a family, or a recorder.

local _M = { SIZE = 10000 }

-- The leaf under values[1..n] in tree `node`, or nil.
function _M.find(node, values, n)
    for i = 1, n do
        if node == nil then return nil end
        node = node[values[i]]
    end
    return node
end

-- Puts `leaf` under values[1..n] (n >= 1) in `owner.cache`, starting a new generation
-- first when it is full. Shared with ngxprom.log's recorders, which cache the same way.
local function put(owner, values, n, leaf)
    if owner.cached >= owner.cache_size then
        owner.old, owner.cache, owner.cached = owner.cache, {}, 0
    end
    local node = owner.cache
    for i = 1, n - 1 do
        local v = values[i]
        local nxt = node[v]
        if nxt == nil then nxt = {}; node[v] = nxt end
        node = nxt
    end
    node[values[n]] = leaf
    owner.cached = owner.cached + 1
end

-- The leaf for values[1..n] from the previous generation, moved to the current one;
-- nil when it is not there either.
function _M.revive(owner, values, n)
    local leaf = _M.find(owner.old, values, n)
    if leaf ~= nil then put(owner, values, n, leaf) end
    return leaf
end
_M.put = put

return _M
