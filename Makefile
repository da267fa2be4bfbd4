# Two commands on a bare machine with Python 3.11+:
#   make run    set everything up, load demo data, print an admin login, serve on :8000
#   make test   run the test suite (embedded SQLite; set DATABASE_URL/CELERY_BROKER_URL
#               for PostgreSQL and Redis, as CI does)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run setup test lint typecheck check worker beat bench migrate clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements/base.txt requirements/local.txt
	$(BIN)/python -m pip install --quiet -r requirements/local.txt
	@touch $@

setup: $(VENV)/.installed

migrate: setup
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py quickstart --base-url http://$(HOST):$(PORT)
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

test: setup
	$(BIN)/python -m pytest -q

# What CI runs (.ci/run), in the same order: lint (with the import contract),
# types, then the tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/lint-imports

typecheck: setup
	$(BIN)/mypy apps cdp

check: lint typecheck test

# The package defaults to production settings (cdp/__init__.py): name the local ones.
worker: setup
	DJANGO_SETTINGS_MODULE=cdp.settings.local $(BIN)/celery -A cdp worker -l info

beat: setup
	DJANGO_SETTINGS_MODULE=cdp.settings.local $(BIN)/celery -A cdp beat -l info

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var db.sqlite3 db.sqlite3-wal db.sqlite3-shm staticfiles
