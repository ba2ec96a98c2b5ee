# medcloud — every setup step lives here. Needs only make and Python 3.11, 3.12 or 3.13.
# The newest supported interpreter on the PATH, unless given: make PYTHON=/path/to/python3.12
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c '$(SUPPORTED)' 2>/dev/null && { echo $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo serve test tools lint format unit integration services-test clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" || { echo "medcloud needs Python 3.11, 3.12 or 3.13 and found none:" \
	  "install one (Debian/Ubuntu: apt-get install python3 python3-venv) or name it with" \
	  "make PYTHON=/path/to/python3"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## create the virtualenv and install medcloud with its dev tools

demo: $(STAMP) ## start the embedded demo: server, demo admin, simulated monitors
	$(BIN)/medcloud demo

serve: $(STAMP) ## start the embedded server on :8000
	$(BIN)/medcloud serve

lint: $(STAMP) ## ruff, ruff format --check, mypy --strict, duplicate code (pylint R0801)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src tests bench
	$(BIN)/pylint src/medcloud

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Three workers on two cores: most of a test's time is spent waiting on a server, a broker or
# an eventual condition, so a third worker fills the cores the other two leave idle.
TEST_WORKERS ?= 3

# The README's tour, which the suite runs, calls curl and jq.
TOOLS := curl jq
tools:
	@missing="$$(for t in $(TOOLS); do command -v $$t >/dev/null || echo $$t; done)"; \
	if [ -n "$$missing" ]; then \
	  { apt-get update -qq && apt-get install -y -qq $$missing; } || \
	  { echo "the tests need" $$missing "on the PATH: install them"; exit 1; }; fi

test: lint tools ## lint, then the whole test suite (add MEDCLOUD_TEST_SERVICES=1 for the real services)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
