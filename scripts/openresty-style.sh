#!/usr/bin/env bash
# Builds an OpenResty-style nginx from ../shared/vendor/openresty-style/: OpenResty's
# LuaJIT2, and nginx with ngx_devel_kit and lua-nginx-module compiled in (the shape Kong
# and APISIX run), plus the lua-resty-core/lrucache pair that lua-nginx-module needs.
# Idempotent: rebuilds only when an input or a flag below changes.
#
#   scripts/openresty-style.sh [dynamic|static]
#
# dynamic (default) links libluajit-5.1.so with an rpath, as OpenResty's packages do, into
# .build/openresty-style/; static links libluajit-5.1.a into the nginx binary, into
# .build/openresty-style-static/. Either way nginx is linked with -Wl,-E, so LuaJIT's
# lua_* symbols are global and our module's mlua part binds to them.
#
# Result (ROOT = .build/openresty-style[-static]):
#   ROOT/sbin/nginx        the nginx binary (NGINX_BIN=... for make run, make integration)
#   ROOT/src/nginx-<v>/    its configured tree (NGINX_SOURCE_DIR for building our module)
#   ROOT/lualib/           resty.core and resty.lrucache, in lua's default path (as in
#                          OpenResty; one entry: auto/configure's eval cannot take a ';')
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$SELF")/.."

LINK=${1:-dynamic}
case "$LINK" in
  dynamic) ROOT=$PWD/.build/openresty-style ;;
  static) ROOT=$PWD/.build/openresty-style-static ;;
  *) echo "usage: $0 [dynamic|static]" >&2; exit 2 ;;
esac
VENDOR=${OPENRESTY_STYLE_SOURCES:-$PWD/../shared/vendor/openresty-style}

NGINX_V=1.30.4
LUA_NGINX_V=0.10.30rc2
RESTY_CORE_V=0.1.33rc2
LRUCACHE_V=0.15
NDK_V=0.3.4
LUAJIT_V=2.1-20240314

# The modules OpenResty's own bundle configures, and stub_status (connection gauges).
NGINX_FLAGS=(--with-compat --with-threads --with-pcre-jit --with-http_ssl_module
  --with-http_v2_module --with-http_realip_module --with-http_stub_status_module
  --with-stream --with-stream_ssl_module --with-stream_ssl_preread_module)

for t in nginx-$NGINX_V lua-nginx-module-$LUA_NGINX_V lua-resty-core-$RESTY_CORE_V \
         lua-resty-lrucache-$LRUCACHE_V ngx_devel_kit-$NDK_V luajit2-$LUAJIT_V; do
  [ -f "$VENDOR/$t.tar.gz" ] || { echo "openresty-style: missing $VENDOR/$t.tar.gz" >&2; exit 1; }
done

# Everything that decides the result: the sources, this script, the compiler.
STAMP=$( (cd "$VENDOR" && sha256sum ./*.tar.gz; sha256sum <"$SELF"; cc --version | sed -n 1p) | sha256sum | cut -c1-16)
if [ -x "$ROOT/sbin/nginx" ] && [ "$(cat "$ROOT/.stamp" 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi
echo "openresty-style: building nginx $NGINX_V + lua-nginx-module $LUA_NGINX_V ($LINK LuaJIT) in $ROOT"
rm -rf "$ROOT"
mkdir -p "$ROOT/src"
for t in "$VENDOR"/*.tar.gz; do tar xzf "$t" -C "$ROOT/src"; done
JOBS=$(nproc)

# LuaJIT: OpenResty's branch, built the way OpenResty builds it (GC64 is the default on x86_64).
(cd "$ROOT/src/luajit2-$LUAJIT_V" &&
  make -j"$JOBS" PREFIX="$ROOT/luajit" >build.log 2>&1 &&
  make install PREFIX="$ROOT/luajit" >>build.log 2>&1) ||
  { echo "openresty-style: LuaJIT build failed, see $ROOT/src/luajit2-$LUAJIT_V/build.log" >&2; exit 1; }

LUAJIT_INC=$ROOT/luajit/include/luajit-2.1
LD_OPT="-Wl,-rpath,$ROOT/luajit/lib"
if [ "$LINK" = static ]; then
  # lua-nginx-module links -lluajit-5.1: a directory with only the archive makes that static.
  mkdir -p "$ROOT/luajit-static"
  ln -sf "$ROOT/luajit/lib/libluajit-5.1.a" "$ROOT/luajit-static/"
  LUAJIT_LIB=$ROOT/luajit-static
  LD_OPT="-Wl,-E"
else
  LUAJIT_LIB=$ROOT/luajit/lib
fi

NGX=$ROOT/src/nginx-$NGINX_V
(cd "$NGX" &&
  # resty.core in lua's default search path, as OpenResty has it. Passed in CFLAGS: a
  # quote in --with-cc-opt would end up unescaped in nginx -V's C string.
  CFLAGS="-DLUA_DEFAULT_PATH='\"$ROOT/lualib/?.lua\"'" \
  LUAJIT_LIB=$LUAJIT_LIB LUAJIT_INC=$LUAJIT_INC ./auto/configure --prefix="$ROOT" \
    "${NGINX_FLAGS[@]}" \
    --add-module="$ROOT/src/ngx_devel_kit-$NDK_V" \
    --add-module="$ROOT/src/lua-nginx-module-$LUA_NGINX_V" \
    --with-cc-opt="-O2 -g" --with-ld-opt="$LD_OPT" >configure.log 2>&1 &&
  make -j"$JOBS" >build.log 2>&1 && make install >>build.log 2>&1) ||
  { echo "openresty-style: nginx build failed, see $NGX/configure.log and $NGX/build.log" >&2; exit 1; }

# resty.core must match lua-nginx-module exactly; lrucache is what resty.core requires.
mkdir -p "$ROOT/lualib"
cp -r "$ROOT/src/lua-resty-core-$RESTY_CORE_V/lib/." "$ROOT/lualib/"
cp -r "$ROOT/src/lua-resty-lrucache-$LRUCACHE_V/lib/." "$ROOT/lualib/"

# -v, not `-V | head -1`: head leaves early, nginx dies of SIGPIPE and pipefail fails
# the build (it did, once in a CI run).
"$ROOT/sbin/nginx" -v 2>&1
echo "$STAMP" >"$ROOT/.stamp"
