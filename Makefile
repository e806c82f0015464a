# Two commands on a fresh machine with Python 3.11+ and Node 20: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# checkov lives in a venv of its own: its pinned bc-python-hcl2 replaces python-hcl2, which .venv needs.
CHECKOV_VENV ?= .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
DATA ?=

.PHONY: setup demo test stress fuzz clean

setup: $(VENV)/.installed node_modules/.installed $(CHECKOV_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_VENV)/.installed: infra/checkov/requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r infra/checkov/requirements.txt
	touch $@

demo: setup
	$(PY) -m skyvault.demo $(if $(DATA),--data "$(DATA)")

test: setup test-tools
	$(PY) -m pytest -q

# Debian's zsh, for the test of the zsh completion script (skipped, saying so, where it cannot be installed).
TEST_PACKAGES := zsh=5.9-4+b15
.PHONY: test-tools
test-tools:
	@command -v zsh >/dev/null || (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_PACKAGES) >/dev/null)) || \
		echo "zsh could not be installed: the zsh completion test is skipped"

# The long profile of the model-based retention stress test (make test runs its short one).
stress: setup
	HYPOTHESIS_PROFILE=stress $(PY) -m pytest -q tests/unit/test_retention_stress.py

# The long profile of the fuzz tests of every parser of outside input (make test runs the short one).
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest -q tests/fuzz

# The function app's deployment zip (infra/package.py), for `az functionapp deployment source config-zip`.
.PHONY: package
package: setup
	$(PY) -m infra.package dist/skyvault-functions.zip

# checkov's built-in checks and ours (infra/checkov/checks) on both deployment trees.
.PHONY: infra-check
infra-check: setup
	$(CHECKOV) -d infra/bicep --framework bicep --external-checks-dir infra/checkov/checks --quiet --compact --skip-download
	$(CHECKOV) -d infra/terraform --framework terraform --external-checks-dir infra/checkov/checks --quiet --compact --skip-download

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .skyvault dist

# The peers the benchmark compares with (rclone carries restic to Azurite): Debian's packages, pinned to the
# versions the README reports.
BENCH_PACKAGES := restic=0.14.0-1+b5 borgbackup=1.2.4-1 rclone=1.60.1+dfsg-2+b5

.PHONY: bench bench-tools
bench-tools:
	@command -v restic >/dev/null && command -v borg >/dev/null && command -v rclone >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PACKAGES))

bench: setup bench-tools
	$(PY) -m bench.run

# Eight agents backing up at once into shared and separate vaults of one local stack (bench/load.py);
# ARGS=--ingest-batch 1 --size-per-agent 256M puts thousands of messages in flight.
.PHONY: load
load: setup
	$(PY) -m bench.load $(ARGS)
