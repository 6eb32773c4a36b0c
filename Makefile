# CMMS omnichannel notification dispatcher: the README's commands.
#
# Every target sets itself up: it finds Python >= 3.11, creates .venv and
# installs requirements-dev.txt, but only when the requirements files changed
# (the stamp .venv/.installed-<hash> carries a hash of their content), so a
# repeated `make test` goes straight to pytest.
#
#   make run                      the whole system on this machine (scripts/run_all.py)
#   make test                     the whole test suite (PYTEST_ARGS="-k router -x" to narrow it;
#                                 TEST_BROKER=rabbitmq: RabbitMQ as the tests' broker)
#   make test-fast                without the slow e2e, fault and bench tests
#   make bench                    benchmark scenarios (BENCH_ARGS=... for python -m bench)
#   make lint                     ruff
#   make venv                     only set up .venv
#   make clean / make distclean   caches / also .venv and var/ (the local database)

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
REQUIREMENTS := requirements.txt requirements-dev.txt
REQUIREMENTS_HASH := $(shell cat $(REQUIREMENTS) 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(REQUIREMENTS_HASH)

PYTEST_ARGS ?=
BENCH_ARGS ?=
RUN_ARGS ?=
FAST_MARKERS := not e2e and not fault and not bench

.PHONY: help venv run test test-fast bench lint check-test-services clean distclean

help:
	@echo "make run         start everything locally: Redis (if needed), migrations, demo users,"
	@echo "                 Telegram sandbox, Django admin, Celery worker + beat, Flower (Ctrl-C stops it)"
	@echo "make test        the whole test suite (PYTEST_ARGS=... passes options to pytest)"
	@echo "make test-fast   the suite without the e2e, fault and bench markers"
	@echo "make bench       the benchmark scenarios (BENCH_ARGS=... passes options to python -m bench)"
	@echo "make lint        ruff check"
	@echo "make venv        only create/update .venv"
	@echo "make clean       remove caches and test databases; make distclean also removes .venv and var/"

venv: $(STAMP)

# The stamp's name changes with the requirements' content, so this runs only
# on the first build or after a requirements change.
$(STAMP):
	@scripts/venv.sh "$(VENV)" "$@" requirements-dev.txt

run: $(STAMP)
	$(PY) scripts/run_all.py $(RUN_ARGS)

check-test-services: $(STAMP)
	@$(PY) scripts/check_services.py --redis --database --broker

test: check-test-services
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: check-test-services
	$(PY) -m pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

bench: check-test-services
	@if [ ! -f bench/__main__.py ]; then \
		echo "make bench: there is no bench/ package in this checkout yet (python -m bench needs bench/__main__.py)." >&2; \
		exit 2; \
	fi
	$(PY) -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache
	rm -f var/test_db.sqlite3* var/*.log var/dump.rdb

distclean: clean
	rm -rf $(VENV) var
