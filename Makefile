# The README's commands. Each target installs what it needs first, so a
# brand-new Debian machine needs nothing but `make demo` or `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := mosquitto mosquitto-clients influxdb influxdb-client victoria-metrics socat openssl \
	chromium chromium-driver poppler-utils fonts-wqy-zenhei
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo test test-quick lint bench clean

system-deps:
	@missing=""; for b in mosquitto mosquitto_pub influxd influx victoria-metrics socat openssl \
	  chromium chromedriver pdftotext; do \
	  command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || missing="$$missing fonts-wqy-zenhei"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages (missing:$$missing)"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root, or: sudo apt-get install -y $(DEBS)"; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEBS) >/dev/null; \
	  for svc in mosquitto influxdb victoria-metrics; do \
	    systemctl disable --now $$svc >/dev/null 2>&1 || true; done; \
	fi

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(BIN)/python deploy/demo/run.py $(ARGS)

# Most tests wait on real servers and subprocesses, so three workers share two cores
# well; --dist loadfile keeps a file's tests (and their fixtures) on one worker.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(or $(WORKERS),3) --dist loadfile

test: setup
	$(PYTEST)

# The quick loop: everything but the long end-to-end runs marked slow.
test-quick: setup
	$(PYTEST) -m 'not slow'

lint: setup
	$(BIN)/ruff check gateway firmware_sim tests bench dashboards deploy
	$(BIN)/mypy
	$(BIN)/mypy bench dashboards

bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
