#!/usr/bin/env bash
# nginx-env.sh: what the project needs to know about one nginx binary, as KEY=VALUE
# lines (raw to the end of the line, no quoting). The binary is $NGINX_BIN: a path, or a
# name looked up in PATH (default `nginx`, Debian's). The Makefile, scripts/, bench/
# and the test harness (t/harness.rs) all read these lines, so there is one rule.
#
#   NGINX_BIN      absolute path of the binary
#   NGINX_VERSION  the nginx version `nginx -v` reports (OpenResty's 4th part dropped)
#   LUA            compiled-in | dynamic (lua-nginx-module and NDK as load_module'd .so)
#   LOAD_LUA       the load_module lines the lua module needs before ours (empty when
#                  compiled in: nginx refuses a second copy)
#   SOURCE_DIR     the configured nginx tree our module is built against
#   TARGET_DIR     cargo's target directory for that build
#   MODULE         the module built for this nginx
#   HOOKS_MODULE   the same with the tests' failure-injection hooks (make build-test)
#   DESCRIPTION    one line naming the build, printed with test results
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# Not NGINX: nginx itself reads that variable (sockets handed over by a binary upgrade)
# and, finding it set, neither daemonizes nor opens its listeners normally.
if [ -n "${NGINX+set}" ]; then
  echo "nginx-env: NGINX is set in the environment; nginx reads it as inherited sockets. Unset it and name the binary with NGINX_BIN" >&2
  exit 1
fi
bin=${NGINX_BIN:-nginx}
case "$bin" in
  */*) bin=$(realpath -e "$bin" 2>/dev/null) || { echo "nginx-env: $NGINX_BIN does not exist" >&2; exit 1; } ;;
  *) bin=$(command -v "$bin") || { echo "nginx-env: $bin is not in PATH" >&2; exit 1; } ;;
esac
flags=$("$bin" -V 2>&1) || { echo "nginx-env: $bin -V failed: $flags" >&2; exit 1; }
# "nginx version: nginx/1.30.4" or "nginx version: openresty/1.27.1.2"
version=$(sed -n 's|^nginx version: [a-z]*/\([0-9]*\.[0-9]*\.[0-9]*\).*|\1|p' <<<"$flags")
[ -n "$version" ] || { echo "nginx-env: no version in '$bin -V'" >&2; exit 1; }
arg() { tr ' ' '\n' <<<"$flags" | sed -n "s|^--$1=||p" | head -1; }
prefix=$(arg prefix)

# Compiled in: an --add-module (not --add-dynamic-module) of lua-nginx-module, which
# OpenResty's bundle calls ngx_lua-<v>.
if tr ' ' '\n' <<<"$flags" | grep -Eq -- '^--add-module=.*(lua-nginx-module|ngx_lua)[^/]*/?$'; then
  lua=compiled-in; load_lua=""
else
  lua=dynamic
  mods=$(arg modules-path); mods=${mods:-${prefix:-/usr/local/nginx}/modules}
  for m in ndk_http_module ngx_http_lua_module; do
    [ -f "$mods/$m.so" ] || { echo "nginx-env: $bin has no lua module compiled in and $mods/$m.so is missing" >&2; exit 1; }
  done
  load_lua="load_module $mods/ndk_http_module.so; load_module $mods/ngx_http_lua_module.so;"
fi

# The configured tree: an OpenResty-style build keeps it in <prefix>/src/nginx-<v>
# (scripts/openresty-style.sh); otherwise NGINX_SOURCE_DIR, which defaults (here and in
# .cargo/config.toml) to the copy of Debian's sources scripts/setup.sh configures.
if [ -n "$prefix" ] && [ -f "$prefix/src/nginx-$version/objs/ngx_auto_config.h" ]; then
  source_dir=$prefix/src/nginx-$version
  target_dir=$ROOT/target/$(basename "$prefix")
else
  source_dir=$(realpath -m "${NGINX_SOURCE_DIR:-$ROOT/.build/nginx}")
  if [ "$source_dir" = "$ROOT/.build/nginx" ]; then
    target_dir=$ROOT/target
  else
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target/nginx-$version}
  fi
fi

if [ "$lua" = dynamic ]; then
  how="lua-nginx-module as a dynamic module"
elif [[ "$(ldd "$bin" 2>/dev/null)" == *libluajit* ]]; then   # not `| grep -q`: SIGPIPE
  how="lua-nginx-module compiled in, LuaJIT as a shared library"
else
  how="lua-nginx-module compiled in, LuaJIT linked statically"
fi
echo "NGINX_BIN=$bin"
echo "NGINX_VERSION=$version"
echo "LUA=$lua"
echo "LOAD_LUA=$load_lua"
echo "SOURCE_DIR=$source_dir"
echo "TARGET_DIR=$target_dir"
echo "MODULE=$target_dir/release/libngx_prometheus.so"
echo "HOOKS_MODULE=$target_dir/debug-hooks/libngx_prometheus.so"
echo "DESCRIPTION=nginx $version ($bin), $how"
