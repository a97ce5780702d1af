# Two commands on a fresh machine: `make run` and `make test`. Both set up .venv from the lock file first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test bench lock clean

setup: $(STAMP)

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pip install --disable-pip-version-check -q -r requirements.lock
	touch $(STAMP)

run: setup
	$(PY) supervisor.py $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

# Re-resolve requirements.in into requirements.lock in a scratch venv (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --disable-pip-version-check -q -r requirements.in
	.venv-lock/bin/pip freeze --exclude-editable | sed '/^-e /d' > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .pytest_cache
