#!/usr/bin/env bash
# Series lifecycle: the expiry sweep's cost and a million churned label sets, on the store
# alone (no nginx): the cargo bench target bench/micro/sweep.rs.
#
#   bench/lifecycle.sh                  a step of bench/run.sh, or alone
#   BENCH_SMOKE=1 bench/lifecycle.sh    10,000 series instead of 100,000
#
# Prints its section (under a heading of bench/run.sh's report). Builds the library's
# bench binary (cargo bench, without the nginx glue): never beside another cargo build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
step_init lifecycle
SWEEP_SERIES=100000; [ "$SMOKE" = 1 ] && SWEEP_SERIES=10000
SWEEP_TABLE=$(cargo_bench_table sweep SWEEP_SERIES="$SWEEP_SERIES") ||
  die "the sweep measurement failed"
log "sweep and churn measured"
echo "The expiry sweep and churn, measured on the store alone (\`SWEEP_SERIES=$SWEEP_SERIES cargo bench --no-default-features --bench sweep\`): a pass over $SWEEP_SERIES counter series of a family with \`expire\` (batches of 10,000 records, as the sweep timer takes them), then a million label sets made 5,000 a simulated second through a 4 MB zone with \`expire = 1\` and a sweep of 10,000 records every 250 ms, two workers announcing their epoch every 100 ms (freed memory is reused once both have announced since the delete). Then what deleting a series and reusing its block costs, per operation, in a zone with those two workers. \`t/lifecycle.rs\` does the same through nginx with 1,000,000 label sets at 5,000 a second (explicit \`del\`, and \`expire\`)."
echo
echo "$SWEEP_TABLE"
put_value series "$SWEEP_SERIES"
