#!/usr/bin/env bash
# Scrape under load, in the benchmark server (bench/bench.conf, bench/bench.lua): wrk
# through a proxied location (/proxy: proxy_pass to a local upstream, no Lua) for
# LOAD_SECONDS, while a loop scrapes the scrape-size zone at its largest size once a
# second (text, gzip), or not at all; p50/p90/p99/p99.9/max. The zone is the one
# scrape-sizes.sh filled when it ran before in the same server; alone, this step fills it.
#
#   bench/scrape-load.sh                  a step of bench/run.sh, or alone (its own server)
#   BENCH_SMOKE=1 bench/scrape-load.sh    tiny sizes, short runs
#
# Prints its section; fragment raw; numbers in OUT/load.tsv. Overrides: BENCH_LOAD_REPS,
# BENCH_LOAD_SECONDS, BENCH_LOAD_CONNECTIONS, BENCH_SIZES (its largest size).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
# shellcheck source=bench/bench-nginx.sh
. "$ROOT/bench/bench-nginx.sh"
step_init load
command -v wrk >/dev/null || die "wrk is not installed (make setup-test)"
bench_server_up
sizes_fill $((MAX_SIZE / 2))   # nothing to do after scrape-sizes.sh
# The gzip location scrape-sizes.sh measured (in this server), or found here.
GZ_PATH=""; [ "$OWN_SERVER" = 1 ] || GZ_PATH=$(value sizes gz_path)
[ -n "$GZ_PATH" ] || gzip_location

T3=$SECONDS
LOAD_TSV="$WORK/load.tsv"       # variant rep requests p50 p90 p99 p999 max (us) errors non2xx
LOAD_SCRAPES="$WORK/load_scrapes.tsv"   # variant rep code seconds bytes
: >"$LOAD_TSV"; : >"$LOAD_SCRAPES"
curl -sf -o /dev/null "$BASE/proxy" || die "GET /proxy"
scrape_loop() {  # url variant rep stopfile [curl args...]
  local url=$1 v=$2 rep=$3 stop=$4 next now; shift 4
  next=$(date +%s%N)
  while [ ! -e "$stop" ]; do
    curl -s -o /dev/null "$@" -w "$v\t$rep\t%{http_code}\t%{time_total}\t%{size_download}\n" --max-time 60 \
      "$url" >>"$LOAD_SCRAPES" || true
    next=$((next + 1000000000)); now=$(date +%s%N)
    if [ "$next" -gt "$now" ]; then
      sleep "$(awk -v d=$((next - now)) 'BEGIN{printf "%.3f", d / 1e9}')"
    fi
  done
}
LOAD_VARIANTS=(none text gzip)
for rep in $(seq "$LOAD_REPS"); do
  for v in $(rotate "$rep" "${LOAD_VARIANTS[@]}"); do
    stop="$WORK/stop.$v.$rep"; lp=""
    case $v in
      text) scrape_loop "$BASE/metrics_sizes" "$v" "$rep" "$stop" & lp=$! ;;
      gzip) scrape_loop "$BASE$GZ_PATH" "$v" "$rep" "$stop" -H 'Accept-Encoding: gzip' & lp=$! ;;
    esac
    out=$(wrk -t1 -c"$LOAD_CONNS" -d"${LOAD_SECONDS}s" --latency -s "$ROOT/bench/latency.lua" "$BASE/proxy") ||
      die "wrk ($v)"
    touch "$stop"
    [ -z "$lp" ] || wait "$lp"
    line=$(grep '^BENCHLAT' <<<"$out") || die "wrk ($v): no BENCHLAT line: $out"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$v" "$rep" "$(kv requests "$line")" "$(kv p50_us "$line")" \
      "$(kv p90_us "$line")" "$(kv p99_us "$line")" "$(kv p999_us "$line")" "$(kv max_us "$line")" \
      "$(kv errors "$line")" "$(kv non2xx "$line")" >>"$LOAD_TSV"
    [ "$(kv non2xx "$line")" = 0 ] || die "wrk ($v): $(kv non2xx "$line") non-2xx responses"
  done
  log "repetition $rep/$LOAD_REPS of the scrape-under-load test done ($((SECONDS - T3)) s)"
done
awk -F'\t' '$3 != 200 {bad++} END {exit bad > 0}' "$LOAD_SCRAPES" || die "a scrape under load failed: $(awk -F'\t' '$3 != 200' "$LOAD_SCRAPES" | head -3)"


