# Two commands on a fresh machine with Python 3.11+ and Node 20: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=

.PHONY: setup demo test clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(PY) -m skyvault.demo $(if $(DATA),--data "$(DATA)")

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) node_modules .skyvault

.PHONY: bench
bench: setup
	$(PY) -m bench.run
