#!/usr/bin/env bash
# Memory, in the benchmark server (bench/bench.conf, bench/bench.lua): zone bytes per
# counter / gauge / histogram series (precision 1, 2, 3) from
# nginx_metric_zone_bytes{state="used"} deltas, beside the worker RSS that
# scrape-sizes.sh took before and after filling its zone (when it ran before this step)
# and what the server's start made resident.
#
#   bench/memory.sh                  a step of bench/run.sh, or alone (its own server)
#   BENCH_SMOKE=1 bench/memory.sh    fewer series
#
# Prints its section; fragment raw; numbers in OUT/memory.tsv (bytes per series by kind:
# KIND, KIND_label, KIND_lua).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
# shellcheck source=bench/bench-nginx.sh
. "$ROOT/bench/bench-nginx.sh"
step_init memory
bench_server_up

# Both workers register the mem zone's families first (a worker registers a zone's
# families on its first use of it), so the deltas below hold series only.
declare -A SEEN=()
# shellcheck disable=SC2178,SC2128  # a: a string here (an array in common.sh's rotate)
for _ in $(seq 60); do
  a=$(curl -sf "$BASE/setup_mem?kind=attach") || die "GET /setup_mem?kind=attach"
  SEEN[$(kv pid "$a")]=1
  [ "${#SEEN[@]}" -ge 2 ] && break
