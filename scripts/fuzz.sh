#!/usr/bin/env bash
# fuzz.sh: coverage-guided fuzzing of the module's pure layers with libFuzzer
# (libfuzzer-sys), on the stable toolchain: the fuzz crate (fuzz/) is built here with
# rustc's sanitizer-coverage flags, as `cargo fuzz build -s none` would, without
# installing cargo-fuzz.
#
#   scripts/fuzz.sh TARGET [SECONDS]  fuzz one target (default 60 s); new inputs go to
#                                     target/fuzz-corpus/TARGET, crashes to
#                                     target/fuzz-artifacts/TARGET/
#   scripts/fuzz.sh keep TARGET       add what those runs found that reaches new code
#                                     to the kept corpus fuzz/corpus/TARGET, to commit
#   scripts/fuzz.sh ci [SECONDS]      every target for SECONDS (default 10) from its kept
#                                     corpus, then the exposition replay (make test)
#   scripts/fuzz.sh replay [DIR...]   the exposition target's kept corpus (and DIRs)
#                                     through the reference parsers
#                                     (fuzz/check_exposition.py)
#   scripts/fuzz.sh repro TARGET FILE run one input (a crash) once, with its panic
#   scripts/fuzz.sh build | list | lint
#
# Targets: every fuzz/src/bin/<name>.rs, each with its kept seeds in fuzz/corpus/<name>/.
# Adding one is adding those two; nothing else lists them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=$ROOT/target/fuzz
BIN=$CARGO_TARGET_DIR/$TRIPLE/release
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-30}

targets() { for f in fuzz/src/bin/*.rs; do basename "$f" .rs; done; }

build() {
  # What cargo-fuzz passes (without a sanitizer, which needs nightly): libFuzzer's
  # inline 8-bit counters and comparison tracing, and the checks of a debug build.
  # `--target` keeps the flags off build scripts and proc macros.
  RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions \
-Coverflow-checks" \
    cargo build --release --locked --quiet --manifest-path fuzz/Cargo.toml --target "$TRIPLE" --bins
}

check_target() {
  [ -f "fuzz/src/bin/$1.rs" ] || { echo "fuzz: no target \"$1\" (targets: $(targets | xargs))" >&2; exit 2; }
}

# run TARGET SECONDS NEW-INPUTS-DIR: fuzz from the kept corpus; returns libFuzzer's status.
run() {
  local t=$1 secs=$2 out=$3
  mkdir -p "$out" "target/fuzz-artifacts/$t" "fuzz/corpus/$t"
  local dict=(); [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  "$BIN/$t" -max_total_time="$secs" -timeout="$FUZZ_TIMEOUT" -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="target/fuzz-artifacts/$t/" "$out" "fuzz/corpus/$t" 2>"target/fuzz-artifacts/$t.log" || {
    local rc=$?
    tail -n 40 "target/fuzz-artifacts/$t.log" >&2
    echo "fuzz: $t failed; the input is in target/fuzz-artifacts/$t/ (scripts/fuzz.sh repro $t FILE)" >&2
    return $rc
  }
  grep -E '^stat::number_of_executed_units' "target/fuzz-artifacts/$t.log" | sed "s/^/fuzz: $t /"
}

# replay DIR...: every exposition input in DIRs rendered once, dumped, and checked by
# the reference parsers.
replay() {
  local dump
  dump=$(mktemp -d)
  FUZZ_DUMP_DIR=$dump "$BIN/exposition" -runs=0 "$@" 2>"target/fuzz-artifacts/replay.log" || {
    tail -n 40 "target/fuzz-artifacts/replay.log" >&2; rm -rf "$dump"; return 1; }
  python3 fuzz/check_exposition.py "$dump"
  rm -rf "$dump"
}

cmd=${1:-}
case "$cmd" in
  build) build ;;
  list) targets ;;
  lint)
    cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
    # The main target directory: clippy reuses what `make lint` checked for the module.
    CARGO_TARGET_DIR=$ROOT/target cargo clippy --release --locked --manifest-path fuzz/Cargo.toml \
      --all-targets -- -D warnings ;;
  keep)
    t=${2:?usage: fuzz.sh keep TARGET}; check_target "$t"; build
    # Only inputs that reach code the kept ones do not (edges, not hit counts or
    # comparisons): the kept corpus stays small.
    "$BIN/$t" -merge=1 -use_counters=0 -use_cmp=0 "fuzz/corpus/$t" "target/fuzz-corpus/$t" 2>/dev/null
    echo "fuzz: fuzz/corpus/$t holds $(find "fuzz/corpus/$t" -mindepth 1 -maxdepth 1 ! -name '.*' | wc -l) inputs" ;;
  repro)
    t=${2:?usage: fuzz.sh repro TARGET FILE}; check_target "$t"; build
    "$BIN/$t" "${3:?usage: fuzz.sh repro TARGET FILE}" ;;
  replay)
    shift; build; mkdir -p target/fuzz-artifacts; replay fuzz/corpus/exposition "$@" ;;
  ci)
    secs=${2:-10}
    start=$SECONDS
    build
    echo "fuzz: built in $((SECONDS - start)) s"
    found=$(mktemp -d)
    trap 'rm -rf "$found"' EXIT
    for t in $(targets); do
      run "$t" "$secs" "$found/$t"
    done
    # What the run found, with the kept corpus, through the reference parsers.
    replay fuzz/corpus/exposition "$found/exposition"
    echo "fuzz: $(targets | wc -l) targets, ${secs} s each, and the replay: $((SECONDS - start)) s" ;;
  ""|-h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
  *)
    t=$cmd; check_target "$t"; build
    run "$t" "${2:-60}" "target/fuzz-corpus/$t" ;;
esac
