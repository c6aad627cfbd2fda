#!/usr/bin/env bash
# build-test-module.sh: builds, for the nginx in use ($NGINX_BIN), the module the tests'
# failure injection needs (cargo feature `debug-hooks`, never shipped) and puts it where
# scripts/nginx-env.sh says (HOOKS_MODULE); then builds the shipped module again, so
# MODULE is the one `make build` makes. Both builds write the same output file, and
# cargo's fingerprint of each feature set would call a clobbered file fresh: touching
# the crate root makes cargo compile our crate again (its dependencies are kept).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_LINES=$("$ROOT/scripts/nginx-env.sh")
get() { sed -n "s/^$1=//p" <<<"$ENV_LINES"; }
MODULE=$(get MODULE)
HOOKS_MODULE=$(get HOOKS_MODULE)
touch "$ROOT/src/lib.rs"
"$ROOT/scripts/cargo-for-nginx.sh" build --release --locked --features debug-hooks
mkdir -p "$(dirname "$HOOKS_MODULE")"
cp "$MODULE" "$HOOKS_MODULE.tmp" && mv "$HOOKS_MODULE.tmp" "$HOOKS_MODULE"
touch "$ROOT/src/lib.rs"
"$ROOT/scripts/cargo-for-nginx.sh" build --release --locked
# The shipped module must not carry the hooks.
if nm -D --defined-only "$MODULE" | grep ngx_prom_debug_ >/dev/null; then
  echo "build-test-module: $MODULE exports a debug hook" >&2
  exit 1
fi
if ! nm -D --defined-only "$HOOKS_MODULE" | grep ngx_prom_debug_seize_lock >/dev/null; then
  echo "build-test-module: $HOOKS_MODULE lacks the debug hooks" >&2
  exit 1
fi
