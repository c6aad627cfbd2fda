#!/usr/bin/env bash
# deb.sh: builds libnginx-mod-http-prometheus, a .deb for Debian's nginx laid out as
# Debian's own libnginx-mod-* packages are (dh_nginx's layout and maintainer scripts),
# with dpkg-deb over a staged tree. Prints the .deb's path on its last line.
#
#   /usr/lib/nginx/modules/ngx_prometheus.so                 the module (stripped)
#   /usr/share/nginx/modules-available/mod-http-prometheus.conf   its load_module line,
#       enabled as /etc/nginx/modules-enabled/60-mod-http-prometheus.conf (after the
#       lua module's 50-) by the postinst
#   /usr/share/lua/5.1/{ngxprom.lua,ngxprom/,prometheus.lua,prometheus/}
#       the Lua modules, beside lua-resty-core, on the lua module's default package.path
#   /usr/lib/<multiarch>/lua/5.1/ngx_prometheus.so  -> the module, on the default
#       package.cpath: `require "ngx_prometheus"` dlopens the file nginx loaded, which the
#       dynamic linker recognises (same inode), so Lua and nginx share one copy
#
# The version is Cargo.toml's plus the Debian revision of packaging/debian/changelog,
# whose top entry must name the same upstream version. Output: .build/deb/ (DEB_OUT=).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PKG=libnginx-mod-http-prometheus
DEB_SRC=$ROOT/packaging/debian
OUT=${DEB_OUT:-$ROOT/.build/deb}

die() { echo "deb: $*" >&2; exit 1; }

# Always Debian's nginx: the package's ABI dependency names it.
ENV_LINES=$(NGINX_BIN=/usr/sbin/nginx "$ROOT/scripts/nginx-env.sh")
get() { sed -n "s/^$1=//p" <<<"$ENV_LINES"; }
SOURCE_DIR=$(get SOURCE_DIR)
MODULE=$(get MODULE)
[ "$(get LUA)" = dynamic ] || die "/usr/sbin/nginx is not Debian's nginx (lua compiled in)"

# The ABI: what dh_nginx reads, from the tree the module is built against, which must be
# the installed nginx's (make setup reconfigures it when nginx changes).
abi=$(sed -n 's/^nginx:abi=//p' "$SOURCE_DIR/debian/libnginx-mod.abisubstvars" 2>/dev/null) ||
  true
[ -n "$abi" ] || die "$SOURCE_DIR has no debian/libnginx-mod.abisubstvars (not Debian's nginx sources; make setup)"
[ "$(cat "$SOURCE_DIR/.version" 2>/dev/null)" = "$(get NGINX_VERSION)" ] ||
  die "$SOURCE_DIR is not configured for the installed nginx $(get NGINX_VERSION) (make setup)"
provides=$(dpkg-query -W -f='${Provides}' nginx 2>/dev/null || true)
[[ ", $provides," == *", $abi,"* ]] ||
  die "the module's tree says $abi but the installed nginx provides '$provides' (make setup)"

# Version: Cargo.toml's [package] version, and the changelog's entry for it.
cargo_version=$(awk '/^\[/{p=($0=="[package]")} p&&/^version *=/{gsub(/[" ]/,"");sub(/version=/,"");print;exit}' Cargo.toml)
[ -n "$cargo_version" ] || die "no version in Cargo.toml's [package]"
version=$(dpkg-parsechangelog -l "$DEB_SRC/changelog" -S Version)
[ "${version%-*}" = "$cargo_version" ] ||
  die "packaging/debian/changelog's top entry is $version, Cargo.toml says $cargo_version: add an entry (dch -v $cargo_version-1)"
maintainer=$(dpkg-parsechangelog -l "$DEB_SRC/changelog" -S Maintainer)
# Files get the changelog's date, so the same sources make the same .deb.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$DEB_SRC/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)

# The shipped module (no debug hooks). build-test-module.sh builds both feature sets into
# one file; cargo may call the hooks' build fresh, so rebuild from the crate root then.
NGINX_BIN=/usr/sbin/nginx "$ROOT/scripts/cargo-for-nginx.sh" build --release --locked
if nm -D --defined-only "$MODULE" | grep -q ngx_prom_debug_; then
  touch "$ROOT/src/lib.rs"
  NGINX_BIN=/usr/sbin/nginx "$ROOT/scripts/cargo-for-nginx.sh" build --release --locked
  ! nm -D --defined-only "$MODULE" | grep -q ngx_prom_debug_ || die "$MODULE exports a debug hook"
