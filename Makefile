# The quick start is two commands: `make demo` and `make test`. Both create the project's
# virtual environment (.venv) on first use and reinstall when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
INSTALLED := $(VENV)/.installed

.PHONY: demo test ui bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,dev]'
	touch $(INSTALLED)

## The main job on the embedded default (SQLite ledger and instance, bundled sample data).
demo: $(INSTALLED)
	$(VENV)/bin/tp demo

## The whole test suite.
test: $(INSTALLED)
	$(VENV)/bin/python -m pytest -n auto

## The Dagster UI (webserver and daemon) on http://127.0.0.1:3000 with the project's instance.
ui: $(INSTALLED)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/tp ui

## Every benchmark script in benchmarks/.
bench: $(INSTALLED)
	for script in benchmarks/*.py; do $(VENV)/bin/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .dagster_home data .pytest_cache .hypothesis
