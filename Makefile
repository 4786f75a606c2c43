# Quick start: `make repro` (the whole pipeline) and `make test` (the test suite).
# Both create .venv with the pinned dependencies first if it is missing or stale.
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

export PATH := $(abspath $(VENV))/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
# Offline dataset mirror: used when present (same layout as data/raw/); otherwise the
# fetch stages download the canonical URLs. Override: make repro MLPAPERS_DATA_MIRROR=/path
MLPAPERS_DATA_MIRROR ?= $(if $(wildcard ../shared/datasets),../shared/datasets,)
export MLPAPERS_DATA_MIRROR

.PHONY: repro test verify venv clean-venv
venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

repro: $(STAMP)
	mlpapers check-params
	time dvc repro

# two pytest workers: the end-to-end DVC tests (one file, one worker) run beside the rest
TEST_WORKERS ?= 2
test: $(STAMP)
	python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

verify: $(STAMP)
	mlpapers verify

clean-venv:
	rm -rf $(VENV)
