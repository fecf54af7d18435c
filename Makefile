# Two set-up commands (see README):  make book  |  make test
# Both create .venv when it is missing and install what they need into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# The CPU build of torch that pip finds on disk here; set TORCH=torch for the newest (CUDA) build.
TORCH  ?= torch==2.13.0
# Progress bars are for people in JupyterLab; the executed book does not need them.
BOOK_ENV := LECTURE_AE_PROGRESS=0 MPLBACKEND=Agg

.PHONY: book test venv clean-book release autograde feedback grades bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.book: pyproject.toml | $(BIN)/python
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[book]"
	touch $@

$(VENV)/.all: pyproject.toml | $(BIN)/python
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[book,grading,test]"
	touch $@ $(VENV)/.book

venv: $(VENV)/.all

## make book: build the executed Jupyter Book into _build/html (warnings are errors)
book: $(VENV)/.book
	$(BOOK_ENV) $(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going

## make test: install everything the tests need and run the whole suite
test: $(VENV)/.all
	$(BOOK_ENV) $(BIN)/python -m pytest

clean-book:
	rm -rf _build

## make bench: speed against scikit-learn (not a test)
bench: $(VENV)/.all
	$(BIN)/python benchmarks/run_all.py
