#!/usr/bin/env bash
# cargo-for-nginx.sh CARGO-ARGS...: runs cargo against the configured tree of the nginx
# in use ($NGINX_BIN, default Debian's; scripts/nginx-env.sh), in that build's own target
# directory, so modules for different nginx builds sit side by side.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_LINES=$("$ROOT/scripts/nginx-env.sh")
get() { sed -n "s/^$1=//p" <<<"$ENV_LINES"; }
SOURCE_DIR=$(get SOURCE_DIR)
[ -f "$SOURCE_DIR/objs/ngx_auto_config.h" ] ||
  { echo "cargo-for-nginx: $SOURCE_DIR is not a configured nginx tree (make setup)" >&2; exit 1; }
cd "$ROOT"
# One build of the module at a time per target directory (build-test-module.sh builds
# two feature sets into the same files and holds the lock across both).
TARGET_DIR=$(get TARGET_DIR)
if [ -z "${MODULE_LOCK_HELD:-}" ]; then
  mkdir -p "$TARGET_DIR"
  exec 9>"$TARGET_DIR/.module.lock"
  flock 9
fi
NGINX_SOURCE_DIR=$SOURCE_DIR NGINX_BUILD_DIR=$SOURCE_DIR/objs CARGO_TARGET_DIR=$TARGET_DIR \
  exec cargo "$@"
