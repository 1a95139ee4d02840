# m2i: two commands for a fresh clone.
#   make demo   set up, then run the whole pipeline on the bundled demo clips
#   make test   set up, then run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
export NUMBA_CACHE_DIR ?= $(CURDIR)/.numba-cache

.PHONY: setup demo test system-deps lock

# PYTHONWARNINGS: setuptools warns on every editable install that a folder named like the
# package (ours, on purpose) may shadow it; the banner says nothing to a user of make.
# constraints.txt: the exact versions CI last passed with (`make lock` writes it from .venv), so
# that a release of any dependency cannot change what a fresh clone installs. torch is left out:
# the line above pins it, and the CPU or CUDA build is whichever the machine's pip picks.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q -c constraints.txt -e '.[test,pg]'
	touch $@

setup: $(VENV)/.installed

system-deps:
	bash scripts/system-deps.sh

# after upgrading .venv on purpose (and running the tests): pin what it holds
lock:
	@test -x $(PY) || { echo "make lock: no $(VENV) to read; run make setup first."; exit 1; }
	$(PY) -m pip freeze --exclude-editable > constraints.txt.new
	{ echo "# Exact versions for make setup (pip install -c). Written by make lock from .venv; torch is pinned in the Makefile."; \
	  grep -v '^torch==' constraints.txt.new; } > constraints.txt
	rm constraints.txt.new
	touch $(VENV)/.installed

demo: setup
	$(VENV)/bin/m2i run

test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc
