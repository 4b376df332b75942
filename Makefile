# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test install install-test config-reference

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

# Installs, applies migrations, prints a first admin token (once), serves on [gateway] host:port.
run: install
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/flask --app wsgi auth bootstrap
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# Installs with the test extras and runs the whole suite (PostgreSQL and Redis
# too when LOCKGATE_TEST_DATABASE_URL / LOCKGATE_TEST_REDIS_URL are set).
test: install-test
	$(BIN)/python -m pytest

# Regenerates docs/configuration.md from the settings schema (tests/config/test_reference.py checks it).
config-reference: install
	$(BIN)/python -m app.core.config_reference > docs/configuration.md
