-- luacheck (make lint): lua/ runs in LuaJIT inside nginx, with lua-nginx-module's `ngx`;
-- t/lua/ runs under busted, with t/lua/support/'s stand-in `ngx` (which specs extend).
std = "ngx_lua"
max_line_length = 120
-- The header comments' tables (exporter.lua's family names side by side) are wider.
max_comment_line_length = 140

files["t/lua"] = { std = "+busted", globals = { "ngx" } }
