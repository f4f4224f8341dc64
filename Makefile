# `make demo` runs the named scenarios; `make test` runs ruff, mypy and the whole test suite.
# Both build .venv from nothing first, installing the pinned versions in constraints.txt.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint bench bench-peers clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,redis,cluster]'
	@# An editable install leaves our modules uncompiled, which a regular install would not:
	@# compile them once, so no run pays for it (PYTHONDONTWRITEBYTECODE would make every one).
	$(PY) -m compileall -q trio_saga faults
	touch $@

demo: $(VENV)/.installed
	$(PY) run.py scenarios --run

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/bench.py

# trio-saga against detangle 0.1.0 (a benchmark-only extra); the last line is one JSON object.
bench-peers: $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[peers]'
	$(PY) benchmarks/peers.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
