# Two commands set everything up on a fresh Debian 12 machine (as root):
#   make run    build the module and run the demo gateway with metrics (foreground)
#   make test   build everything and pass every test (unit, lint, integration)
SHELL := /bin/bash
MODULE := target/release/libngx_prometheus.so

.PHONY: run test build setup setup-test unit lint integration bench bench-smoke clean

run: setup build
	./scripts/run.sh

test: setup-test build lint unit integration bench-smoke

setup:
	./scripts/setup.sh run

setup-test:
	./scripts/setup.sh test

build:
	cargo build --release --locked

unit:
	cargo test --release --locked --lib

lint:
	cargo fmt --all -- --check
	cargo clippy --release --locked --all-targets -- -D warnings

integration:
	cargo test --release --locked --test nginx --test admin --test gateway --test endpoint --test access --test identity --test push --test security --test lifecycle -- --test-threads=2

bench: setup-test build
	./bench/run.sh

bench-smoke:
	BENCH_SMOKE=1 ./bench/run.sh

clean:
	cargo clean
	rm -rf .build run
