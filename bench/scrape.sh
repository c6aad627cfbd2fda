#!/usr/bin/env bash
# Scrape, in the benchmark server (bench/bench.conf, bench/bench.lua): SERIES histogram
# routes + SERIES counters, the module's prometheus_metrics vs a Lua
# get_keys/sort/concat renderer over a lua_shared_dict (the stand-in); curl time_total
# and bytes, the two alternating.
#
#   bench/scrape.sh                  a step of bench/run.sh, or alone (its own server)
#   BENCH_SMOKE=1 bench/scrape.sh    tiny sizes
#
# Prints its table; fragments: notes, commentary, raw; numbers in OUT/scrape.tsv.
# Overrides: BENCH_SERIES, BENCH_SCRAPES (bench/bench-nginx.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
# shellcheck source=bench/bench-nginx.sh
. "$ROOT/bench/bench-nginx.sh"
step_init scrape
bench_server_up

T1=$SECONDS
CHUNK=2000
SETUP_OURS=0; SETUP_DICT=0; SETUP=""
for ((from = 1; from <= SERIES; from += CHUNK)); do
  to=$((from + CHUNK - 1)); [ "$to" -le "$SERIES" ] || to=$SERIES
  SETUP=$(curl -sf --max-time 900 "$BASE/setup_scrape?from=$from&to=$to") || die "scrape setup $from..$to"
  SETUP_OURS=$(awk -v a="$SETUP_OURS" -v b="$(kv ours_s "$SETUP")" 'BEGIN{print a+b}')
  SETUP_DICT=$(awk -v a="$SETUP_DICT" -v b="$(kv dict_s "$SETUP")" 'BEGIN{print a+b}')
done
[ "$(kv dict_failed "$SETUP")" = 0 ] || die "the stand-in dict is full: $SETUP"
[ "$(kv errors_zone_full "$SETUP")" = 0 ] || die "the scrape zone is full: $SETUP"
ZONE_USED=$(kv zone_used "$SETUP"); ZONE_SERIES=$(kv series "$SETUP"); DICT_USED=$(kv dict_used "$SETUP")
log "scrape setup: $SERIES routes in $((SECONDS - T1)) s (zone: $ZONE_SERIES series, $((ZONE_USED / 1048576)) MiB used)"

# One untimed fetch of each, checked.
curl -sf -o "$WORK/ours.txt" "$BASE/metrics" || die "GET /metrics"
curl -sf -o "$WORK/knyar.txt" "$BASE/knyar_metrics" || die "GET /knyar_metrics"
for f in ours knyar; do
  grep -q "^bench_route_latency_seconds_count{route=\"/r/$SERIES\"} 3\$" "$WORK/$f.txt" ||
    die "$f exposition lacks the last route's histogram"
  grep -q "^bench_route_requests_total{route=\"/r/$SERIES\"} " "$WORK/$f.txt" ||
    die "$f exposition lacks the last route's counter"
done
OURS_LINES=$(grep -vc '^#' "$WORK/ours.txt"); KNYAR_LINES=$(grep -vc '^#' "$WORK/knyar.txt")

SCRAPES_TSV="$WORK/scrapes.tsv"   # side rep seconds bytes
: >"$SCRAPES_TSV"
scrape() {  # side url rep
  local r
  r=$(curl -s -o /dev/null -w '%{http_code} %{time_total} %{size_download}' --max-time 300 "$2") ||
    die "scrape $1"
  [ "${r%% *}" = 200 ] || die "scrape $1: HTTP ${r%% *}"
  printf '%s\t%s\t%s\n' "$1" "$3" "$(cut -d' ' -f2- <<<"$r" | tr ' ' '\t')" >>"$SCRAPES_TSV"
}
for rep in $(seq "$SCRAPES"); do
  if ((rep % 2)); then
    scrape ours "$BASE/metrics" "$rep"; scrape standin "$BASE/knyar_metrics" "$rep"
  else
    scrape standin "$BASE/knyar_metrics" "$rep"; scrape ours "$BASE/metrics" "$rep"
  fi
