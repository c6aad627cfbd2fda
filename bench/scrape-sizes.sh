#!/usr/bin/env bash
# Scrape sizes, in the benchmark server (bench/bench.conf, bench/bench.lua): 1k, 10k,
# 100k series (half counters, half default-precision histograms, grown in place in one
# zone): time to first byte (the render, done in the thread pool before the header goes
# out), total time and bytes, text and gzip (and OpenMetrics and protobuf when the
# endpoint negotiates them). Worker RSS before the zone is filled and after (for
# memory.sh).
#
#   bench/scrape-sizes.sh                  a step of bench/run.sh, or alone (its own server)
#   BENCH_SMOKE=1 bench/scrape-sizes.sh    tiny sizes
#
# Prints its section; fragments: rss (worker RSS table), raw; numbers in OUT/sizes.tsv.
# Overrides: BENCH_SIZES (e.g. "1000 10000 100000"), BENCH_SIZE_SCRAPES.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
# shellcheck source=bench/bench-nginx.sh
. "$ROOT/bench/bench-nginx.sh"
step_init sizes
bench_server_up

# --- worker memory before; the sizes ---------------------------------------------------
# rss_snapshot -> "pid VmRSS RssAnon RssShmem" (kB) per worker
rss_snapshot() {
  local pid
  for pid in $(pgrep -P "$MASTER" | sort -n); do
    awk -v p="$pid" '/^VmRSS:/ {r = $2} /^RssAnon:/ {a = $2} /^RssShmem:/ {s = $2}
      END {print p, r, a, s}' "/proc/$pid/status"
  done
}
RSS_BEFORE=$(rss_snapshot)

