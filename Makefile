# Kairo developer tasks. `make test` installs what the test suite needs and runs it all.

PYTHON ?= python3
CARGO ?= cargo

.PHONY: test test-deps lint fmt build bench

test: test-deps
	$(CARGO) nextest run --workspace --no-fail-fast

# The integration tests start a real SMTP server (aiosmtpd); install it when missing.
test-deps:
	@$(PYTHON) -c 'import aiosmtpd' 2>/dev/null || $(PYTHON) -m pip install --quiet aiosmtpd
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
