# Two entry points for a fresh machine: `make run` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

.PHONY: run test lint bench
run: $(VENV)/.installed
	$(PY) -m autodiffx train

test: $(VENV)/.installed
	$(VENV)/bin/ruff check autodiffx tests benchmarks
	$(VENV)/bin/ruff format --check autodiffx tests benchmarks
	$(PY) -m pytest -n 2

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix autodiffx tests benchmarks
	$(VENV)/bin/ruff format autodiffx tests benchmarks

bench: $(VENV)/.installed
	cd benchmarks && ../$(VENV)/bin/asv run --python=same --quick
