# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup checkov-setup checkov demo test test-fast soak stack-up stack-down stack-status bench sim clean

# Installs the exact versions of uv.lock (the ones the tests pass with), the project itself editable.
# pyproject.toml keeps ranges for those who install leanops as a library; after changing them, run
# `$(BIN)/uv lock` and commit uv.lock (--locked stops here while it is stale). --inexact leaves pip and uv,
# which are not dependencies, in place.
$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv sync --quiet --locked --inexact --extra dev --python $(BIN)/python
	touch $(STAMP)

setup: $(STAMP)

# checkov (IaC scanner) in its own venv: its pins (boto3, packaging, networkx) clash with the project's.
# Built from the hashed lock infra/checkov/requirements.txt (a few seconds with uv's cache warm).
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): infra/checkov/requirements.txt $(STAMP)
	$(BIN)/uv venv --quiet --allow-existing --python $(BIN)/python $(CHECKOV_VENV)
	VIRTUAL_ENV=$(CHECKOV_VENV) $(BIN)/uv pip sync --quiet --require-hashes infra/checkov/requirements.txt
	touch $(CHECKOV_STAMP)

checkov-setup: $(CHECKOV_STAMP)

checkov: checkov-setup
	$(CHECKOV_VENV)/bin/checkov --config-file infra/checkov/config.yaml

demo: setup
	$(BIN)/python -m deployments.demo

# Two pytest-xdist workers, a test module each at a time (--dist loadfile: a module's tests share its
# fixtures and order). Each worker starts its own session stack (tests/conftest.py); ~17 min here instead
# of ~30 in one process.
test: setup checkov-setup
	$(BIN)/python -m pytest -n 2 --dist loadfile

# Every e2e test COUNT times in a row, a whole CI-like session a round, until one fails; prints each test's
# streak (tests/reliability/soak.py). About 13 minutes a round here: COUNT=20 takes over four hours, so
# rounds are recorded in docs/soak-record.json and the next `make soak` goes on from them while the code
# is unchanged. STOP_BY=HH:MM starts no round that would end later.
COUNT ?= 20
soak: setup checkov-setup
	$(BIN)/python tests/reliability/soak.py --count $(COUNT) --resume $(if $(STOP_BY),--stop-by $(STOP_BY))

test-fast: setup
	$(BIN)/python -m pytest -m "not e2e"

stack-up: setup
	$(BIN)/python -m infra.stack up

stack-down:
	$(BIN)/python -m infra.stack down

stack-status:
	$(BIN)/python -m infra.stack status

# Benchmarks need the local stack (they measure against running services); each prints one table.
bench: stack-up
	$(BIN)/python bench/bench_retrain.py
	$(BIN)/python bench/bench_drift.py
	$(BIN)/python bench/bench_tuning.py
	$(BIN)/python bench/bench_events.py
	$(BIN)/python bench/bench_lock.py
	$(BIN)/python bench/bench_bridge.py
	$(BIN)/python bench/drift_lever.py
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_mlflow_auth.py

# The fast-time simulation (sim/): its own production-profile stack, started and dropped by the command.
# MODELS is a ladder (e.g. 25,50,100); each step stops early when drift checks pile up.
MODELS ?= 10
DAYS ?= 1
SIM_MINUTES ?= 10
sim: setup
	$(BIN)/python -m sim --models $(MODELS) --days $(DAYS) --max-minutes $(SIM_MINUTES)

clean: stack-down
	rm -rf .leanops
