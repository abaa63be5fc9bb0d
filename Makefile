# Kairo developer tasks. `make test` installs what the test suite needs and runs it all.

PYTHON ?= python3
CARGO ?= cargo

.PHONY: test test-deps lint fmt build bench

test: test-deps
	$(CARGO) build -p kairo-example-dynamic -p kairo-fixture-old-abi
	$(CARGO) nextest run --workspace --no-fail-fast


# The integration tests start real servers: an SMTP server (aiosmtpd) and
# nats-server with JetStream. Install them when missing.
test-deps:
	@$(PYTHON) -c 'import aiosmtpd' 2>/dev/null || $(PYTHON) -m pip install --quiet aiosmtpd
	@command -v nats-server >/dev/null 2>&1 || test -x /usr/sbin/nats-server || test -n "$$NATS_SERVER_BIN" || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server; }
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-nextest

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --release

bench:
	$(CARGO) bench