T2=$SECONDS
SIZES_TSV="$WORK/sizes.tsv"   # size format rep code ttfb total bytes
: >"$SIZES_TSV"
gzip_location   # GZ_BY, GZ_PATH, GZ_NOTE (bench/bench-nginx.sh)
[ -z "$GZ_NOTE" ] || log "gzip: $GZ_NOTE"
# OpenMetrics: measured when the endpoint negotiates it (a build that answers text is said so).
OM_ACCEPT='Accept: application/openmetrics-text; version=1.0.0'
OM_CT=$(curl -s -o /dev/null -w '%{content_type}' -H "$OM_ACCEPT" "$BASE/metrics_sizes") || OM_CT="(request failed)"
if [[ "$OM_CT" == application/openmetrics-text* ]]; then OM=1; else OM=0; fi
# Protobuf (issue 29): as Prometheus asks for it with native histograms.
PB_ACCEPT='Accept: application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited'
PB_CT=$(curl -s -o /dev/null -w '%{content_type}' -H "$PB_ACCEPT" "$BASE/metrics_sizes") || PB_CT="(request failed)"
if [[ "$PB_CT" == application/vnd.google.protobuf* ]]; then PB=1; else PB=0; fi
FORMATS="text gzip$([ "$OM" = 1 ] && echo ' om omgz')$([ "$PB" = 1 ] && echo ' pb pbgz')"
# pb_check FILE ROUTE: FILE (length-delimited MetricFamily messages) holds ROUTE's
# histogram with its 3 observations, as a native histogram, read by Python's protobuf
# with protoc's classes for proto/metrics.proto (scripts/setup.sh test).
pb_check() {
  mkdir -p "$WORK/pb"
  protoc --python_out="$WORK/pb" -I"$ROOT/proto" "$ROOT/proto/metrics.proto"
  python3 - "$WORK/pb" "$1" "$2" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import metrics_pb2
from google.protobuf.internal.decoder import _DecodeVarint32
data, pos, route, found = open(sys.argv[2], "rb").read(), 0, sys.argv[3], False
while pos < len(data):
    n, pos = _DecodeVarint32(data, pos)
    mf = metrics_pb2.MetricFamily()
    mf.ParseFromString(data[pos:pos + n])
    pos += n
    if mf.name != "bench_size_latency_seconds":
        continue
    for m in mf.metric:
        if any(l.name == "route" and l.value == route for l in m.label):
            h = m.histogram
            found = h.sample_count == 3 and h.HasField("schema") and h.zero_threshold > 0
sys.exit(0 if found else 1)
PY
}
declare -A SIZE_SERIES SIZE_USED
size_scrape() {  # size format url rep [curl args...]
  local size=$1 fmt=$2 url=$3 rep=$4 r; shift 4
  r=$(curl -s -o /dev/null "$@" -w '%{http_code}\t%{time_starttransfer}\t%{time_total}\t%{size_download}' \
    --max-time 300 "$url") || die "scrape $fmt at $size series"
  [ "${r%%$'\t'*}" = 200 ] || die "scrape $fmt at $size series: HTTP ${r%%$'\t'*}"
  printf '%s\t%s\t%s\t%s\n' "$size" "$fmt" "$rep" "$r" >>"$SIZES_TSV"
}
for size in $SIZES; do
  routes=$((size / 2))
  sizes_fill "$routes"   # SETUP, SIZE_SETUP_S (bench/bench-nginx.sh)
  SIZE_SERIES[$size]=$(kv series "$SETUP"); SIZE_USED[$size]=$(kv zone_used "$SETUP")
  [ "${SIZE_SERIES[$size]}" = $((routes * 2)) ] || die "sizes zone: ${SIZE_SERIES[$size]} series, expected $((routes * 2))"
  # Untimed checks: the text has the last route; the gzip answer is gzip and decodes to it.
  curl -sf -o "$WORK/size.txt" "$BASE/metrics_sizes" || die "GET /metrics_sizes"
  grep -q "^bench_size_latency_seconds_count{route=\"/r/$routes\"} 3\$" "$WORK/size.txt" ||
    die "sizes exposition lacks the last route's histogram"
  curl -sf -H 'Accept-Encoding: gzip' "$BASE$GZ_PATH" | gzip -dc >"$WORK/size.gz.txt" || die "GET $GZ_PATH: not gzip"
  grep -q "^bench_size_latency_seconds_count{route=\"/r/$routes\"} 3\$" "$WORK/size.gz.txt" ||
    die "gzip exposition lacks the last route's histogram"
  if [ "$OM" = 1 ]; then
    curl -sf -H "$OM_ACCEPT" "$BASE/metrics_sizes" -o "$WORK/size.om.txt" || die "GET /metrics_sizes (OpenMetrics)"
    [ "$(tail -n 1 "$WORK/size.om.txt")" = "# EOF" ] || die "OpenMetrics exposition does not end with # EOF"
  fi
  if [ "$PB" = 1 ]; then
    curl -sf -H "$PB_ACCEPT" -H 'Accept-Encoding: gzip' "$BASE$GZ_PATH" | gzip -dc >"$WORK/size.pb" ||
      die "GET $GZ_PATH (protobuf): not gzip"
    pb_check "$WORK/size.pb" "/r/$routes" || die "protobuf exposition lacks the last route's native histogram"
  fi
  for rep in $(seq "$SIZE_SCRAPES"); do
    # shellcheck disable=SC2086  # FORMATS is a list: one argument per format
    for f in $(rotate "$rep" $FORMATS); do
      case $f in
        text) size_scrape "$size" text "$BASE/metrics_sizes" "$rep" ;;
        gzip) size_scrape "$size" gzip "$BASE$GZ_PATH" "$rep" -H 'Accept-Encoding: gzip' ;;
        om) size_scrape "$size" om "$BASE/metrics_sizes" "$rep" -H "$OM_ACCEPT" ;;
        omgz) size_scrape "$size" omgz "$BASE$GZ_PATH" "$rep" -H "$OM_ACCEPT" -H 'Accept-Encoding: gzip' ;;
        pb) size_scrape "$size" pb "$BASE/metrics_sizes" "$rep" -H "$PB_ACCEPT" ;;
        pbgz) size_scrape "$size" pbgz "$BASE$GZ_PATH" "$rep" -H "$PB_ACCEPT" -H 'Accept-Encoding: gzip' ;;
      esac
    done
  done
  log "scrape size $size: ${SIZE_SERIES[$size]} series, $((${SIZE_USED[$size]} / 1048576)) MiB of zone ($((SECONDS - T2)) s)"
done
RSS_AFTER=$(rss_snapshot)

