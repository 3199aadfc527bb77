# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make run   - create .venv if needed, install, start the viewer (demo study if no DIR=)
#   make test  - same set-up, then run every test
#   make lint  - ruff (lint only; configured in pyproject.toml)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DIR    ?=

.PHONY: run test install analyze bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) main.py $(DIR)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

lint: $(STAMP)
	$(PY) -m pip install --quiet "ruff>=0.6"
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/bench_inference.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
