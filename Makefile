# factorysim — the two set-up commands: `make run` and `make test`.
# Both create .venv and install what they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out

.PHONY: install system-deps run simulate test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

install: $(STAMP)

# Mosquitto, its command-line clients, openssl (MQTT tests, test PKI) and Chromium (the /docs page test)
# from Debian when missing and running as root.
system-deps:
	@missing=""; \
	if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then missing="mosquitto"; fi; \
	if ! command -v mosquitto_sub >/dev/null 2>&1; then missing="$$missing mosquitto-clients"; fi; \
	if ! command -v openssl >/dev/null 2>&1; then missing="$$missing openssl"; fi; \
	if ! command -v chromium >/dev/null 2>&1; then missing="$$missing chromium"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not found:$$missing (install them for the MQTT tests)"; fi; \
	fi

# The main job on the embedded default configuration: the service with the bundled Kafka-compatible
# broker, fed with generated lots (demo mode) and a live summary; Ctrl-C stops it cleanly.
run: install
	$(BIN)/factorysim run --config config.yaml --demo

# An offline capacity study of the reference plant: 2,000 lots, JSON + HTML report and the
# full telemetry stream under $(OUT)/.
simulate: install
	mkdir -p $(OUT)
	$(BIN)/factorysim simulate --config config.yaml --lots 2000 --seed 7 \
	  --report-json $(OUT)/report.json --report-html $(OUT)/report.html \
	  --telemetry-out $(OUT)/telemetry.jsonl

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

unit: install system-deps
	$(BIN)/pytest -n auto

test: lint typecheck unit

bench: install
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev,bench]'
	$(BIN)/python tools/bench/run_all.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache .hypothesis
