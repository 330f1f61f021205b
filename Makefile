# bulk_rating: every target creates the virtualenv it needs (python3 -m venv + pip).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DB     ?= data/bulk_rating.duckdb
AS_OF  ?=
AS_OF_FLAG := $(if $(AS_OF),--as-of $(AS_OF),)

.DEFAULT_GOAL := help
.PHONY: help import preview reconcile nightly sql test test-slow test-all lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: DATA=dir-or-file  DB=$(DB)  AS_OF=YYYY-MM-DD"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

import: $(STAMP) ## import DATA into DB (e.g. make import DATA=data/samples/acme)
	@test -n "$(DATA)" || { echo "usage: make import DATA=data/samples/<set> [DB=file.duckdb] [AS_OF=YYYY-MM-DD]"; exit 2; }
	$(BIN)/bulk-rating import $(DATA) --db $(DB) $(AS_OF_FLAG)

preview: $(STAMP) ## compute the import of DATA and write nothing
	@test -n "$(DATA)" || { echo "usage: make preview DATA=data/samples/<set> [DB=file.duckdb] [AS_OF=YYYY-MM-DD]"; exit 2; }
	$(BIN)/bulk-rating import $(DATA) --db $(DB) --preview $(AS_OF_FLAG)

reconcile: $(STAMP) ## compare LEGACY invoices with a preview of DATA (nothing saved)
	@test -n "$(DATA)" -a -n "$(LEGACY)" || { echo "usage: make reconcile DATA=data/samples/<set> LEGACY=legacy.csv [OUT=dir]"; exit 2; }
	$(BIN)/bulk-rating reconcile $(DATA) --legacy $(LEGACY) $(AS_OF_FLAG) $(if $(OUT),--out $(OUT),)

nightly: $(STAMP) ## the nightly batch: import INBOX (default data/inbox), reconcile LEGACY if given
	$(BIN)/bulk-rating nightly --inbox $(or $(INBOX),data/inbox) --db $(DB) $(AS_OF_FLAG) $(if $(LEGACY),--legacy $(LEGACY),)

sql: $(STAMP) ## run a read-only query on DB: make sql Q="SELECT ..."
	@test -n "$(Q)" || { echo 'usage: make sql Q="SELECT ..." [DB=file.duckdb]'; exit 2; }
	$(BIN)/bulk-rating sql "$(Q)" --db $(DB)

test: $(STAMP) ## fast tests (about three minutes)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP) ## only the slow tests (big data, kill loops)
	$(BIN)/python -m pytest -q -m slow; status=$$?; [ $$status -eq 5 ] && exit 0 || exit $$status

test-all: test test-slow ## every test, the slow ones too

bench: $(STAMP) ## import vs bare-DuckDB floor at 1M and 10M rows (SIZE=100M for the big one, RUNS=n)
	$(BIN)/python bench/bench.py $(if $(SIZE),--sizes $(SIZE),) $(if $(RUNS),--runs $(RUNS),)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

clean: ## remove the virtualenv and the default database
	rm -rf $(VENV) $(DB) $(DB).wal
