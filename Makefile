# Every routine task in one place; each target runs setup first (it is idempotent).
PY := .venv/bin/python

.PHONY: setup run test unit lint format bench
setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/qmtl up

test: setup
	$(PY) -m pytest -n 4 --dist loadfile

unit: setup
	$(PY) -m pytest -m "not integration and not e2e"

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	$(PY) benchmarks/run_all.py

.PHONY: monitoring
# Regenerate alert_rules.yml, recording_rules.yml, dashboards/ and the packaged bundle.
monitoring: setup
	$(PY) -m qmtl.monitoring
	$(PY) scripts/gen_docs_reference.py

.PHONY: docs
# Regenerate the reference pages and build the documentation site into site/.
docs: setup
	$(PY) scripts/gen_docs_reference.py
	.venv/bin/mkdocs build --strict