size_stat() {  # size format field(5=ttfb 6=total 7=bytes) -> median min max n
  # shellcheck disable=SC2016  # an awk program for stats(): its $1 and $f are awk's
  stats "$3" -v s="$1" -v m="$2" '$1==s && $2==m {print $f}' "$SIZES_TSV"
}
ms3() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN{printf "%.1f ms (%.1f–%.1f)", m * 1000, lo * 1000, hi * 1000}'; }
declare -A SZ
for size in $SIZES; do
  for f in $FORMATS; do
    read -r "SZ[$size:$f:ttfb]" "SZ[$size:$f:ttfb_lo]" "SZ[$size:$f:ttfb_hi]" _ < <(size_stat "$size" "$f" 5)
    read -r "SZ[$size:$f:total]" "SZ[$size:$f:total_lo]" "SZ[$size:$f:total_hi]" _ < <(size_stat "$size" "$f" 6)
    read -r "SZ[$size:$f:bytes]" _ _ _ < <(size_stat "$size" "$f" 7)
  done
  SZ[$size:ttfb]=${SZ[$size:text:ttfb]}; SZ[$size:total]=${SZ[$size:text:total]}; SZ[$size:bytes]=${SZ[$size:text:bytes]}
  SZ[$size:ttfb_lo]=${SZ[$size:text:ttfb_lo]}
done
size_table() {  # plain-format gzip-format title
  local p=$1 g=$2 size
  echo "| series (½ counters, ½ histograms), $3 | bytes | first byte (= render) | total | render rate | µs per series | gzip bytes | gzip: first byte | gzip: total | bytes ÷ gzip bytes |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for size in $SIZES; do
    echo "| $(human_size "$size") | $(awk -v b="${SZ[$size:$p:bytes]}" 'BEGIN{printf "%.2f MB", b / 1e6}') | $(ms3 "${SZ[$size:$p:ttfb]}" "${SZ[$size:$p:ttfb_lo]}" "${SZ[$size:$p:ttfb_hi]}") | $(ms3 "${SZ[$size:$p:total]}" "${SZ[$size:$p:total_lo]}" "${SZ[$size:$p:total_hi]}") | $(awk -v b="${SZ[$size:$p:bytes]}" -v t="${SZ[$size:$p:ttfb]}" 'BEGIN{printf "%.0f MB/s", (t > 0 ? b / 1e6 / t : 0)}') | $(awk -v t="${SZ[$size:$p:ttfb]}" -v n="$size" 'BEGIN{printf "%.2f", t * 1e6 / n}') | $(awk -v b="${SZ[$size:$g:bytes]}" 'BEGIN{printf "%.2f MB", b / 1e6}') | $(ms3 "${SZ[$size:$g:ttfb]}" "${SZ[$size:$g:ttfb_lo]}" "${SZ[$size:$g:ttfb_hi]}") | $(ms3 "${SZ[$size:$g:total]}" "${SZ[$size:$g:total_lo]}" "${SZ[$size:$g:total_hi]}") | $(ratio "${SZ[$size:$p:bytes]}" "${SZ[$size:$g:bytes]}") |"
  done
}
SIZES_TABLE=$(
  size_table text gzip "text format 0.0.4"
  if [ "$OM" = 1 ]; then echo; size_table om omgz "OpenMetrics 1.0.0"; fi
  if [ "$PB" = 1 ]; then echo; size_table pb pbgz "protobuf, native and classic buckets"; fi
)
SIZES_NOTES=$(
  echo "- One zone (\`sizes\`, $SIZES_ZONE_MB MiB) grown in place: routes \`/r/1\`…, each with one counter series and one histogram series at the **default precision** (1 µs–60 s, 2 digits; 11 buckets + \`+Inf\` + \`_sum\` + \`_count\` = 14 sample lines) holding 3 observations; so 100k series are 50k counters + 50k histograms, $(awk -v s="$MAX_SIZE" 'BEGIN{printf "%d", s / 2 * 15}') sample lines. Zone used at the largest size: $((${SIZE_USED[$MAX_SIZE]} / 1048576)) MiB. Series creation (not timed here): $(awk -v s="$SIZE_SETUP_S" 'BEGIN{printf "%.2f", s}') s in all."
  echo "- curl, $SIZE_SCRAPES scrapes per format and size, the formats ($FORMATS) in rotating order, median (min–max). \"First byte\" is \`time_starttransfer\`: the module sends the header only once the body is rendered (in nginx's thread pool), so it is the render time plus a loopback round trip; \"render rate\" is uncompressed bytes ÷ that. \"Total\" adds the transfer to curl (which writes to /dev/null)."
  if [ "$GZ_BY" = module ]; then
    echo "- gzip (\`Accept-Encoding: gzip\`, on \`$GZ_PATH\`: \`gzip on; gzip_types text/plain; gzip_min_length 0;\`): **the module compresses by itself** when the client accepts gzip (it answers \`Content-Encoding: gzip\` on a location without nginx's gzip too), in the render thread, so its first byte includes the compression; nginx's gzip filter leaves an encoded response alone."
  else
    echo "- gzip (\`Accept-Encoding: gzip\`): nginx's gzip filter (level 1, the default) on \`$GZ_PATH\`; it compresses on the worker's event loop while sending, after the first byte."
    if [ -n "$GZ_NOTE" ]; then echo "- **gzip**: $GZ_NOTE"; else echo "- gzip location: \`gzip on; gzip_types text/plain; gzip_min_length 0;\`."; fi
  fi
  if [ "$OM" = 1 ]; then
    echo "- OpenMetrics: \`$OM_ACCEPT\`, answered with \`Content-Type: $OM_CT\`; the body ends with \`# EOF\` (checked)."
  else
    echo "- **OpenMetrics: not measured — this build does not negotiate it.** Asked with \`$OM_ACCEPT\`, the endpoint answers \`Content-Type: $OM_CT\` (the text format)."
  fi
  if [ "$PB" = 1 ]; then
    echo "- Protobuf: \`$PB_ACCEPT\`, answered with \`Content-Type: $PB_CT\`: length-delimited \`MetricFamily\` messages, each histogram with its classic buckets and its native ones (schema 4 at the default precision); the last route's native histogram read back by Python's \`protobuf\` (checked)."
  else
    echo "- **Protobuf: not measured.** Asked with \`$PB_ACCEPT\`, the endpoint answers \`Content-Type: $PB_CT\`."
  fi
)


