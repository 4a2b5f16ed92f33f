# streamml: `make demo` and `make test` each do all the set-up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SM     := $(VENV)/bin/streamml
STAMP  := $(VENV)/.installed

.PHONY: all setup kafka schema-registry system-deps demo check test test-unit test-integration test-faults bench clean

all: test

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"' \
	  || { echo "error: Python 3.11+ is required (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev,all]'
	@touch $(STAMP)

setup: $(STAMP)

# Fetch Apache Kafka from Maven Central once (cached per version) and check Java.
kafka: setup
	$(SM) kafka install

# Fetch Apicurio Registry (a Confluent-compatible Schema Registry) from Maven Central once and
# check for the Java 21+ it needs; the integration tests start it on a free loopback port.
schema-registry: setup
	$(SM) schema-registry install

# System packages the tests use (an MQTT broker, Chromium, Prometheus).
system-deps:
	@bash scripts/system-deps.sh

demo: kafka
	$(SM) demo

# Lint (ruff) and type-check (mypy; strict for runtime/, kafka/, stream/ and serve/, see pyproject.toml).
check: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/mypy src/streamml

test: kafka schema-registry system-deps
	$(PY) -m pytest -m "not faults" tests src/streamml

test-unit: setup
	$(PY) -m pytest tests/unit src/streamml

test-integration: kafka schema-registry system-deps
	$(PY) -m pytest tests/integration

test-faults: kafka system-deps
	$(PY) -m pytest -m faults -rP tests/faults  # -rP: each scenario's verifier counts in the log

bench: kafka
	$(PIP) install -q -c constraints.txt -e '.[dev,all,bench]'
	$(PY) -m benchmarks

clean:
	-$(SM) kafka down
	rm -rf $(VENV) build *.egg-info
