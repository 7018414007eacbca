# The two commands of the README: `make demo` (the main job) and `make test`. Both create the
# environment on first use from this project's own files.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-setup lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/omnifuse demo $(ARGS)

# System packages and downloads the tests need (browser, speech synthesis, real weights): one script each.
test-setup: $(STAMP)
	@for script in scripts/test-setup/*.sh; do [ -e "$$script" ] || continue; bash "$$script" || exit 1; done

test: $(STAMP) test-setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/python -m pytest -q $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
