#!/usr/bin/env bash
# admin-openapi.sh [FILE]: writes the Admin API's OpenAPI description, as
# gateway.openapi builds it (the document GET /openapi.json serves), to FILE
# (default docs/admin-openapi.json; `make admin-openapi`). Runs outside nginx, under
# LuaJIT with t/lua/support standing in for the Rust module, as `make lua-unit` does;
# t/lua/openapi_spec.lua fails when the file differs from what this writes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-docs/admin-openapi.json}
luajit -e '
package.path = "lua/?.lua;lua/?/init.lua;t/lua/support/?.lua;" .. package.path
dofile("t/lua/support/helper.lua")
io.write(require("gateway.openapi").json())
' >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
