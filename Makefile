# medcloud — every setup step lives here. Needs only make and Python 3.11, 3.12 or 3.13.
# The newest supported interpreter on the PATH, unless given: make PYTHON=/path/to/python3.12
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c '$(SUPPORTED)' 2>/dev/null && { echo $$p; break; }; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo serve split-up split-down test screenshots tools deploy-tools lint format unit integration services-test clean

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

split-up: $(STAMP) tools ## every context as its own processes behind nginx on :8080 (local services)
	$(BIN)/medcloud split up

split-down: $(STAMP) ## stop everything `make split-up` started
	$(BIN)/medcloud split down

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

# The README's tour, which the suite runs, calls curl and jq; the split topology runs nginx;
# the dashboard's browser tests drive Debian's Chromium.
# RUNLEVEL=1 keeps the package from starting a system-wide nginx on port 80 as it installs.
TOOLS := curl jq nginx chromium
tools:
	@missing="$$(for t in $(TOOLS); do PATH="$$PATH:/usr/sbin" command -v $$t >/dev/null || echo $$t; done)"; \
	if [ -n "$$missing" ]; then \
	  { apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq $$missing; } || \
	  { echo "the tests need" $$missing "on the PATH: install them"; exit 1; }; fi

# The validators of deploy/ (Kubernetes schemas, yamllint, hadolint, cfn-lint, checkov), in a
# virtualenv of their own: checkov pins libraries at versions medcloud's own environment cannot take.
DEPLOY_VENV  ?= .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
$(DEPLOY_STAMP): deploy/tools.txt
	@test -n "$(PYTHON)" || { echo "medcloud needs Python 3.11, 3.12 or 3.13"; exit 1; }
	test -x $(DEPLOY_VENV)/bin/python || $(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/pip install --quiet -r deploy/tools.txt
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP) ## install the offline validators of deploy/ in .venv-deploy

test: lint tools deploy-tools ## lint, then the whole test suite (add MEDCLOUD_TEST_SERVICES=1 for the real services)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

screenshots: $(STAMP) tools ## refresh docs/screenshots from the browser tests (each page they check for accessibility)
	MEDCLOUD_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/browser

clean:
	rm -rf $(VENV) $(DEPLOY_VENV) var .mypy_cache .ruff_cache .pytest_cache
