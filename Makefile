# vqgen: the two commands are `make demo` and `make test`; both set up everything they need first.
PYTHON ?= python3
VENV ?= .venv
WORKDIR ?= runs/demo
PRIOR ?= maskgit
TEST_WORKERS ?= 2
TOKENIZER ?= fsq
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
PY := $(VENV)/bin/python

.PHONY: setup data demo test benchmark clean

setup: $(VENV)/.installed

# Virtual environment with the pinned CPU stack (requirements.txt, constrained by requirements-lock.txt).
$(VENV)/.installed: requirements.txt requirements-lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Fashion-MNIST from the Debian package dataset-fashion-mnist (the embedded default; no network at run time).
data:
	@if [ -f "$(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz" ]; then exit 0; fi; \
	echo "Fashion-MNIST not found in $(FASHION_MNIST_DIR): installing the Debian package dataset-fashion-mnist"; \
	SUDO=""; if [ "$$(id -u)" != 0 ]; then SUDO="sudo"; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "ERROR: apt-get is not available. Put the four Fashion-MNIST IDX files in a folder and run" \
	       "with FASHION_MNIST_DIR=/that/folder (and VQGEN_FASHION_MNIST_DIR=/that/folder)."; exit 1; fi; \
	( $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq dataset-fashion-mnist ) \
	  || { echo "ERROR: could not install dataset-fashion-mnist (needs root or sudo and the Debian archive)." \
	            "Install it by hand: apt-get install dataset-fashion-mnist"; exit 1; }

demo: setup data
	$(PY) -m vqgen.demo --workdir=$(WORKDIR) --prior=$(PRIOR) --tokenizer=$(TOKENIZER)

# The suite on TEST_WORKERS processes (pytest-xdist), whole files per worker so module fixtures are built once.
test: setup data
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile

benchmark: setup data
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/sampling.py

clean:
	rm -rf $(VENV) runs .pytest_cache
