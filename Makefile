# Two commands set everything up on a fresh Debian 12 machine (as root):
#   make run    build the module and run the demo gateway with metrics (foreground)
#   make test   build everything and pass every test (unit, lint, integration); on this
#               2-core machine `make -j2 test` is faster. Each stage says what it took.
#   make integration SUITES="push admin"   some integration suites (builds first)
#   make soak   the soak for 10 minutes (SOAK_SECONDS=n for another length)
#   make deb    the Debian package for Debian's nginx, in .build/deb/
#
# NGINX_BIN=<binary> picks the nginx that build, run, integration and bench use (default:
# Debian's, from PATH); scripts/nginx-env.sh derives the rest (its tree, the lua
# load_module lines, the module's path). `make test` runs the suites against that nginx
# and then against the OpenResty-style build (nginx 1.30 with lua-nginx-module compiled
# in, made by scripts/openresty-style.sh), e.g.
#   NGINX_BIN=.build/openresty-style/sbin/nginx make run
SHELL := /bin/bash
NGINX_BIN ?= nginx
export NGINX_BIN
# The integration suites (t/<name>.rs; each is a [[test]] in Cargo.toml).
SUITES := nginx admin gateway endpoint access identity push security lifecycle fleet status openapi faults_io faults dropin protobuf record healthcheck dns
OPENRESTY_STYLE := $(CURDIR)/.build/openresty-style/sbin/nginx
OPENRESTY_STYLE_STATIC := $(CURDIR)/.build/openresty-style-static/sbin/nginx

.PHONY: run test checks build build-test setup setup-test nginx unit unit-nginx lint lua-unit rules-test \
	integration admin-openapi deb deb-test doc status-screenshot \
	fuzz soak soak-short test-suites test-beside test-openresty-style \
	test-openresty-style-static bench bench-smoke clean

