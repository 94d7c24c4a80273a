# `make test` and `make demo` each create .venv on first use (idempotent: a stamp file records
# what was installed; edit setup.py and the next run reinstalls).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_run

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# pinned first: an unpinned torch would pull several GB of CUDA wheels
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) tools/demo.py --workdir $(DEMO_DIR)

bench: $(STAMP)
	$(PY) benchmarks/runtime_overhead.py
	$(PY) benchmarks/data_pipeline.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
