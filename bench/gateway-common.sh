# shellcheck shell=bash
# Sourced by the gateway benchmarks (e2e.sh, routing.sh): ports, the gateway of
# conf/gateway.conf started in a prefix, wrk's summary (and common.sh: medians, worker
# CPU from /proc).

# The nginx to measure is common.sh's NGINX_BIN; scripts/render-conf.sh copies the
# module built for it.
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"   # log, die, NGINX_BIN, free_port, median, rotate, workers_cpu

# start_gateway PREFIX PROXY ADMIN METRICS UPSTREAM: conf/gateway.conf, access log off
# (no per-request file write in the way of what is measured).
start_gateway() {
  "$ROOT/scripts/render-conf.sh" conf/gateway.conf "$1" PROXY_PORT="$2" ADMIN_PORT="$3" \
    METRICS_PORT="$4" UPSTREAM_PORT="$5"
  sed -i "s|access_log $1/logs/access.log;|access_log off;|" "$1/nginx.conf"
  "$NGINX_BIN" -p "$1" -c "$1/nginx.conf"
}

# wrk_summary CASE TICKS WRK_OUTPUT -> "case rps p50_ms p99_ms cpu_us_per_request"
wrk_summary() {
  awk -v c="$1" -v ticks="$2" -v hz="$(getconf CLK_TCK)" '
    /Requests\/sec/ { rps = $2 }
    /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    /requests in/ { n = $1 }
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    END { printf "%s %s %s %s %s\n", c, rps, ms(p50), ms(p99), (n > 0 ? ticks / hz / n * 1e6 : 0) }' <<<"$3"
}