# `make run KEY=VALUE...`: what make's command line sets goes to run.sh as arguments,
# as written (make itself would expand CONST_LABELS' `${hostname}` to nothing), so
# run.sh takes every setting it knows and refuses, by name, one it does not.
# SETUP_DONE and SUITES are make's own.
RUN_ARGS = $(strip $(foreach v,$(sort $(.VARIABLES)),$(if $(filter command line,$(origin $(v))),$(if $(filter SETUP_DONE SUITES,$(v)),,'$(v)=$(subst ','\'',$(value $(v)))'))))

run: build
	./scripts/run.sh $(RUN_ARGS)

# Every target says what it needs, so any of them works alone on a fresh clone and
# `make -jN` runs only what may run together. `make test` goes in four stages, each
# timed (scripts/timed.sh): the checks; the Debian package's test, alone (it installs a
# package and starts the system nginx); two lines of work at once, the suites against
# $(NGINX_BIN) (they mostly wait on nginx, timers and clients) and beside them what only
# needs CPU (fuzzing, the documentation, the OpenResty-style nginx builds and the module for each); then
# the suites against those builds. The third stage runs its two lines at once even
# under a plain `make test`; --output-sync keeps each line's output together.
# The stages after the first set SETUP_DONE: the packages are there.
test:
	@./scripts/timed.sh "checks (build, lint, lua-unit, rules-test, unit)" $(MAKE) --no-print-directory checks
	@./scripts/timed.sh "deb-test" $(MAKE) --no-print-directory SETUP_DONE=1 deb-test
	@./scripts/timed.sh "suites on $(NGINX_BIN), beside fuzzing and the OpenResty-style builds" \
		$(MAKE) --no-print-directory SETUP_DONE=1 $(if $(filter -j%,$(MAKEFLAGS)),,-j2) \
		--output-sync=recurse test-suites test-beside
	@./scripts/timed.sh "suites on the OpenResty-style builds" \
		$(MAKE) --no-print-directory SETUP_DONE=1 --output-sync=recurse \
		test-openresty-style test-openresty-style-static

checks: build-test lint lua-unit rules-test unit

test-suites:
	@./scripts/timed.sh integration $(MAKE) --no-print-directory integration
	@./scripts/timed.sh soak-short $(MAKE) --no-print-directory soak-short
	@./scripts/timed.sh bench-smoke $(MAKE) --no-print-directory bench-smoke

test-beside:
	@./scripts/timed.sh fuzz $(MAKE) --no-print-directory fuzz
	@./scripts/timed.sh doc $(MAKE) --no-print-directory doc
	@./scripts/timed.sh "OpenResty-style builds" $(MAKE) --no-print-directory \
		NGINX_BIN=$(OPENRESTY_STYLE) build-test
	@./scripts/timed.sh "OpenResty-style static builds" $(MAKE) --no-print-directory \
		NGINX_BIN=$(OPENRESTY_STYLE_STATIC) build-test

# The build-specific parts of `test` again, against the OpenResty-style nginx.
test-openresty-style:
	$(MAKE) --no-print-directory NGINX_BIN=$(OPENRESTY_STYLE) unit-nginx integration

# The same nginx with LuaJIT linked into its binary: the module's lua_* symbols must
# resolve from the executable itself. The core suite (t/nginx.rs) only.
test-openresty-style-static:
	$(MAKE) --no-print-directory NGINX_BIN=$(OPENRESTY_STYLE_STATIC) SUITES=nginx integration

# Packages (apt, pip) and the configured Debian nginx tree: `setup` for building and
# running, `setup-test` adds what the tests use. One apt at a time: setup-test comes
# after setup. SETUP_DONE=1 skips both (`make test`'s later stages).
setup:
	$(if $(SETUP_DONE),@true,./scripts/setup.sh run)

setup-test: setup
	$(if $(SETUP_DONE),@true,./scripts/setup.sh test)

# The nginx NGINX_BIN names, built when it is one of the OpenResty-style builds
# (scripts/openresty-style.sh; nothing to do for an installed nginx).
nginx: setup
	./scripts/setup.sh nginx

build: nginx
	./scripts/cargo-for-nginx.sh build --release --locked

# `build`, plus the module with the tests' failure-injection hooks (feature debug-hooks).
build-test: setup-test nginx
	./scripts/build-test-module.sh

# The developers' documentation (private items included): no broken or ambiguous link.
# About 50 s from nothing, so it runs beside the suites rather than in `lint`. After
# build-test: the same target directory.
doc: build-test
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --release --locked

# After build-test: the same target directory (cargo would only wait for its lock).
unit: build-test
	cargo test --release --locked --lib

# The unit tests that depend on the nginx tree (struct layouts), for $(NGINX_BIN)'s tree.
unit-nginx: build-test
	./scripts/cargo-for-nginx.sh test --release --locked --lib bitfield::

# luacheck (.luacheckrc) over the Lua, shellcheck over the shell scripts (about 1 s and
# 15 s here), beside rustfmt and clippy.
lint: setup-test
	cargo fmt --all -- --check
	cargo clippy --release --locked --all-targets -- -D warnings
	./scripts/fuzz.sh lint
	luacheck lua t/lua
	shellcheck scripts/*.sh bench/*.sh .ci/run
	./scripts/check-reliability.sh
	./scripts/check-links.py

# The gateway's pure Lua modules (schema, body, router, entities, endpoints, openapi, the
# store's index/crud/declarative) under busted, run by LuaJIT as nginx runs them; no
# build or nginx needed. t/lua/support/ stands in for the Rust module and for the few
# ngx functions those modules touch.
lua-unit: setup-test
	luajit "$$(command -v busted)" --lpath='lua/?.lua;lua/?/init.lua;t/lua/support/?.lua' \
		--helper=t/lua/support/helper.lua t/lua

# The shipped Prometheus rules: syntax, then their unit tests (each alert firing and not).
rules-test: setup-test
	promtool check rules rules/ngx-prometheus.rules.yml
	promtool test rules rules/ngx-prometheus.test.yml

# docs/admin-openapi.json, the Admin API's description as gateway.openapi derives it from
# the entity definitions (make lua-unit fails when the copy is stale).
admin-openapi:
	./scripts/admin-openapi.sh

# docs/status-page.png, the status page (`?format=html`) in headless Chromium, as the
# gateway test of t/status.rs leaves it (a demo gateway after known traffic).
status-screenshot: setup-test build-test
	STATUS_SCREENSHOT=$(CURDIR)/docs/status-page.png cargo test --release --locked --test status \
		-- --exact gateway_families_target_health_and_a_deleted_route

# The fuzz crate linted (fmt, clippy), then every fuzz target (fuzz/src/bin/) for 10 s
# from its kept corpus, then the exposition corpus and what the run found through the
# reference parsers (scripts/fuzz.sh).
fuzz: setup-test
	./scripts/fuzz.sh lint
	./scripts/fuzz.sh ci 10

# One suite, or one test of it:
#   make integration SUITES=push
#   cargo test --release --locked --test push -- --test-threads=2 NAME   (after make build-test)
integration: build-test
	@echo "== integration suites ($(SUITES)) on $$(./scripts/nginx-env.sh | sed -n 's/^DESCRIPTION=//p')"
	cargo test --release --locked --no-fail-fast $(addprefix --test ,$(SUITES)) -- --test-threads=2

# The soak (t/soak.rs): every load of its table at once against the gateway, then exact
# counts, flat memory and zone, a clean error log. `make soak` runs it for 10 minutes;
# `make test` for 60 s on Debian's nginx (about 70 s of wall time, a few CPU seconds).
SOAK_SECONDS ?= 600
soak: setup-test build
	./scripts/soak.sh $(SOAK_SECONDS)

soak-short: setup-test build
	./scripts/soak.sh 60

# The Debian package (scripts/deb.sh): libnginx-mod-http-prometheus_<version>_<arch>.deb in
# .build/deb/, always for Debian's nginx (/usr/sbin/nginx), whatever NGINX_BIN says.
deb: setup
	./scripts/deb.sh

# The package end to end on this machine, as root (scripts/deb-test.sh): lintian, apt-get
# install, the system nginx serving its module and Lua modules, remove and purge. It
# installs a system package and starts the system nginx (both undone when it ends, pass
# or fail), so `make test` runs it alone, before the suites: about 35 s on a quiet machine
# (12 s of CPU; a minute under load), mostly lintian and apt-get.
deb-test: setup-test
	./scripts/deb-test.sh

bench: setup-test build
	./bench/run.sh

bench-smoke: setup-test build
	BENCH_SMOKE=1 ./bench/run.sh

clean:
	cargo clean
	rm -rf .build run