echo "### Scrape: time and bytes by size, text and gzip"
echo
echo "$SIZES_TABLE"
echo
echo "$SIZES_NOTES"

# Worker RSS, for the memory section (bench/memory.sh shows it when this step ran).
kb() { awk -v k="$1" 'BEGIN{printf "%.1f", k / 1024}'; }
{
  echo "| worker | VmRSS before → after (MiB) | RssAnon before → after | RssShmem before → after |"
  echo "|---|---|---|---|"
  while read -r pid r a sh; do
    read -r _ r2 a2 s2 < <(awk -v p="$pid" '$1 == p' <<<"$RSS_AFTER")
    echo "| $pid | $(kb "$r") → $(kb "${r2:-0}") (+$(kb $(( ${r2:-0} - r )))) | $(kb "$a") → $(kb "${a2:-0}") (+$(kb $(( ${a2:-0} - a )))) | $(kb "$sh") → $(kb "${s2:-0}") (+$(kb $(( ${s2:-0} - sh )))) |"
  done <<<"$RSS_BEFORE"
} | fragment rss
echo "- Worker RSS (\`/proc/<pid>/status\`) before the $(human_size "$MAX_SIZE")-series zone was filled and after it was filled and scraped $SIZE_SCRAPES × 2 times per size. RssShmem counts the zone pages a worker has touched: making series, and rendering, which reads every histogram's header and the chunks in use, so a worker that has rendered the zone maps most of it. RssAnon is its own memory: the Lua tables caching the children it resolved (the setup requests ran in both workers) and what rendering and gzip allocate (each scrape renders the whole exposition into one buffer, in a pool thread)." | fragment rss_notes
{
  echo "# sizes size format rep http_code time_starttransfer time_total bytes"
  cat "$SIZES_TSV"
  echo "# rss_before pid VmRSS_kB RssAnon_kB RssShmem_kB"
  echo "$RSS_BEFORE"
  echo "# rss_after pid VmRSS_kB RssAnon_kB RssShmem_kB"
  echo "$RSS_AFTER"
} | fragment raw

# Numbers: the largest size's render (text), and how it was compressed.
put_value max_size "$MAX_SIZE"
put_value max_ttfb_ms "$(awk -v t="${SZ[$MAX_SIZE:ttfb]}" 'BEGIN{printf "%.1f", t * 1000}')"
put_value max_total_ms "$(awk -v t="${SZ[$MAX_SIZE:total]}" 'BEGIN{printf "%.1f", t * 1000}')"
put_value max_bytes "${SZ[$MAX_SIZE:bytes]}"
put_value max_rate_mbs "$(awk -v b="${SZ[$MAX_SIZE:bytes]}" -v t="${SZ[$MAX_SIZE:ttfb]}" 'BEGIN{ if (t > 0) printf "%.0f", b / 1e6 / t }')"
put_value setup_s "$SIZE_SETUP_S"
put_value gz_path "$GZ_PATH"   # (for scrape-load.sh)
put_value zone_used "${SIZE_USED[$MAX_SIZE]}"
log "done ($SECONDS s)"
