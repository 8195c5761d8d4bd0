# Two entry points for a fresh machine: `make run` (the main job) and `make test`.
# Both use .venv: `make run` installs the package with the `plot` extra only, `make test` adds
# the `test` extra (no PyTorch), each once (a marker per extra, redone when pyproject.toml
# changes). `make test-oracles` compares with live PyTorch in its own .venv-oracle.
VENV ?= .venv
ORACLE_VENV ?= .venv-oracle
PY := $(VENV)/bin/python
, := ,

# $(1): the venv, $(2): the extras to install the package with (editable)
define install
	test -x $(1)/bin/python || { python3 -m venv $(1) && $(1)/bin/python -m pip install -q --upgrade pip; }
	$(1)/bin/python -m pip install -q -e ".[$(2)]"
	touch $@
endef

$(VENV)/.installed-plot: pyproject.toml
	$(call install,$(VENV),plot)

$(VENV)/.installed-test: pyproject.toml
	$(call install,$(VENV),test)

$(VENV)/.installed-docs: pyproject.toml
	$(call install,$(VENV),docs)

$(VENV)/.installed-bench: pyproject.toml
	$(call install,$(VENV),bench)

$(ORACLE_VENV)/.installed: pyproject.toml
	$(call install,$(ORACLE_VENV),test$(,)oracle)


.PHONY: run test test-oracles lint bench docs
run: $(VENV)/.installed-plot
	$(PY) -m autodiffx train

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check autodiffx tests benchmarks
	$(VENV)/bin/ruff format --check autodiffx tests benchmarks
	$(PY) -m pytest -n 2 -m "not oracle and not docs"

# The tests marked `oracle` (see pyproject.toml), against torch==2.13.0.
test-oracles: $(ORACLE_VENV)/.installed
	$(ORACLE_VENV)/bin/python -m pytest -n 2 -m oracle

# The documentation site (docs/_build/html), built from scratch with warnings as errors, then
# opened in headless chromium by the tests marked `docs` (Debian's chromium, installed here if
# missing; the screenshots stay in docs/_build/).
docs: $(VENV)/.installed-docs
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	rm -rf docs/_build
	OPENBLAS_NUM_THREADS=1 $(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(PY) -m pytest -p no:xdist -m docs tests/test_docs_site.py

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check --fix autodiffx tests benchmarks
	$(VENV)/bin/ruff format autodiffx tests benchmarks

bench: $(VENV)/.installed-bench
	cd benchmarks && ../$(VENV)/bin/asv run --python=same --quick
