# m2i: two commands for a fresh clone.
#   make demo   set up, then run the whole pipeline on the bundled demo clips
#   make test   set up, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: setup demo test system-deps

# PYTHONWARNINGS: setuptools warns on every editable install that a folder named like the
# package (ours, on purpose) may shadow it; the banner says nothing to a user of make.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -e '.[test,pg]'
	touch $@

setup: $(VENV)/.installed

system-deps:
	bash scripts/system-deps.sh

demo: setup
	$(VENV)/bin/m2i run

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc
