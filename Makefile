# The two commands of the README:
#   make run    install the package and run the default pageviews job (offline)
#   make test   install every test dependency (Python, Debian, npm) and run the whole suite;
#               the tests start the servers they need (PostgreSQL, Kafka, emulators, Azurite)
PYTHON ?= python3
PIP = $(PYTHON) -m pip
APT_PACKAGES = postgresql prometheus
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install install-test system-deps node-deps lint typecheck unit integration

run: install
	$(PYTHON) -m beam_pipelines.pageviews

install:
	$(PIP) install -q -e .

install-test: system-deps node-deps
	$(PIP) install -q -e '.[dev]'

# Debian packages: PostgreSQL (a real server for the Postgres sink tests) and promtool.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# Azurite (Azure Blob emulator) for the Event Hubs checkpoint-store tests.
node-deps:
	@[ -x node_modules/.bin/azurite-blob ] || npm install --no-audit --no-fund --silent --no-save azurite@3

lint:
	$(PYTHON) -m ruff check beam_pipelines transforms runners tests benchmarks

typecheck:
	$(PYTHON) -m mypy

unit:
	$(PYTHON) -m pytest -m unit

integration:
	$(PYTHON) -m pytest -m integration

test: install-test
	$(PYTHON) -m pytest -q -p no:cacheprovider
