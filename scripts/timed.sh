#!/usr/bin/env bash
# timed.sh NAME COMMAND...: runs COMMAND, then says how long stage NAME took (and whether
# it failed); exits with COMMAND's status. `make test` times its stages with it.
set -uo pipefail
name=$1; shift
start=$(date +%s)
"$@"; status=$?
took=$(($(date +%s) - start))
if [ "$status" = 0 ]; then
  echo "== $name: $((took / 60)) min $((took % 60)) s"
else
  echo "== $name: FAILED (exit $status) after $((took / 60)) min $((took % 60)) s"
fi
exit "$status"
