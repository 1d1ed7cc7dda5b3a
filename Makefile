# Two commands do everything (see README):
#   make demo   set up .venv, then run the main job on the embedded default (DuckDB, SQLite, local lake)
#   make test   set up .venv, then type-check the code (make typecheck) and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export GX_ANALYTICS_ENABLED := False
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

DEMO_HOME ?= $(CURDIR)/var/demo
# pytest-xdist workers for `make test` (tests/conftest.py groups what must share one); 0 = in-process
TEST_WORKERS ?= 2

.PHONY: docs-check setup demo test typecheck lint bench airflow mlflow screenshots clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	bash scripts/demo.sh

test: setup typecheck docs-check
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

# every link and backticked path in README.md, CHANGELOG.md and docs/ resolves (a second)
docs-check:
	bash scripts/check_docs.sh

# mypy over incremental/, dags/ and plugins/ ([tool.mypy] in pyproject.toml): zero errors, or the
# tests do not run. About a minute on a fresh clone, seconds with its cache (.mypy_cache).
typecheck: setup
	$(BIN)/python -m mypy

lint: setup
	$(BIN)/ruff check incremental dags plugins tests benchmarks

bench: setup
	$(BIN)/python benchmarks/extract_bench.py
	$(BIN)/python benchmarks/validate_bench.py
	$(BIN)/python benchmarks/train_bench.py
	$(BIN)/python benchmarks/presets_bench.py
	$(BIN)/python benchmarks/latency_bench.py
	$(BIN)/python benchmarks/train_cost_bench.py
	$(BIN)/python benchmarks/step_bench.py

airflow: setup
	export INCREMENTAL_HOME=$(DEMO_HOME) && source scripts/airflow_env.sh && incremental_airflow_init && airflow standalone

mlflow: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(DEMO_HOME)/mlflow.db --host 127.0.0.1 --port 5000

screenshots: setup
	INCREMENTAL_HOME=$(DEMO_HOME) bash scripts/screenshots.sh

clean:
	rm -rf var
