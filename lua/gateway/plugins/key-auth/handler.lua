-- key-auth: identifies the consumer by an API key in a header or a query argument.
local _M = {
    name = "key-auth",
    -- Runs before plugins that need to know the consumer.
    priority = 1250,
    -- It identifies consumers: it cannot be configured on one.
    no_consumer = true,
}

_M.schema = require "gateway.plugins.key-auth.schema"

-- The query string as received, less every `name=...` pair: the other arguments reach
-- the upstream byte for byte (decoding and re-encoding them would change their
-- escapes, and ngx.req.get_uri_args stops at 100 arguments).
local function without_arg(query, name)
    local kept = {}
    for pair in query:gmatch("[^&]+") do
        if ngx.unescape_uri(pair:match("^[^=]*")) ~= name then kept[#kept + 1] = pair end
    end
    return table.concat(kept, "&")
end

local function unauthorized(ctx, message)
    ctx.exit_status, ctx.exit_message = 401, message
    return false
end

-- Removes every key name from every place the key is looked for, in every spelling
-- it would have been accepted under: a header is found case-insensitively, and a
-- name with `_` also as the header with `-` (nginx drops header names with `_` unless
-- `underscores_in_headers` is on, and a lookup of `api_key` finds `api-key`); all
-- instances of a repeated header or query argument go.
local function hide(conf)
    for _, n in ipairs(conf.key_names) do
        if conf.key_in_header then
            ngx.req.clear_header(n)
            local dashed = n:gsub("_", "-")
            if dashed ~= n then ngx.req.clear_header(dashed) end
        end
        if conf.key_in_query then
            local args = ngx.var.args
            if args then ngx.req.set_uri_args(without_arg(args, n)) end
        end
    end
end

-- Sets ctx.consumer, or stops the request with 401.
function _M.access(conf, ctx)
    local headers = conf.key_in_header and ngx.req.get_headers() or nil
    local args = conf.key_in_query and ngx.req.get_uri_args() or nil
    local key
    for _, n in ipairs(conf.key_names) do
        key = headers and headers[n]
        if key then break end
        key = args and args[n]
        if key then break end
    end
    if type(key) == "table" then key = key[1] end
    if type(key) ~= "string" or key == "" then
        return unauthorized(ctx, "No API key found in request")
    end
    local credential = ctx.snapshot.by_name.keyauth_credentials[key]
    if not credential then
        return unauthorized(ctx, "Invalid authentication credentials")
    end
    ctx.consumer = ctx.snapshot.consumers[credential.consumer.id]
    if conf.hide_credentials then hide(conf) end
    return true
end

return _M
