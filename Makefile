# streamml: `make demo` and `make test` each do all the set-up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
SM     := $(VENV)/bin/streamml
STAMP  := $(VENV)/.installed

.PHONY: all setup kafka schema-registry system-deps demo check test test-unit test-integration test-faults bench clean \
        flink-env test-flink

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

# The Flink bridge (issue 15, docs/flink-bridge.md) lives in a venv of its own: apache-flink pins older
# numpy/pandas/pyarrow/protobuf/cloudpickle than the main venv. PyFlink goes in first; its resolved
# versions become the constraints for streamml (-e, --no-deps) and the few packages the Flink side imports.
FLINK_VENV  ?= .venv-flink
FLINK_PY    := $(FLINK_VENV)/bin/python
FLINK_STAMP := $(FLINK_VENV)/.installed
FLINK_DEPS  := confluent-kafka>=2.6,<3 orjson polars>=1.0,<3 duckdb>=1.0,<3 fastavro jsonschema rocksdict>=0.3.20 \
               platformdirs rich typer>=0.29,<0.30 fsspec prometheus-client scikit-learn>=1.4 skl2onnx onnx onnxruntime \
               pydantic>=2.7,<3 pydantic-settings>=2.4,<3 pytest>=8 pytest-timeout>=2.3

$(FLINK_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "apache-flink 2.3 ships wheels for 3.9-3.12"' \
	  || { echo "error: the Flink venv needs Python 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install -q --upgrade pip
	$(FLINK_VENV)/bin/pip install -q 'apache-flink==2.3.0'
	$(FLINK_VENV)/bin/pip freeze --exclude-editable > $(FLINK_VENV)/flink-pins.txt
	$(FLINK_VENV)/bin/pip install -q -c $(FLINK_VENV)/flink-pins.txt $(foreach d,$(FLINK_DEPS),'$(d)')
	$(FLINK_VENV)/bin/pip install -q --no-deps -e .
	$(FLINK_VENV)/bin/pip check
	@touch $(FLINK_STAMP)

flink-env: $(FLINK_STAMP)

# The Flink bridge's tests: a local mini-cluster (parallelism 2) against the project's own Kafka.
# Kafka is fetched with the Flink venv's own streamml (not the main venv's `kafka` target).
test-flink: flink-env
	$(FLINK_VENV)/bin/streamml kafka install
	$(FLINK_PY) -m pytest tests/integration/test_flink_bridge.py src/streamml/flink

bench: kafka
	$(PIP) install -q -c constraints.txt -e '.[dev,all,bench]'
	$(PY) -m benchmarks

clean:
	-$(SM) kafka down
	rm -rf $(VENV) $(FLINK_VENV) build *.egg-info
