#!/usr/bin/env bash
# Constant labels: what prometheus_const_labels adds to a render, on the store alone (the
# encoder, no nginx): the cargo bench target bench/micro/render.rs.
#
#   bench/labels.sh                  a step of bench/run.sh, or alone
#   BENCH_SMOKE=1 bench/labels.sh    10,000 series instead of 100,000
#
# Prints its section (under a heading of bench/run.sh's report). Builds the library's
# bench binary (cargo bench, without the nginx glue): never beside another cargo build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
step_init labels
LABEL_SERIES=100000; [ "$SMOKE" = 1 ] && LABEL_SERIES=10000
LABELS_TABLE=$(cargo_bench_table render RENDER_SERIES="$LABEL_SERIES") ||
  die "the constant-labels render measurement failed"
log "constant labels measured ($LABEL_SERIES series)"
echo
echo "\`prometheus_const_labels\` is written into every series at render time. The same zone ($LABEL_SERIES counter series with three labels) rendered as text by the encoder alone, 9 alternating repetitions, median; ratios to the first row (\`RENDER_SERIES=$LABEL_SERIES cargo bench --no-default-features --bench render\`):"
echo
echo "$LABELS_TABLE"
echo
echo "The extra time follows the extra bytes (three long labels more than double each line): per byte the render rate stays about the same. Shorter constant labels cost proportionally less; the hot path and the zone are not touched."
put_value series "$LABEL_SERIES"
