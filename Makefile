# Two commands on a fresh machine: `make run` and `make test`. Both set up .venv from the lock file first.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# pip on some machines warns once per package about unusable local index folders: keep the log readable.
QUIET_PIP := 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CLASSIFIER := build/routing-classifier.pkl
# The LiteLLM proxy runs from its own venv: litellm[proxy] pins rich<14 and its own web stack.
LITELLM_VENV := .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed
# Node and the real OpenClaw (for the tests against it), pinned by sandbox/openclaw/*lock*, in a cache beside
# the project that every clone on the machine shares; the second run is instant (stamps hold the locks' hashes).
OMNI_CACHE ?= $(abspath $(CURDIR)/..)/.omni-cache
export OMNI_CACHE
# claude-agent-sdk and the Claude CLI it bundles, for the coder executor (requirements-claude.lock, hashes), in
# $(OMNI_CACHE)/claude-agent-sdk-<version>: ~390 MB that `make run` on the sandbox does not need.

.PHONY: setup openclaw classifier claude chromium run lint test test-fast bench lock clean

setup: $(STAMP) $(LITELLM_STAMP) $(CLASSIFIER)

# The routing classifier, trained from the repo's labelled set (deterministic; rebuilt when the data changes).
$(CLASSIFIER): $(STAMP) routing/data/train.jsonl routing/classifier.py
	$(PY) -m routing build

classifier: $(CLASSIFIER)

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(PY) -m pip install --disable-pip-version-check -q -r requirements.lock $(QUIET_PIP)
	touch $(STAMP)

$(LITELLM_STAMP): requirements-litellm.lock
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	LITELLM_LOCAL_MODEL_COST_MAP=True $(LITELLM_VENV)/bin/pip install --disable-pip-version-check -q -r requirements-litellm.lock $(QUIET_PIP)
	touch $(LITELLM_STAMP)

openclaw:
	$(PYTHON) sandbox/openclaw_install.py --cache $(OMNI_CACHE)

claude: $(STAMP)
	$(PY) -m mcp_servers.claude_sdk install

# Headless Chromium for the dashboard's browser tests: Debian's package, installed when missing (CI runs as root).
chromium:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 || { echo "make chromium: run as root, or: sudo apt-get install -y chromium" >&2; exit 1; }; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk; }

run: setup
	$(PY) supervisor.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# Everything: lint, the docstring examples, the unit tests and the slow ones (processes, trees, the real
# LiteLLM proxy and OpenClaw), on TEST_WORKERS pytest-xdist workers (0: in one process). The whole suite is bound
# by CPU (mostly the processes it starts), so one worker a core; tests sharing a costly fixture keep to one worker
# (xdist groups, tests/conftest.py). The 25 slowest tests are listed at the end: where the suite's time goes.
TEST_WORKERS ?= 2
test: lint openclaw claude chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

# Lint, the docstring examples and the unit tests: seconds, no OpenClaw install needed.
test-fast: lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

# Re-resolve requirements.in into requirements.lock and requirements-litellm.in into
# requirements-litellm.lock, each in a scratch venv (needs the package registry).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --disable-pip-version-check -q -r requirements.in $(QUIET_PIP)
	.venv-lock/bin/pip freeze --exclude-editable | sed '/^-e /d' > requirements.lock
	rm -rf .venv-lock
	rm -rf .venv-lock-litellm && $(PYTHON) -m venv .venv-lock-litellm
	LITELLM_LOCAL_MODEL_COST_MAP=True .venv-lock-litellm/bin/pip install --disable-pip-version-check -q -r requirements-litellm.in $(QUIET_PIP)
	.venv-lock-litellm/bin/pip freeze --exclude-editable | sed '/^-e /d' > requirements-litellm.lock
	rm -rf .venv-lock-litellm

clean:
	rm -rf $(VENV) $(LITELLM_VENV) .pytest_cache
