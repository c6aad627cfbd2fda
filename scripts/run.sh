#!/usr/bin/env bash
# Runs the gateway in the foreground: proxy :8000, Admin API :8001, demo upstream
# :8081, metrics :9542/metrics. Ctrl-C stops nginx and its workers.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-$ROOT/run}
"$ROOT/scripts/render-conf.sh" nginx/gateway.conf "$PREFIX" "$@"
NGINX_BIN=$("$ROOT/scripts/nginx-env.sh" | sed -n 's/^NGINX_BIN=//p')
"$NGINX_BIN" -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf"
cat <<MSG
ngx-prometheus gateway (prefix $PREFIX, $NGINX_BIN)
  proxy    http://127.0.0.1:8000/        (try /slow too)
  admin    http://127.0.0.1:8001/        (curl localhost:8001/services)
  metrics  http://127.0.0.1:9542/metrics
  logs     $PREFIX/logs/error.log
Ctrl-C stops it.
MSG
# exec: nginx (master, daemon off) receives Ctrl-C itself and takes its workers down.
exec "$NGINX_BIN" -p "$PREFIX" -c "$PREFIX/nginx.conf" -g "daemon off;"