load_stat() {  # variant field -> median min max n
  # shellcheck disable=SC2016  # an awk program for stats(): its $1 and $f are awk's
  stats "$2" -v v="$1" '$1==v {print $f}' "$LOAD_TSV"
}
declare -A LD
for v in "${LOAD_VARIANTS[@]}"; do
  for fld in 3:req 4:p50 5:p90 6:p99 7:p999 8:max; do
    read -r "LD[$v:${fld#*:}]" "LD[$v:${fld#*:}:lo]" "LD[$v:${fld#*:}:hi]" _ < <(load_stat "$v" "${fld%%:*}")
  done
  # shellcheck disable=SC2016  # an awk program for stats(): its $1 and $f are awk's
  read -r "LD[$v:scrape_s]" _ "LD[$v:scrape_hi]" "LD[$v:scrapes]" < <(stats 4 -v v="$v" '$1==v {print $f}' "$LOAD_SCRAPES")
done
msu() { awk -v u="$1" 'BEGIN{printf "%.2f", u / 1000}'; }
dms() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%+.2f ms", (a - b) / 1000}'; }
LOAD_TABLE=$(
  echo "| metrics endpoint ($(human_size "$MAX_SIZE") series) | requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 − no scrape | p99.9 − no scrape | scrapes (median, max s) |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for v in "${LOAD_VARIANTS[@]}"; do
    case $v in none) what="not scraped" ;; text) what="scraped every second, text" ;; gzip) what="scraped every second, gzip" ;; esac
    sc=""; [ "$v" = none ] || sc="${LD[$v:scrapes]} ($(awk -v a="${LD[$v:scrape_s]}" -v b="${LD[$v:scrape_hi]}" 'BEGIN{printf "%.3f, %.3f", a, b}'))"
    d99=""; d999=""; [ "$v" = none ] || { d99=$(dms "${LD[$v:p99]}" "${LD[none:p99]}"); d999=$(dms "${LD[$v:p999]}" "${LD[none:p999]}"); }
    echo "| $what | $(awk -v r="${LD[$v:req]}" -v d="$LOAD_SECONDS" 'BEGIN{printf "%.0f", r / d}') | $(msu "${LD[$v:p50]}") | $(msu "${LD[$v:p90]}") | $(msu "${LD[$v:p99]}") ($(msu "${LD[$v:p99:lo]}")–$(msu "${LD[$v:p99:hi]}")) | $(msu "${LD[$v:p999]}") | $(msu "${LD[$v:max]}") ($(msu "${LD[$v:max:lo]}")–$(msu "${LD[$v:max:hi]}")) | $d99 | $d999 | $sc |"
  done
)
LOAD_NOTES=$(
  echo "- \`wrk -t1 -c$LOAD_CONNS -d${LOAD_SECONDS}s --latency\` (percentiles from bench/latency.lua) on \`/proxy\` (\`proxy_pass\` to an upstream in the same nginx, keepalive, no Lua), 2 workers; meanwhile a loop starts \`curl\` on the $(human_size "$MAX_SIZE")-series endpoint once a second (\`$GZ_PATH\` with \`Accept-Encoding: gzip\` for the gzip row), or nothing. $LOAD_REPS interleaved repetitions (order rotated), medians (min–max for p99 and max). \"scrapes\": how many ran over all repetitions, median and max \`time_total\`."
  echo "- Everything shares 2 cores: the 2 workers, wrk, curl and the render thread; a scrape's CPU time (render, copy to the socket, gzip) is taken from the proxied requests whichever thread spends it."
)
echo "### Scrape under load: proxied requests while $(human_size "$MAX_SIZE") series are scraped every second"
echo
echo "$LOAD_TABLE"
echo
echo "$LOAD_NOTES"
{
  echo "# load variant rep requests p50_us p90_us p99_us p99.9_us max_us socket_errors non2xx"
  cat "$LOAD_TSV"
  echo "# load_scrapes variant rep http_code time_total bytes"
  cat "$LOAD_SCRAPES"
} | fragment raw

# Numbers: medians in µs (latency) and s (scrapes); p99 added by a scrape in ms.
for k in "${!LD[@]}"; do put_value "${k//:/_}" "${LD[$k]}"; done
put_value p99_added_text_ms "$(awk -v a="${LD[text:p99]}" -v b="${LD[none:p99]}" 'BEGIN{printf "%.2f", (a - b) / 1000}')"
put_value p99_added_gzip_ms "$(awk -v a="${LD[gzip:p99]}" -v b="${LD[none:p99]}" 'BEGIN{printf "%.2f", (a - b) / 1000}')"
log "done ($SECONDS s)"