done
mem_used() {  # nginx_metric_zone_bytes{zone="mem",state="used"}
  curl -sf "$BASE/metrics_mem" | awk '/^nginx_metric_zone_bytes\{zone="mem",state="used"\}/ {print $2}'
}
MEM_TSV="$WORK/mem.tsv"   # kind n label_bytes used_before used_after (HTTP metric) lua_delta
: >"$MEM_TSV"
for kn in $MEM_N; do
  kind=${kn%%=*}; n=${kn#*=}
  u0=$(mem_used); [ -n "$u0" ] || die "no used-bytes metric for the mem zone"
  r=$(curl -sf --max-time 300 "$BASE/setup_mem?kind=$kind&from=1&to=$n") || die "setup_mem $kind"
  [ "$(kv errors_zone_full "$r")" = 0 ] || die "the mem zone is full: $r"
  u1=$(mem_used)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$n" "$(kv label_bytes "$r")" "$u0" "$u1" \
    "$(( $(kv used_after "$r") - $(kv used_before "$r") ))" >>"$MEM_TSV"
done
log "memory probes done"

declare -A MB_
while IFS=$'\t' read -r kind n lb u0 u1 ld; do
  MB_[$kind]=$(awk -v a="$u0" -v b="$u1" -v n="$n" 'BEGIN{printf "%.0f", (b - a) / n}')
  MB_[$kind:label]=$(awk -v l="$lb" -v n="$n" 'BEGIN{printf "%.0f", l / n}')
  MB_[$kind:lua]=$(awk -v d="$ld" -v n="$n" 'BEGIN{printf "%.0f", d / n}')
done <"$MEM_TSV"
MEM_KEY=$(( (4 + ${MB_[counter:label]:-0} + 7) / 8 * 8 ))   # key bytes of a 1-label series
MEM_FIXED=$(( ${MB_[counter]:-0} - MEM_KEY ))                # the rest of a counter series
MEM_TABLE=$(
  echo "| series type | HDR slots (README) | slot width (README) | series made | zone bytes per series | label bytes per series | bytes besides the label value | zone for 10k series |"
  echo "|---|---|---|---|---|---|---|---|"
  while IFS=$'\t' read -r kind n lb u0 u1 ld; do
    per=${MB_[$kind]}; lab=${MB_[$kind:label]}
    case $kind in
      counter) what="counter"; slots="–"; width="–" ;;
      gauge) what="gauge"; slots="–"; width="–" ;;
      p1) what="histogram, precision 1 (1 µs–60 s), one value"; slots="368"; width="6.3 %" ;;
      p1w) what="histogram, precision 1, 200 values over 1 ms–1 s"; slots="368"; width="6.3 %" ;;
      p2) what="histogram, precision 2 (default), one value"; slots="2,560"; width="0.78 %" ;;
      p2n) what="histogram, precision 2, 200 values over 10–100 ms"; slots="2,560"; width="0.78 %" ;;
      p2w) what="histogram, precision 2, 200 values over 1 ms–1 s"; slots="2,560"; width="0.78 %" ;;
      p3) what="histogram, precision 3, one value"; slots="17,408"; width="0.098 %" ;;
      p3w) what="histogram, precision 3, 200 values over 1 ms–1 s"; slots="17,408"; width="0.098 %" ;;
    esac
    echo "| $what | $slots | $width | $n | $per B | $lab | $((per - lab)) B | $(awk -v p="$per" 'BEGIN{ v = p * 10000 / 1048576; if (v < 10) printf "%.1f MiB", v; else printf "%.0f MiB", v }') |"
  done <"$MEM_TSV"
)
# What scrape-sizes.sh measured before this step in the same server (bench/run.sh's):
# the worker RSS around its zone's filling, the seconds its creation took.
SIZES_RAN=0
[ "$OWN_SERVER" = 1 ] || [ ! -f "$OUT/sizes.rss.md" ] || SIZES_RAN=1
SIZE_SETUP_S=""; [ "$SIZES_RAN" = 0 ] || SIZE_SETUP_S=$(value sizes setup_s)
MEM_NOTES=$(
  echo "- Zone bytes: \`nginx_metric_zone_bytes{zone=\"mem\",state=\"used\"}\` from \`/metrics_mem\` before and after making N series of one family (label \`route\` = \`/route/NNNNNN\`, 13 bytes), after both workers had registered the zone's families; divided by N. The zone's own count, read in the worker that made them, agrees: $(for k in counter gauge p1 p1w p2 p2n p2w p3 p3w; do printf '%s%s %s B' "$([ $k = counter ] || echo ', ')" "$k" "${MB_[$k:lua]}"; done). Slot counts and widths (the relative error of a bucket bound) are the README's, for the default range 1 µs–60 s."
  echo "- A series record is 4 words of header (kind and size, hash chain, hash, owner), its key (4 length bytes + the value, per label, rounded up to 8 bytes: $MEM_KEY B here), then its body: a type tag and the values (counter: an integer and a float word; gauge: one word; histogram: 3 words of parameters, one word per chunk of HDR slots (8 slots at precision 1, 64 at 2, 512 at 3: its offset and marks of the slots that counted), the overflow count and the sum, and, for each chunk its values fell in, the chunk's count words, kept at the far end of the zone) and any other per-series word of this build: a counter's fixed part measures $MEM_FIXED B."
  if [ "$SIZES_RAN" = 1 ]; then cat "$OUT/sizes.rss_notes.md"; else echo "- Worker RSS: measured by bench/scrape-sizes.sh, which did not run before this step in its server."; fi
  ZONES_MB=$((SCRAPE_ZONE_MB + SIZES_ZONE_MB + MEM_ZONE_MB + 8))
  if [ $((SHMEM_START_MB * 100)) -ge $((ZONES_MB * 80)) ]; then
    echo "- At start, nginx made all zones resident at once: system \`Shmem\` grew by $SHMEM_START_MB MiB for $ZONES_MB MiB of prometheus zones (+ 98 MiB of lua_shared_dict), and \`nginx\` took $START_S s to start: every page of the zones was written at start (zeroed), though the pages of a fresh shared mapping are already zero."
  else
    echo "- At start, system \`Shmem\` grew by $SHMEM_START_MB MiB for $ZONES_MB MiB of prometheus zones (+ 98 MiB of lua_shared_dict) and \`nginx\` took $START_S s to start: zone pages become resident as series are made (the page faults are paid by series creation$([ -z "$SIZE_SETUP_S" ] || echo ", $(awk -v s="$SIZE_SETUP_S" 'BEGIN{printf "%.2f", s}') s for the $(human_size "$MAX_SIZE")-series zone")), not at start."
  fi
)
echo "### Memory: zone bytes per series, worker RSS"
echo
echo "$MEM_TABLE"
echo
if [ "$SIZES_RAN" = 1 ]; then cat "$OUT/sizes.rss.md"; echo; fi
echo "$MEM_NOTES"
{
  echo "# mem kind n label_bytes used_before used_after lua_delta"
  cat "$MEM_TSV"
} | fragment raw

for k in "${!MB_[@]}"; do put_value "${k/:/_}" "${MB_[$k]}"; done
put_value key_bytes "$MEM_KEY"; put_value counter_fixed "$MEM_FIXED"
put_value precisions "$(for k in p1 p2 p3; do [ -n "${MB_[$k]:-}" ] && echo "$k"; done | wc -l)"
log "done ($SECONDS s)"
