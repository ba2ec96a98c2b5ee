# medcloud — every setup step lives here. Needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo serve test lint format unit integration services-test clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create the virtualenv and install medcloud with its dev tools

demo: $(STAMP) ## start the embedded demo: server, demo admin, simulated monitors
	$(BIN)/medcloud demo

serve: $(STAMP) ## start the embedded server on :8000
	$(BIN)/medcloud serve

lint: $(STAMP) ## ruff, ruff format --check, mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint ## lint, then the whole test suite (add MEDCLOUD_TEST_SERVICES=1 for the real services)
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