fi

STAGE=$OUT/stage
rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
install -D -m 0644 "$MODULE" "$STAGE/usr/lib/nginx/modules/ngx_prometheus.so"
# As dh_strip does for shared objects (Debian ships the debug symbols apart).
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  "$STAGE/usr/lib/nginx/modules/ngx_prometheus.so"
install -D -m 0644 "$DEB_SRC/mod-http-prometheus.conf" \
  "$STAGE/usr/share/nginx/modules-available/mod-http-prometheus.conf"
mkdir -p "$STAGE/usr/lib/$multiarch/lua/5.1"
ln -s ../../../nginx/modules/ngx_prometheus.so "$STAGE/usr/lib/$multiarch/lua/5.1/ngx_prometheus.so"

# The Lua modules a user requires: ngxprom and the nginx-lua-prometheus drop-in, each a
# file and an optional directory of submodules. Never lua/gateway/ (the demo gateway).
LUA_DIR=$STAGE/usr/share/lua/5.1
for name in ngxprom prometheus; do
  if [ -f "lua/$name.lua" ]; then
    install -D -m 0644 "lua/$name.lua" "$LUA_DIR/$name.lua"
  fi
  if [ -d "lua/$name" ]; then
    while IFS= read -r -d '' f; do
      install -D -m 0644 "$f" "$LUA_DIR/${f#lua/}"
    done < <(find "lua/$name" -type f -name '*.lua' -print0)
  fi
done
[ -f "$LUA_DIR/ngxprom.lua" ] || die "lua/ngxprom.lua is missing"

DOC=$STAGE/usr/share/doc/$PKG
mkdir -p "$DOC"
gzip -9n <"$DEB_SRC/changelog" >"$DOC/changelog.Debian.gz"
# The statically linked crates (normal dependencies of the shipped features, no proc
# macros), with their declared licenses, one per line in the copyright's Comment.
crates=$(cargo tree --locked --offline -e normal,no-proc-macro --prefix none \
  --format ' {p}: {l}' | sed -e 's/ (\*)$//' -e 's/ (\/[^)]*)//' | grep -v '^ ngx_prometheus ' | sort -u)
[ -n "$crates" ] || die "cargo tree listed no crates"
awk -v crates="$crates" '$0 == "@STATIC_CRATES@" { print crates; next } { print }' \
  "$DEB_SRC/copyright.in" >"$DOC/copyright"
chmod 0644 "$DOC/copyright" "$DOC/changelog.Debian.gz"
if [ -f "$DEB_SRC/lintian-overrides" ]; then
  install -D -m 0644 "$DEB_SRC/lintian-overrides" "$STAGE/usr/share/lintian/overrides/$PKG"
fi

# Depends: the nginx ABI, the lua module, and the shared libraries the module links
# (dpkg-shlibdeps, which wants a debian/control to read).
SHLIBS=$OUT/shlibs
rm -rf "$SHLIBS"
mkdir -p "$SHLIBS/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$SHLIBS/debian/control"
# The lua_* symbols come from the lua module at run time, not from a library: not a warning.
shlibs=$(cd "$SHLIBS" && dpkg-shlibdeps -O --warnings=0 "$STAGE/usr/lib/nginx/modules/ngx_prometheus.so" |
  sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"
depends="$abi, libnginx-mod-http-lua, $shlibs"

for s in postinst prerm postrm; do
  install -m 0755 "$DEB_SRC/$s" "$STAGE/DEBIAN/$s"
done
(cd "$STAGE" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
size=$(du -sk --apparent-size "$STAGE/usr" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
  -e "s|@INSTALLED_SIZE@|$size|" -e "s|@DEPENDS@|$depends|" \
  "$DEB_SRC/control.in" >"$STAGE/DEBIAN/control"
chmod 0644 "$STAGE/DEBIAN/control" "$STAGE/DEBIAN/md5sums"
find "$STAGE" -type d -exec chmod 0755 {} +

deb=$OUT/${PKG}_${version}_$arch.deb
rm -f "$OUT/${PKG}_"*.deb   # one package in the directory: `apt install ./.build/deb/*.deb`
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
echo "deb: built $deb (Depends: $depends)" >&2
echo "$deb"
