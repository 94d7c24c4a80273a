# `make test` and `make demo` each create .venv on first use (idempotent: a stamp file records
# what was installed; edit setup.py and the next run reinstalls).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_run

.PHONY: venv test demo bench clean conformance

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

# Real Caffe2's own tests (torch 1.4.0 wheel) on the project; needs the py3.7 env of
# shared/caffe2_reference/tools/setup.sh (CAFFE2_PY37=path/to/python). Not part of `make test`.
conformance: $(STAMP)
	$(PY) conformance/caffe2_own_tests/run.py $(CONFORMANCE_ARGS)

clean:
	rm -rf $(DEMO_DIR) .pytest_cache
