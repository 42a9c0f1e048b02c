# The interface: people and CI run the same targets.
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl

.PHONY: help build run demo test lint fmt static fuzz chaos e2e-prometheus e2e-browser bench clean

help:
	@echo "make run     build, then start data_server (:9001) and metrics_server (:8080); Ctrl-C stops both"
	@echo "make test    format check, clippy -D warnings, unit and integration tests"
	@echo "make lint    format check and clippy only"
	@echo "make demo    curl/jq tour of a running metrics_server"
	@echo "make build   release binaries in target/release"
	@echo "make static  static musl release binaries, with their sizes"
	@echo "make fuzz    cargo-fuzz every target for FUZZ_SECONDS each (default 60; nightly)"
	@echo "make chaos   CHAOS_SECONDS (default 60) of producer restarts, faults and bad data under load"
	@echo "make e2e-prometheus   a real Prometheus scrapes metrics_server, and two more over disjoint shards; its API shows the series"
	@echo "make e2e-browser      headless Chromium drives the live page (GET /) over 10,000 switches; screenshot in target/e2e/page.png"
	@echo "make bench   release build, then wrk against metrics_server and a raw std baseline side by side, what gzip and TLS cost, a million UFM ports in 16 shards (lag, CPU of unchanged bodies, RSS); writes BENCHMARKS.md"

build:
	$(CARGO) build --release --bins

run:
	@scripts/run.sh

demo:
	@scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --locked -- -D warnings

test: lint
	$(CARGO) test --locked
	# promtool (installs Debian's prometheus if missing): the alerting rules (check
	# and unit tests), then /metrics of both servers, one fed hostile column names.
	scripts/promtool_check.sh target/debug
	# A short chaos soak on the debug binaries cargo test just built.
	python3 scripts/chaos.py --duration 15 --bin-dir target/debug
	# A few seconds of the benchmark harness, so that it cannot rot (no timing is judged).
	python3 scripts/bench.py --smoke --no-build --bin-dir target/debug
	python3 scripts/bench_gzip.py --smoke --no-build --bin-dir target/debug
	python3 scripts/bench_shards.py --smoke --no-build --bin-dir target/debug
	python3 scripts/bench_tls.py --smoke --no-build --bin-dir target/debug
	python3 scripts/bench_ufm.py --smoke --no-build --bin-dir target/debug

fmt:
	$(CARGO) fmt --all

# ring (rustls's crypto) has C and assembly: built with musl's gcc wrapper.
static:
	rustup target add $(MUSL)
	@command -v musl-gcc >/dev/null || { echo "make static needs musl-gcc: apt-get install musl-tools" >&2; exit 1; }
	CC_x86_64_unknown_linux_musl=musl-gcc $(CARGO) build --release --locked --bins --target $(MUSL) --target-dir target
	@for b in data_server metrics_server; do \
	  f=target/$(MUSL)/release/$$b; \
	  printf '%-16s %8s bytes  %s, %s\n' $$b $$(stat -c %s $$f) "$$(file -b $$f 2>/dev/null | cut -d, -f1-2)" \
	    "$$(file -b $$f 2>/dev/null | grep -o 'static-pie linked\|statically linked\|dynamically linked' | head -n1)"; \
	done

FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

CHAOS_SECONDS ?= 60
chaos: build
	python3 scripts/chaos.py --duration $(CHAOS_SECONDS) --bin-dir target/release

e2e-prometheus: build
	scripts/e2e_prometheus.sh target/release

# Installs Debian's chromium and chromium-driver if missing.
e2e-browser: build
	python3 scripts/e2e_browser.py --bin-dir target/release

bench:
	python3 scripts/bench.py
	python3 scripts/bench_gzip.py
	python3 scripts/bench_shards.py --no-build
	python3 scripts/bench_tls.py --no-build
	python3 scripts/bench_ufm.py --no-build

clean:
	$(CARGO) clean
