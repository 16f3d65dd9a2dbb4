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
	@echo "installing Python packages: beam-pipelines (editable) and its dependencies (pip)"
	$(PIP) install -q -e .

install-test: system-deps node-deps
	@echo "installing Python packages: beam-pipelines (editable) with the [dev] extra (pip)"
	$(PIP) install -q -e '.[dev]'

# Debian packages: PostgreSQL (a real server for the Postgres sink tests) and promtool.
# No system service is left behind: Debian's postgresql would create a cluster "main" and
# start it on port 5432 (where systemd runs); createcluster.conf says not to, before the
# install (the tests start servers of their own, in temporary directories), and the
# prometheus package's server is stopped and disabled (only its promtool is used).
# --force-confold and UCF_FORCE_CONFFOLD keep that file when postgresql-common installs its own.
# Nothing is changed on a machine that already has both.
CREATECLUSTER = /etc/postgresql-common/createcluster.conf
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (apt-get, needs root):$$missing"; \
	  case "$$missing" in *postgresql*) \
	    if ! grep -qs '^ *create_main_cluster' $(CREATECLUSTER); then \
	      echo "  first writing $(CREATECLUSTER): create_main_cluster = false (no system cluster on port 5432)"; \
	      $(SUDO) mkdir -p $$(dirname $(CREATECLUSTER)) && \
	      echo "create_main_cluster = false" | $(SUDO) tee -a $(CREATECLUSTER) >/dev/null; \
	    fi;; \
	  esac; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 \
	    apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
	    $$missing >/dev/null || exit 1; \
	  case "$$missing" in *prometheus*) \
	    if [ -d /run/systemd/system ]; then \
	      echo "  stopping and disabling the prometheus service (only promtool is needed)"; \
	      $(SUDO) systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	    fi;; \
	  esac; \
	fi

# Azurite (Azure Blob emulator) for the Event Hubs checkpoint-store tests.
node-deps:
	@[ -x node_modules/.bin/azurite-blob ] || { \
	  echo "installing npm packages: azurite@3 into ./node_modules (not saved to package.json)"; \
	  npm install --no-audit --no-fund --silent --no-save azurite@3; }

lint:
	$(PYTHON) -m ruff check beam_pipelines transforms runners tests benchmarks

typecheck:
	$(PYTHON) -m mypy

unit:
	$(PYTHON) -m pytest -m unit

integration:
	$(PYTHON) -m pytest -m integration

test: install-test
	$(PYTHON) -m pytest -q -p no:cacheprovider --durations=20
