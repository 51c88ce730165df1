# OrderFox Liquidations. `make run` serves the app; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Production-mode tests: the local PostgreSQL and Redis (override to isolate runs).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/orderfox
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

.PHONY: venv run demo test test-embedded test-production lint format bench clean

venv: $(BIN)/.installed

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run make PYTHON=python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: venv
	$(BIN)/python manage.py migrate --no-input -v0
	HOST=$(HOST) PORT=$(PORT) $(BIN)/python manage.py serve

# `make demo`: the app against the built-in fake exchange (synthetic liquidations), with its
# own database in var/demo so the real record is untouched. Ctrl-C stops both.
DEMO_DIR ?= $(CURDIR)/var/demo
DEMO_EXCHANGE_PORT ?= 9100
DEMO_RATE ?= 3
demo: venv
	scripts/demo.sh $(BIN)/python $(DEMO_DIR) $(DEMO_EXCHANGE_PORT) $(DEMO_RATE) $(HOST) $(PORT)

test: test-embedded test-production

test-embedded: venv
	$(BIN)/pytest -m "not production"

test-production: venv
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	DJANGO_SECRET_KEY=test-only-not-secret \
	CHANNELS_REDIS_PREFIX=orderfox-test-$$$$ \
	$(BIN)/pytest -m production

lint: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (a few minutes; the first run also loads 5M rows once, ~2 min): needs the
# local PostgreSQL and Redis (BENCH_PG_URL, BENCH_REDIS_URL). Table on stdout, JSON in
# bench/results/. Options: make bench BENCH_ARGS="--only latency --duration 3".
BENCH_PG_URL ?= postgres://postgres@127.0.0.1:5432/postgres
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/5
bench: venv
	BENCH_PG_URL=$(BENCH_PG_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) $(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) staticfiles test-output .pytest_cache .ruff_cache
