# The two commands: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# sae-lens is a test oracle only: it lives in its own venv so it never changes our dependencies.
ORACLE ?= .venv-oracle
ORACLE_STAMP := $(ORACLE)/.installed
# circuit-tracer (attribution-graph oracle, tests/test_circuit_oracle.py) pins transformers 4.x: its own venv
# (~1.6 GB, mostly CPU torch; ~2.5 min to install here), run by that test in a subprocess.
CIRCUIT ?= .venv-circuit
CIRCUIT_STAMP := $(CIRCUIT)/.installed
# SAEDashboard, a bench oracle only (bench/saedashboard.py): its own venv, never part of `make test`;
# pip brings torch with CUDA wheels (~6.5 GB), and it needs pyarrow<20 beside numpy 1.x.
SAEDASHBOARD ?= .venv-saedashboard
SAEDASHBOARD_STAMP := $(SAEDASHBOARD)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install oracle circuit-oracle saedashboard-oracle demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	@# Browser tests drive Debian's Chromium (never `playwright install`); skipped where it is absent.
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -q && apt-get install -y -q chromium) || echo "chromium not installed: browser tests will be skipped"; \
	fi
	touch $(STAMP)

oracle: $(ORACLE_STAMP)

$(ORACLE_STAMP):
	test -x $(ORACLE)/bin/python || $(PYTHON) -m venv $(ORACLE)
	$(ORACLE)/bin/pip install -q torch==2.13.0
	$(ORACLE)/bin/pip install -q sae-lens==6.54.12 pytest
	touch $(ORACLE_STAMP)

circuit-oracle: $(CIRCUIT_STAMP)

$(CIRCUIT_STAMP):
	test -x $(CIRCUIT)/bin/python || $(PYTHON) -m venv $(CIRCUIT)
	$(CIRCUIT)/bin/pip install -q torch==2.13.0
	$(CIRCUIT)/bin/pip install -q circuit-tracer==0.5.0
	touch $(CIRCUIT_STAMP)

saedashboard-oracle: install $(SAEDASHBOARD_STAMP)
	$(PY) bench/saedashboard.py

$(SAEDASHBOARD_STAMP):
	test -x $(SAEDASHBOARD)/bin/python || $(PYTHON) -m venv $(SAEDASHBOARD)
	$(SAEDASHBOARD)/bin/pip install -q sae-dashboard==0.8.0 'pyarrow<20' 'numpy<2'
	touch $(SAEDASHBOARD_STAMP)

demo: install
	$(VENV)/bin/latentpedia demo

test: install oracle circuit-oracle
	PYTHONPATH=. $(ORACLE)/bin/python -m pytest --noconftest -p no:cacheprovider -q tests/test_sources_oracle.py tests/test_train_oracle.py
	$(PY) -m pytest -q --durations=30

test-fast: install
	$(PY) -m pytest -q -m "not slow"

bench: install
	$(PY) bench/p1_build_overhead.py

clean:
	rm -rf $(VENV) $(ORACLE) $(CIRCUIT) $(SAEDASHBOARD) .pytest_cache .data