done
log "scrapes done ($((SECONDS - T1)) s)"

# --- report ---------------------------------------------------------------------------
scrape_stats() {  # side field(3=time 4=bytes)
  # shellcheck disable=SC2016  # an awk program for stats(): its $1 and $f are awk's
  stats "$2" -v s="$1" '$1==s {print $f}' "$SCRAPES_TSV"
}
read -r S_OURS S_OURS_LO S_OURS_HI S_N < <(scrape_stats ours 3)
read -r S_KNY S_KNY_LO S_KNY_HI _ < <(scrape_stats standin 3)
read -r B_OURS _ _ _ < <(scrape_stats ours 4)
read -r B_KNY _ _ _ < <(scrape_stats standin 4)
secs() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN{printf "%.3f s (%.3f–%.3f)", m, lo, hi}'; }
mb() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.1f MB, %.0f MB/s", b / 1e6, (t > 0 ? b / 1e6 / t : 0)}'; }
echo "| Measurement | ngx-prometheus | Baseline (stand-in, same run) | Baseline ÷ ours |"
echo "|---|---|---|---|"
echo "| Scrape, $SERIES histogram routes + $SERIES counters | $(secs "$S_OURS" "$S_OURS_LO" "$S_OURS_HI"); $(mb "$B_OURS" "$S_OURS") | $(secs "$S_KNY" "$S_KNY_LO" "$S_KNY_HI"); $(mb "$B_KNY" "$S_KNY") (\`get_keys\` + sort + concat in Lua) | $(ratio "$S_KNY" "$S_OURS") |"
echo "- Scrape: median (min–max) of $S_N scrapes each, alternating, curl \`time_total\`; exposition lines without comments: ours $OURS_LINES, stand-in $KNYAR_LINES. Zone: $ZONE_SERIES series in $((ZONE_USED / 1048576)) MiB. Setup (series creation, not part of the scrape): ours $(awk -v s="$SETUP_OURS" 'BEGIN{printf "%.2f", s}') s, stand-in dict $(awk -v s="$SETUP_DICT" 'BEGIN{printf "%.2f", s}') s." | fragment notes
awk -v so="$S_OURS" -v sk="$S_KNY" -v bo="$B_OURS" -v bk="$B_KNY" -v series="$SERIES" \
  -v zone="$ZONE_USED" -v dused="$DICT_USED" '
  function vs(a, b) {  # how a compares with b, in words
    if (a <= 0 || b <= 0) return "n/a"
    if (a <= b) return sprintf("%.1f× less", b / a)
    return sprintf("%.1f× more", a / b)
  }
  BEGIN {
  printf "- **Scrape** of %d histogram routes + %d counters: %.3f s for %.1f MB from the module against %.3f s for %.1f MB from the Lua stand-in, i.e. the module takes %s time. ANCHORS.md measured the real library at 0.74–1.8 s for 10,000 routes (21-bucket histograms, 14.6 MB); the stand-in skips that library'"'"'s bucket-label fix-ups, HELP/TYPE lines and per-worker sync, so it flatters the baseline rather than ours.\n", series, series, so, bo / 1e6, sk, bk / 1e6, vs(so, sk)
  printf "- **Memory**: a histogram series with the default range (1 µs..60 s, 2 significant digits) keeps its 2,560 HDR count words in chunks of 64 made as values arrive; the %d routes took %.0f MiB of zone", series, zone / 1048576
  if (dused > 0) printf " where the stand-in dict holds the same values in about %.0f MiB", dused / 1048576
  printf ". Every scrape reads the marked runs of the chunks in use.\n"
}' | fragment commentary
{
  echo "# scrape side rep seconds bytes"
  cat "$SCRAPES_TSV"
} | fragment raw

put_value ours_s "$S_OURS"; put_value standin_s "$S_KNY"; put_value ours_bytes "$B_OURS"; put_value standin_bytes "$B_KNY"
put_value zone_used "$ZONE_USED"; put_value dict_used "$DICT_USED"; put_value series "$SERIES"
log "done ($SECONDS s)"
