#!/usr/bin/env bash
# Installs what building and testing need, idempotently: Debian packages (only when
# missing), the Python reference parser, and a configured copy of the installed
# nginx's source tree (what nginx-sys needs to generate bindings whose module
# signature matches /usr/sbin/nginx).
#   setup.sh run    the packages for building and running, and the tree
#   setup.sh test   the same plus what the tests use
#   setup.sh nginx  no packages: the tree, and the OpenResty-style nginx NGINX_BIN names
#                   (built from ../shared/vendor), after `setup.sh run`
set -euo pipefail
cd "$(dirname "$0")/.."

ROLE=${1:-run}   # run | test | nginx
case "$ROLE" in run | test | nginx) ;; *) echo "setup: no role $ROLE (run, test, nginx)" >&2; exit 2 ;; esac

# lua-yaml (lyaml): the gateway's YAML declarative files; lua-nginx-dns: OpenResty's
# lua-resty-dns, the gateway's resolver of host names.
PKGS=(nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache lua-yaml lua-nginx-dns
      nginx-dev libclang-dev libpcre2-dev libssl-dev zlib1g-dev libluajit2-5.1-common
      build-essential pkg-config curl ca-certificates dpkg-dev)
if [ "$ROLE" = test ]; then
  # openssl: t/push.rs and t/gateway.rs make a throwaway CA and server certificate for their https tests.
  # lua-busted and luajit2 (OpenResty's LuaJIT branch, as Debian's nginx links): make lua-unit.
  # strace: t/admin.rs delays one worker's fsync (a slow disk) to race Admin writes.
  # lua-check (luacheck) and shellcheck: make lint.
  # victoria-metrics: the central store t/fleet.rs remote-writes into.
  # lintian, procps (pgrep): make deb-test checks the package and finds nginx's workers.
  # chromium (headless) and a font for its screenshots: t/status.rs, make status-screenshot.
  # protobuf-compiler: the test that src/exposition/proto/ is what protoc makes of
  # proto/metrics.proto, and the Python classes the protobuf exposition is decoded with.
  PKGS+=(prometheus prometheus-pushgateway victoria-metrics wrk python3-pip openssl iproute2 valgrind lua-busted luajit2
         strace lintian procps lua-check shellcheck chromium fonts-dejavu-core protobuf-compiler)
fi

# Packages and Python modules (not for `nginx`: another setup.sh may be installing them).
if [ "$ROLE" != nginx ]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  # The Debian packages start a system nginx on :80, a Pushgateway on :9091 and a
  # VictoriaMetrics on :8428; they are not ours (tests start their own) and not needed.
  for svc in nginx prometheus-pushgateway prometheus victoria-metrics; do
    if [ "$(id -u)" = 0 ] && command -v systemctl >/dev/null && systemctl is-active -q "$svc" 2>/dev/null; then
      systemctl stop "$svc" || true
    fi
  done

  # pip_install CHECK SPEC: installs SPEC unless python3 -c CHECK succeeds.
  pip_install() {
    python3 -c "$1" 2>/dev/null ||
      python3 -m pip install -q "$2" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages "$2"
  }
  if [ "$ROLE" = test ]; then
    # The reference parsers.
    pip_install 'import prometheus_client' prometheus-client
    # The independent protobuf decoder: the Python runtime of protoc's release (3.21.12 is
    # Debian 12's protoc, whose generated Python it runs).
    pip_install 'import google.protobuf as p; assert p.__version__ == "4.21.12"' protobuf==4.21.12
    # t/openapi.rs drives the Admin API from its OpenAPI description; pinned, so that its
    # seeded run makes the same cases everywhere.
    pip_install 'import schemathesis; assert schemathesis.__version__ == "4.32.5"' schemathesis==4.32.5
    # t/dns.rs's own DNS server (t/fixtures/dns_server.py) builds its packets with dnslib.
    pip_install 'import dnslib' dnslib==0.9.26
    # Rust toolchain components used by the checks.
    rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt || true
  fi
fi

# A configured nginx tree: nginx-dev ships sources without objs/.
SRC=${NGINX_SOURCE_DIR:-$PWD/.build/nginx}
NGINX_VERSION=$(/usr/sbin/nginx -v 2>&1 | sed 's|.*nginx/||')
if [ ! -f "$SRC/objs/ngx_auto_config.h" ] || [ "$(cat "$SRC/.version" 2>/dev/null)" != "$NGINX_VERSION" ]; then
  echo "setup: configuring nginx $NGINX_VERSION sources in $SRC"
  rm -rf "$SRC"; mkdir -p "$(dirname "$SRC")"
  cp -a /usr/share/nginx/src "$SRC"
  # shellcheck source=/dev/null  # Debian's nginx source tree's, copied just above
  (cd "$SRC" && . ./conf_flags && ./configure "${NGX_CONF_FLAGS[@]}" >configure.log 2>&1) ||
    { echo "setup: nginx configure failed, see $SRC/configure.log" >&2; exit 1; }
  echo "$NGINX_VERSION" >"$SRC/.version"
fi

# An OpenResty-style nginx named by NGINX_BIN= (make test-openresty-style, or
# NGINX_BIN=.build/openresty-style/sbin/nginx make run) is built from ../shared/vendor.
# Only this checkout's own: one elsewhere is another checkout's to build.
if [ "$ROLE" = nginx ]; then
  case "$(realpath -m "${NGINX_BIN:-nginx}")" in
    "$PWD/.build/openresty-style-static/sbin/nginx") ./scripts/openresty-style.sh static ;;
    "$PWD/.build/openresty-style/sbin/nginx") ./scripts/openresty-style.sh dynamic ;;
  esac
fi
