# Two commands that work on a fresh machine:
#   make run   - create .venv, install, start the server with built-in defaults
#   make test  - create .venv, install with test deps, run the whole trial suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test bench clean

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

run: install
	$(BIN)/twistd -n --pidfile= conduit $(ARGS)

test: install-test
	$(BIN)/trial $(TRIAL_ARGS) tests

bench: install-test
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) _trial_temp build *.egg-info
