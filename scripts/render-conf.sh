#!/usr/bin/env bash
# render-conf.sh TEMPLATE PREFIX [KEY=VALUE...]: writes PREFIX/nginx.conf (and, unless
# SEED= names the first start's entities, the demo's PREFIX/seed.json) from templates
# in conf/, with the module built for $NGINX_BIN (scripts/nginx-env.sh) copied to
# PREFIX/lib/ngx_prometheus.so (the name Lua's `require "ngx_prometheus"` looks for).
# Used by `make run`, bench/ and the tests (t/harness.rs render_template).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATE=$1; PREFIX=$2; shift 2
# The nginx in use ($NGINX_BIN, default Debian's): its lua load lines and our module.
ENV_LINES=$("$ROOT/scripts/nginx-env.sh")
declare -A E=()
while IFS='=' read -r k v; do E[$k]=$v; done <<<"$ENV_LINES"
declare -A V=(
  [MODULE]="$PREFIX/lib/ngx_prometheus.so" [ROOT]="$ROOT" [PREFIX]="$PREFIX" [LIBDIR]="$PREFIX/lib"
  [LOAD_LUA]="${E[LOAD_LUA]}"
  # Debian's Lua 5.1 module directories (lua-yaml), for a LuaJIT that does not search them.
  [LUA_SYSTEM_PATH]="/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
  [LUA_SYSTEM_CPATH]="/usr/lib/$(uname -m)-linux-gnu/lua/5.1/?.so"
  [PROXY_PORT]=8000 [ADMIN_PORT]=8001 [UPSTREAM_PORT]=8081 [METRICS_PORT]=9542 [WORKERS]=2 [USER]=""
  [DECLARATIVE]="" [SEED]="$PREFIX/seed.json"
  [METRICS_HTTP]="" [METRICS_SERVER]="" [METRICS_SSL]=""
  [DNS_RESOLVER]="" [DNS_HOSTSFILE]="" [DNS_STALE_TTL]="" [DNS_TIMEOUT]=""
)
seed_given=""
for kv in "$@"; do
  V[${kv%%=*}]=${kv#*=}
  if [ "${kv%%=*}" = SEED ]; then seed_given=1; fi
done
# Started as root, nginx runs its workers as nobody: keep that, and say so.
if [ -z "${V[USER]}" ] && [ "$(id -u)" = 0 ]; then V[USER]="user nobody nogroup;"; fi
mkdir -p "$PREFIX"/{logs,lib,tmp,state}
chmod 755 "$PREFIX" "$PREFIX"/{logs,lib,tmp,state}
# The gateway's workers write its state (Admin API changes) under state/.
if [ "$(id -u)" = 0 ]; then chown nobody:nogroup "$PREFIX/state"; fi
[ -f "${E[MODULE]}" ] || { echo "render-conf: ${E[MODULE]} is missing: run make build" >&2; exit 1; }
install -m 755 "${E[MODULE]}" "$PREFIX/lib/ngx_prometheus.so"
sed_args=()
# Values are literal text: sed's `\`, `&` and the `|` delimiter escaped.
for k in "${!V[@]}"; do
  v=${V[$k]//\\/\\\\}; v=${v//&/\\&}; v=${v//|/\\|}
  sed_args+=(-e "s|@$k@|$v|g")
done
sed "${sed_args[@]}" "$ROOT/$TEMPLATE" >"$PREFIX/nginx.conf"
# The first start's entities (a demo service, routes, and the prometheus plugin), unless
# the caller names its own (or none: SEED=).
if [ -z "$seed_given" ]; then
  sed "${sed_args[@]}" "$ROOT/conf/seed.json" >"$PREFIX/seed.json"
  chmod 644 "$PREFIX/seed.json"
fi
