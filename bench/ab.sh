#!/usr/bin/env bash
# Before and after in one run: the same bench steps on another revision of this
# repository (BASE) and on the working tree, one after the other on this machine, and
# every number the steps put side by side with its ratio.
#
#   bench/ab.sh BASE [STEP...]      default steps: profile request_path e2e lifecycle
#   BENCH_AB_DIR=DIR                where BASE is exported and built (default
#                                   .build/ab/<BASE's short hash>; kept for the next run)
#
# BASE is exported with `git archive` (no work tree of its own to forget), its module
# built against the same nginx ($NGINX_BIN, the same configured tree) with a cargo target
# seeded from ours, so only our crate is compiled again. Each tree runs its own
# `bench/run.sh` with BENCH_ONLY=STEPS and BENCH_CALLGRIND=1, so each measures its own
# module with its own Lua. Instruction counts (callgrind) are the same whatever the
# machine is doing; times are one pass each and move with the machine's noise: read
# them as orientation only. Prints a Markdown table on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"   # log, die, env_get

[ $# -ge 1 ] || die "usage: bench/ab.sh BASE [STEP...]"
BASE=$(git rev-parse --short=10 "$1^{commit}") || die "no revision $1"
shift
STEPS=${*:-profile request_path e2e lifecycle}
HEAD_REV=$(git rev-parse --short=10 HEAD)
DIRTY=""; git diff --quiet HEAD || DIRTY=" + uncommitted changes"
DIR=${BENCH_AB_DIR:-$ROOT/.build/ab/$BASE}

SOURCE_DIR=$(env_get SOURCE_DIR)
TARGET_DIR=$(env_get TARGET_DIR)
export NGINX_SOURCE_DIR=$SOURCE_DIR

if [ ! -f "$DIR/Cargo.toml" ]; then
  log "exporting $BASE to $DIR"
  rm -rf "$DIR"; mkdir -p "$DIR"
  git archive "$BASE" | tar -x -C "$DIR"
  # The base's own target directory, seeded with our compiled dependencies.
  base_target=$DIR/${TARGET_DIR#"$ROOT"/}
  mkdir -p "$(dirname "$base_target")"
  [ ! -d "$TARGET_DIR" ] || cp -a --reflink=auto "$TARGET_DIR" "$base_target"
fi
# Plain cargo (the store's benches) finds the configured tree at .build/nginx.
if [ -d "$ROOT/.build/nginx" ] && [ ! -e "$DIR/.build/nginx" ]; then
  mkdir -p "$DIR/.build"; ln -s "$ROOT/.build/nginx" "$DIR/.build/nginx"
fi
# Both trees measure the same peer, ours (the base would look beside its own root).
if [ -z "${BENCH_PEER_DIR:-}" ] && [ -d "$ROOT/../shared/peers/nginx-lua-prometheus" ]; then
  BENCH_PEER_DIR=$(realpath "$ROOT/../shared/peers/nginx-lua-prometheus")
  export BENCH_PEER_DIR
fi

build() {  # build TREE
  log "building the module in $1"
  (cd "$1" && ./scripts/cargo-for-nginx.sh build --release --locked) >&2 || die "build in $1 failed"
}
measure() {  # measure TREE NAME: runs the steps there, prints the directory of their numbers
  local out=$DIR/out-$2
  rm -rf "$out"; mkdir -p "$out"
  log "== $2: BENCH_ONLY=\"$STEPS\" bench/run.sh in $1"
  (cd "$1" && BENCH_ONLY="$STEPS" BENCH_CALLGRIND=1 BENCH_KEEP=1 ./bench/run.sh \
    >"$out/report.md" 2>"$out/log") || { tail -20 "$out/log" >&2; die "bench in $1 failed"; }
  local kept
  kept=$(sed -n 's/^\(bench\|run\): kept //p' "$out/log" | tail -1)
  [ -d "$kept/out" ] || die "no kept work directory in $out/log"
  cp "$kept"/out/*.tsv "$out/"
  rm -rf "$kept"
}

build "$DIR"
build "$ROOT"
measure "$DIR" base
measure "$ROOT" head

echo "Before and after in one run (\`bench/ab.sh $BASE $STEPS\`, $(date -u '+%Y-%m-%d %H:%M UTC'); nginx $(env_get NGINX_VERSION)): before = $BASE, after = $HEAD_REV$DIRTY. Instruction counts (callgrind) are deterministic; CPU times and rates are one pass each on a shared machine."
echo
echo "| step | measure | before | after | after ÷ before |"
echo "|---|---|---|---|---|"
for step in $STEPS; do
  [ -f "$DIR/out-head/$step.tsv" ] || continue
  # Every key either side put, in the order the newer run put them.
  awk -F'\t' -v step="$step" '
    FILENAME == ARGV[1] { before[$1] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } ; next }
    { after[$1] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
    END {
      for (i = 1; i <= n; i++) {
        k = order[i]; b = (k in before) ? before[k] : "—"; a = (k in after) ? after[k] : "—"
        r = "—"
        if ((k in before) && (k in after) && b + 0 != 0 && b ~ /^[-+]?[0-9.]+$/ && a ~ /^[-+]?[0-9.]+$/) r = sprintf("%.3f", a / b)
        printf "| %s | %s | %s | %s | %s |\n", step, k, b, a, r
      }
    }' "$DIR/out-base/$step.tsv" "$DIR/out-head/$step.tsv"
done
