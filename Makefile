# The two commands a newcomer runs on a fresh machine:
#   make demo   builds a small dataset from the built-in demo character into demo-dataset/
#   make test   runs the linters (make lint), then the test suite
# Both install what they need first (system EGL/Mesa, a .venv with the package).
.PHONY: demo test lint bench setup setup-test

demo: setup
	.venv/bin/mmdsynth demo demo-dataset

test: lint
	.venv/bin/python -m pytest -q

lint: setup-test
	.venv/bin/ruff check .
	.venv/bin/mypy

bench: setup-test
	.venv/bin/mmdsynth bench

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test
