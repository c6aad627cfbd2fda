-- gateway.error_page: the answer to every error the gateway's nginx would otherwise
-- answer with its own HTML page. Each server of conf/gateway.conf sends its error
-- statuses (`error_page ... @error`) here: requests nginx refuses before any Lua runs
-- (a malformed request line or header, a URI or header too long, a body too large,
-- TRACE), an upstream that fails or times out, a Lua error in a handler. The body is
-- Kong's shape, `{"message": "..."}`, with a fixed message per status: nothing the
-- client sent is echoed.

local core = require "ngx_prometheus"

local _M = {}

local MESSAGES = {
    [400] = "Bad request",
    [404] = "Not found",
    [405] = "Method not allowed",
    [413] = "Request body too large",
    [414] = "URI too long",
    [494] = "Request header or cookie too large",
    [497] = "A plain HTTP request was sent to an HTTPS port",
    [500] = "An unexpected error occurred",
    [501] = "Transfer-Encoding not implemented",
    [502] = "An invalid response was received from the upstream server",
    [503] = "The upstream server is currently unavailable",
    [504] = "The upstream server is timing out",
    [505] = "HTTP version not supported",
}

-- nginx's own codes for requests it refuses, which it answers as 400 (no client knows
-- them); the message still says which.
local SENT_AS = { [494] = 400, [497] = 400 }

local FALLBACK = '{"message":"An unexpected error occurred"}\n'

-- Answers `status` with `message` as JSON (`allow`: the Allow header of a 405), and
-- ends the request. Setting the status also clears nginx's error status, which would
-- win otherwise.
function _M.send(status, message, allow)
    local text = core.json_encode({ message = message })
    local body = text and text .. "\n" or FALLBACK
    ngx.status = status
    ngx.header.content_type = "application/json; charset=utf-8"
    ngx.header["Content-Length"] = #body
    if allow and status == 405 then ngx.header["Allow"] = allow end
    ngx.print(body)
    return ngx.exit(ngx.HTTP_OK)
end

-- Answers the error status nginx left (ngx.status reads it in an error location) with
-- its message.
function _M.answer(status, allow)
    local message = MESSAGES[status] or (status >= 500 and MESSAGES[500] or MESSAGES[400])
    return _M.send(SENT_AS[status] or status, message, allow)
end

-- The content handler of the Admin API's and the metrics port's error locations.
-- `allow`: the methods the server's pages take, for a 405.
function _M.serve(allow)
    return _M.answer(ngx.status, allow)
end

return _M
