# The two set-up commands of the README: `make demo` and `make test`.
# Each creates the virtualenv and installs the project on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean kafka-start kafka-stop

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/trackbone demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/trackbone bench --json

kafka-start: $(STAMP)
	$(BIN)/trackbone kafka start

kafka-stop: $(STAMP)
	$(BIN)/trackbone kafka stop

clean:
	-$(BIN)/trackbone kafka stop
	rm -rf .trackbone $(VENV)
