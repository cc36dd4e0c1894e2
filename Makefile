# The two commands of the README. Each creates .venv when it is missing and installs torch
# 2.13.0 (CPU) before the project, so pip never pulls a CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.litzoo-installed

.PHONY: run test lint install bench

$(STAMP): pyproject.toml examples/plugin/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,render]'
	$(PY) -m pip install --quiet -e examples/plugin
	touch $(STAMP)

install: $(STAMP)

# Quickstart: an MLP on scikit-learn's embedded digits (no network), then its test accuracy.
run: $(STAMP)
	$(PY) cli.py fit --config configs/linear/quickstart.yaml
	$(PY) cli.py test --config configs/linear/quickstart.yaml --ckpt_path best

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/linear_recipes.py
	$(PY) bench/overhead.py
	$(PY) bench/rnn_lm.py
	$(PY) bench/ppo_vs_sb3.py
	$(PY) bench/ppo_pendulum.py
