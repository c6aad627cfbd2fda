#!/usr/bin/env bash
# soak.sh [SECONDS]: the soak (t/soak.rs, its loads in t/soak/) for SECONDS (default
# 600; at least 30) against the nginx in use ($NGINX_BIN, default Debian's): the
# gateway with 2 workers under proxy traffic, Admin writes, series churn with expiry
# and a scrape a second, all at once. Fails unless every count is exact, the workers'
# memory and the zone stay flat after the warm-up and the error log holds only the
# lines the loads expect; prints what each load did and the memory and zone curves.
# `make test` runs it for 60 s (`make soak-short`). SOAK_LOADS=part,part runs only the
# loads whose names hold one of the parts (e.g. SOAK_LOADS=proxy,scrapes).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-600}
[[ $SECS =~ ^[0-9]+$ && $SECS -ge 30 ]] || { echo "usage: $0 [SECONDS >= 30]" >&2; exit 2; }
cd "$ROOT"
# The module for this nginx (the soak loads no debug hooks).
./scripts/cargo-for-nginx.sh build --release --locked
SOAK_SECONDS=$SECS exec cargo test --release --locked --test soak -- --test-threads=2 --nocapture
