# Two commands that work on a fresh machine:
#   make run   - create .venv, install, start the server with built-in defaults
#   make test  - create .venv, install with test deps, run the whole trial suite
#                (with Synapse in .venv-synapse for the interop tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test synapse postgresql bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

# "compat" editable mode puts the checkout on sys.path, which is how
# Twisted finds the dropins in twisted/plugins/ of an editable install.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e . --config-settings editable_mode=compat
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Synapse for the interop tests (tests/integration/synapse.py), in its own
# venv so its dependencies never mix with ours; installed once, then cached.
SYNAPSE_VENV := .venv-synapse
SYNAPSE_VERSION := 1.163.2
$(SYNAPSE_VENV)/.installed-$(SYNAPSE_VERSION):
	rm -rf $(SYNAPSE_VENV)
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install -q --upgrade pip
	$(SYNAPSE_VENV)/bin/pip install -q 'matrix-synapse==$(SYNAPSE_VERSION)'
	touch $@

synapse: $(SYNAPSE_VENV)/.installed-$(SYNAPSE_VERSION)

# PostgreSQL server binaries for the postgresql backend's tests
# (tests/postgresql.py starts a throw-away cluster with them): the system's
# package when initdb is neither on PATH nor in /usr/lib/postgresql/*/bin.
postgresql:
	@if command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; fi

run: install
	$(BIN)/twistd -n --pidfile= conduit $(ARGS)

test: install-test synapse postgresql
	$(BIN)/trial $(TRIAL_ARGS) tests

bench: install-test
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) _trial_temp build *.egg-info
