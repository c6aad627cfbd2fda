#!/usr/bin/env bash
# build-test-module.sh: builds, for the nginx in use ($NGINX_BIN), the module the tests'
# failure injection needs (cargo feature `debug-hooks`, never shipped) and puts it where
# scripts/nginx-env.sh says (HOOKS_MODULE); then builds the shipped module again, so
# MODULE is the one `make build` makes. Both builds write the same output files (a
# cdylib's and its rlib's names carry no hash of the features), and cargo's fingerprint
# of each feature set would call a clobbered file fresh: removing our crate's outputs
# in this build's target directory makes cargo compile it again (its dependencies are
# kept), without touching the sources other builds read. The whole runs under the
# target directory's module lock (cargo-for-nginx.sh), so no other build of the module
# for this nginx comes between the two.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_LINES=$("$ROOT/scripts/nginx-env.sh")
get() { sed -n "s/^$1=//p" <<<"$ENV_LINES"; }
MODULE=$(get MODULE)
HOOKS_MODULE=$(get HOOKS_MODULE)
TARGET_DIR=$(get TARGET_DIR)
mkdir -p "$TARGET_DIR"
exec 9>"$TARGET_DIR/.module.lock"
flock 9
export MODULE_LOCK_HELD=1
# modules_ok: MODULE without the hooks, HOOKS_MODULE with them.
modules_ok() {
  [ -f "$MODULE" ] && [ -f "$HOOKS_MODULE" ] &&
    ! nm -D --defined-only "$MODULE" | grep ngx_prom_debug_ >/dev/null &&
    nm -D --defined-only "$HOOKS_MODULE" | grep ngx_prom_debug_seize_lock >/dev/null
}
# Nothing to do when both are right and newer than every input of the crate (its
# sources, manifest, build script, the nginx tree's configuration): every target that
# runs nginx asks for this one, and a build costs minutes.
SOURCE_DIR=$(get SOURCE_DIR)
if modules_ok && [ -z "$(cd "$ROOT" && find src proto build.rs Cargo.toml Cargo.lock \
    "$SOURCE_DIR/objs/ngx_auto_config.h" -newer "$HOOKS_MODULE" -print -quit)" ]; then
  echo "build-test-module: $MODULE and $HOOKS_MODULE are up to date"
  exit 0
fi
forget() { rm -f "$TARGET_DIR"/release/deps/libngx_prometheus.{so,rlib} "$MODULE"; }
forget
"$ROOT/scripts/cargo-for-nginx.sh" build --release --locked --features debug-hooks
mkdir -p "$(dirname "$HOOKS_MODULE")"
cp "$MODULE" "$HOOKS_MODULE.tmp" && mv "$HOOKS_MODULE.tmp" "$HOOKS_MODULE"
forget
"$ROOT/scripts/cargo-for-nginx.sh" build --release --locked
# The shipped module must not carry the hooks.
modules_ok || {
  echo "build-test-module: $MODULE must lack the debug hooks and $HOOKS_MODULE have them" >&2
  exit 1
}
