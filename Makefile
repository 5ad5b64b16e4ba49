# The two commands a newcomer runs on a fresh machine:
#   make demo   builds a small dataset from the built-in demo character into demo-dataset/
#   make test   runs the test suite
# Both install what they need first (system EGL/Mesa, a .venv with the package).
.PHONY: demo test bench setup setup-test

demo: setup
	.venv/bin/mmdsynth demo demo-dataset

test: setup-test
	.venv/bin/python -m pytest -q

bench: setup-test
	.venv/bin/mmdsynth bench

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test
