#!/usr/bin/env bash
# Routing and publishing cost against the size of the configuration: the gateway with
# its seeded demo configuration ("few": 3 routes) vs the same plus ROUTES routes of 64
# paths each ("many"), swapped by `nginx -s reload` in interleaved repetitions. The
# request (`GET /nomatch/x`) has to be routed past every route's paths to the seeded
# `/` route. Measures requests/s, p99 and worker CPU per request, the Admin write
# latency (PATCH of a route), and the proxy's p99 while Admin writes go on.
# Prints a markdown section; its numbers go to OUT/routing.tsv (bench/common.sh
# step_init). BENCH_SMOKE=1: small and short, only checks it runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
case "${BENCH_SMOKE:-0}" in 0 | "" | no | false) SMOKE=0 ;; *) SMOKE=1 ;; esac
REPS=${BENCH_ROUTING_REPS:-$([ "$SMOKE" = 1 ] && echo 1 || echo 3)}
DURATION=${BENCH_ROUTING_SECONDS:-$([ "$SMOKE" = 1 ] && echo 1 || echo 5)}
ROUTES=${BENCH_ROUTES:-$([ "$SMOKE" = 1 ] && echo 50 || echo 2000)}
WRITES=${BENCH_ROUTING_WRITES:-$([ "$SMOKE" = 1 ] && echo 3 || echo 20)}
CONNS=16

# shellcheck source=bench/gateway-common.sh
. "$ROOT/bench/gateway-common.sh"
step_init routing

GW=$(mktemp -d /tmp/ngxprom-routing.XXXXXX)
chmod 755 "$GW"
PROXY=$(free_port); ADMIN=$(free_port); METRICS=$(free_port); UPSTREAM=$(free_port)
RESULTS=$(mktemp)
cleanup() {
  if [ -f "$GW/nginx.pid" ]; then kill -QUIT "$(cat "$GW/nginx.pid")" 2>/dev/null || true; fi
  sleep 0.5
  rm -rf "$GW" "$RESULTS"
}
trap cleanup EXIT

start_gateway "$GW" "$PROXY" "$ADMIN" "$METRICS" "$UPSTREAM"
sleep 1

STATE="$GW/state/gateway.json"
cp "$STATE" "$GW/few.json"
# The seeded state plus ROUTES routes of 64 paths each, on the demo service.
python3 - "$GW/few.json" "$GW/many.json" "$ROUTES" <<'PY'
import json, sys, uuid
doc = json.load(open(sys.argv[1]))
service = doc["services"][0]["id"]
for i in range(int(sys.argv[3])):
    doc["routes"].append({
        "id": str(uuid.uuid4()), "name": f"r{i}", "created_at": 1700000000, "updated_at": 1700000000,
        "paths": [f"/svc{i}/p{j}" for j in range(64)], "service": {"id": service},
        "strip_path": True, "preserve_host": False, "protocols": ["http", "https"],
    })
json.dump(doc, open(sys.argv[2], "w"))
PY
chmod 644 "$GW/few.json" "$GW/many.json"

use() {  # few|many: that state, loaded by a reload
  cp "$GW/$1.json" "$STATE"
  chown --reference="$GW/state" "$STATE" 2>/dev/null || true
  "$NGINX_BIN" -p "$GW" -c "$GW/nginx.conf" -s reload 2>/dev/null
  sleep 2
  curl -fsS -o /dev/null "http://127.0.0.1:$PROXY/nomatch/x" || { log "no answer with $1"; exit 1; }
}

wrk_run() {  # case -> "case rps p50_ms p99_ms cpu_us_per_request"
  local before after out
  before=$(workers_cpu "$GW")
  out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$PROXY/nomatch/x")
  after=$(workers_cpu "$GW")
  wrk_summary "$1" $((after - before)) "$out"
}

# Admin writes: PATCH the seeded `slow` route's tags, one after another.
writes() {  # -> median ms per write
  for i in $(seq "$WRITES"); do
    curl -fsS -o /dev/null -w '%{time_total}\n' -X PATCH "http://127.0.0.1:$ADMIN/routes/slow" \
      -H 'Content-Type: application/json' -d "{\"tags\": [\"w$i\"]}"
  done | awk '{print $1 * 1000}' | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}

for rep in $(seq "$REPS"); do
  for state in few many; do
    use "$state"
    wrk_run "$state" >>"$RESULTS"
    echo "write_$state $(writes)" >>"$RESULTS"
    # The proxy while Admin writes go on.
    (writes >/dev/null) &
    WRITER=$!
    wrk_run "during_writes_$state" >>"$RESULTS"
    wait "$WRITER"
  done
  log "repetition $rep/$REPS done"
done

col() { awk -v c="$1" -v k="$2" '$1 == c {print $k}' "$RESULTS" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f" : "n/a"), a / b }'; }
for c in few many during_writes_few during_writes_many; do
  put_value "$c.rps" "$(col "$c" 2)"; put_value "$c.p99_ms" "$(col "$c" 4)"; put_value "$c.cpu_us" "$(col "$c" 5)"
done
put_value write_few_ms "$(col write_few 2)"; put_value write_many_ms "$(col write_many 2)"
BYTES_FEW=$(stat -c %s "$GW/few.json"); BYTES_MANY=$(stat -c %s "$GW/many.json")

echo "### Routing and publishing against the size of the configuration"
echo
echo "| | few (3 routes, $BYTES_FEW B) | many ($((ROUTES + 3)) routes, $((ROUTES * 64 + 2)) paths, $BYTES_MANY B) | many / few |"
echo "|---|---|---|---|"
printf '| proxy requests/s | %.0f | %.0f | %s |\n' "$(col few 2)" "$(col many 2)" "$(ratio "$(col many 2)" "$(col few 2)")"
printf '| proxy p99 ms | %.2f | %.2f | %s |\n' "$(col few 4)" "$(col many 4)" "$(ratio "$(col many 4)" "$(col few 4)")"
printf '| worker CPU µs/request | %.1f | %.1f | %s |\n' "$(col few 5)" "$(col many 5)" "$(ratio "$(col many 5)" "$(col few 5)")"
printf '| Admin write (PATCH) ms | %.1f | %.1f | %s |\n' "$(col write_few 2)" "$(col write_many 2)" "$(ratio "$(col write_many 2)" "$(col write_few 2)")"
printf '| proxy p99 ms during writes | %.2f | %.2f | %s |\n' "$(col during_writes_few 4)" "$(col during_writes_many 4)" "$(ratio "$(col during_writes_many 4)" "$(col during_writes_few 4)")"
echo
echo "- \`GET /nomatch/x\` with \`wrk -t1 -c$CONNS -d${DURATION}s --latency\`: routed past every route's paths to"
echo "  the seeded \`/\` route; $REPS interleaved repetitions (the state swapped by \`nginx -s reload\`), medians."
echo "- Routing looks up the request path's own prefixes (one per path length in use) in an index built once"
echo "  per configuration: its cost does not follow the number of routes or paths."
echo "- A write re-encodes the whole configuration and every worker decodes it once: its cost follows the"
echo "  size of the configuration (bounded: half of \`lua_shared_dict gateway_config\`), not what one call adds"
echo "  (every list in a call is bounded, README \"Limits\"). $WRITES PATCHes per measurement."
