#!/usr/bin/env bash
# Runs the gateway in the foreground: proxy :8000, Admin API :8001, demo upstream
# :8081, metrics :9542/metrics. Ctrl-C stops nginx and its workers.
#
# run.sh [KEY=VALUE...] (each also read from the environment; an argument wins):
#   PREFIX=dir               where the configuration, logs and state live (default run/)
#   PROXY_PORT ADMIN_PORT UPSTREAM_PORT METRICS_PORT WORKERS
#   DECLARATIVE=file         a declarative file (database-less mode)
#   NGINX_BIN=path           the nginx to run (default Debian's; scripts/nginx-env.sh)
#   AUTH_FILE=file           the metrics port asks for these credentials (prometheus_auth_file)
#   CONST_LABELS='a=b "h=${hostname}"'  labels on every series (prometheus_const_labels's
#                            arguments, nginx syntax)
#   NODE_ID_FILE=file        prometheus_node_id_file (for $node_id in CONST_LABELS)
#   PUSH_URL=url             also push to a Pushgateway (prometheus_push url)
#   PUSH_ARGS="interval=15s" the rest of the prometheus_push line
#   PUSH_BASIC_AUTH="user file"  prometheus_push_basic_auth
#   PUSH_CA=file             prometheus_push_ca
#   TLS_CERT=file TLS_KEY=file   the metrics port speaks https
#   HTTP_DIRECTIVES='...;'   more directives for http {} (prometheus_push_header,
#                            prometheus_process_metrics, ...), nginx syntax
#   METRICS_DIRECTIVES='...;'  more for the metrics port's server {} (prometheus_allow,
#                            prometheus_trusted_proxies, ...)
#   DNS_RESOLVER="addr[:port] ..."  where host names are resolved (default: /etc/resolv.conf)
#   DNS_HOSTSFILE=file       read before DNS (default /etc/hosts)
#   DNS_STALE_TTL=seconds    how long a name's last answer outlives its TTL when the
#                            resolver fails (default 3600)
#   DNS_TIMEOUT=ms           per DNS query try (default 2000, or resolv.conf's timeout)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KNOWN="PREFIX PROXY_PORT ADMIN_PORT UPSTREAM_PORT METRICS_PORT WORKERS DECLARATIVE NGINX_BIN
AUTH_FILE CONST_LABELS NODE_ID_FILE PUSH_URL PUSH_ARGS PUSH_BASIC_AUTH PUSH_CA TLS_CERT TLS_KEY
HTTP_DIRECTIVES METRICS_DIRECTIVES DNS_RESOLVER DNS_HOSTSFILE DNS_STALE_TTL DNS_TIMEOUT"
declare -A S=()
for k in $KNOWN; do
  if [ -n "${!k:-}" ]; then S[$k]=${!k}; fi
done
for kv in "$@"; do
  k=${kv%%=*}
  if [ "$k" = "$kv" ] || ! [[ " ${KNOWN//$'\n'/ } " == *" $k "* ]]; then
    echo "run.sh: unknown setting \"$kv\"; known: ${KNOWN//$'\n'/ }" >&2
    exit 2
  fi
  S[$k]=${kv#*=}
done
get() { printf '%s' "${S[$1]:-${2-}}"; }
# Files given relative to where run.sh is started from, as a shell user means them.
abs() { [ -z "$1" ] || realpath -m -- "$1"; }
PREFIX=$(abs "$(get PREFIX "$ROOT/run")")
PROXY_PORT=$(get PROXY_PORT 8000); ADMIN_PORT=$(get ADMIN_PORT 8001)
UPSTREAM_PORT=$(get UPSTREAM_PORT 8081); METRICS_PORT=$(get METRICS_PORT 9542)

# The metrics knobs become directives in the generated configuration.
http_lines="" server_lines="" ssl="" scheme=http
if [ -n "$(get NODE_ID_FILE)" ]; then
  http_lines+="prometheus_node_id_file $(abs "$(get NODE_ID_FILE)");"$'\n'
fi
if [ -n "$(get CONST_LABELS)" ]; then
  # The directive's arguments as nginx reads them (quote `"hostname=${hostname}"`).
  http_lines+="prometheus_const_labels $(get CONST_LABELS);"$'\n'
fi
if [ -n "$(get PUSH_URL)" ]; then
  http_lines+="prometheus_push $(get PUSH_URL) $(get PUSH_ARGS);"$'\n'
  if [ -n "$(get PUSH_BASIC_AUTH)" ]; then
    read -r pu pf <<<"$(get PUSH_BASIC_AUTH)"
    http_lines+="prometheus_push_basic_auth $pu $(abs "$pf");"$'\n'
  fi
  if [ -n "$(get PUSH_CA)" ]; then http_lines+="prometheus_push_ca $(abs "$(get PUSH_CA)");"$'\n'; fi
elif [ -n "$(get PUSH_BASIC_AUTH)$(get PUSH_CA)$(get PUSH_ARGS)" ]; then
  echo "run.sh: PUSH_ARGS, PUSH_BASIC_AUTH and PUSH_CA need PUSH_URL" >&2; exit 2
fi
if [ -n "$(get AUTH_FILE)" ]; then
  server_lines+="prometheus_auth_file $(abs "$(get AUTH_FILE)");"$'\n'
fi
if [ -n "$(get TLS_CERT)$(get TLS_KEY)" ]; then
  if [ -z "$(get TLS_CERT)" ] || [ -z "$(get TLS_KEY)" ]; then
    echo "run.sh: TLS_CERT and TLS_KEY go together" >&2; exit 2
  fi
  ssl=" ssl" scheme=https
  server_lines+="ssl_certificate $(abs "$(get TLS_CERT)");"$'\n'
  server_lines+="ssl_certificate_key $(abs "$(get TLS_KEY)");"$'\n'
fi
http_lines+="$(get HTTP_DIRECTIVES)"$'\n'
server_lines+="$(get METRICS_DIRECTIVES)"$'\n'

args=(PROXY_PORT="$PROXY_PORT" ADMIN_PORT="$ADMIN_PORT" UPSTREAM_PORT="$UPSTREAM_PORT"
      METRICS_PORT="$METRICS_PORT" METRICS_HTTP="${http_lines//$'\n'/ }"
      METRICS_SERVER="${server_lines//$'\n'/ }" METRICS_SSL="$ssl")
for k in WORKERS DNS_RESOLVER DNS_STALE_TTL DNS_TIMEOUT; do
  if [ -n "$(get $k)" ]; then args+=("$k=$(get $k)"); fi
done
for k in DECLARATIVE DNS_HOSTSFILE; do
  if [ -n "$(get $k)" ]; then args+=("$k=$(abs "$(get $k)")"); fi
done
# The nginx in use, for render-conf.sh and nginx-env.sh alike.
if [ -n "$(get NGINX_BIN)" ]; then export NGINX_BIN; NGINX_BIN=$(get NGINX_BIN); fi
"$ROOT/scripts/render-conf.sh" conf/gateway.conf "$PREFIX" "${args[@]}"
NGINX_BIN=$("$ROOT/scripts/nginx-env.sh" | sed -n 's/^NGINX_BIN=//p')
"$NGINX_BIN" -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf"
cat <<MSG
ngx-prometheus gateway (prefix $PREFIX, $NGINX_BIN)
  proxy    http://127.0.0.1:$PROXY_PORT/        (try /slow too)
  admin    http://127.0.0.1:$ADMIN_PORT/        (curl localhost:$ADMIN_PORT/services)
  metrics  $scheme://127.0.0.1:$METRICS_PORT/metrics$([ -n "$(get AUTH_FILE)" ] && echo "  (credentials: $(abs "$(get AUTH_FILE)"))")
           (also [::1]:$METRICS_PORT; ?format=html for the status page)
  upstream http://127.0.0.1:$UPSTREAM_PORT/        (the demo upstream the seeded service points at)
  logs     $PREFIX/logs/error.log
Ctrl-C stops it.
MSG
# exec: nginx (master, daemon off) receives Ctrl-C itself and takes its workers down.
exec "$NGINX_BIN" -p "$PREFIX" -c "$PREFIX/nginx.conf" -g "daemon off;"
