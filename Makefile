# Two set-up commands (see README):  make book  |  make test
# Both create .venv when it is missing and install what they need into it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# The CPU build of torch that pip finds on disk here; set TORCH=torch for the newest (CUDA) build.
TORCH  ?= torch==2.13.0
# Progress bars are for people in JupyterLab; the executed book does not need them.
# MPLBACKEND is unset: a kernel started with MPLBACKEND=Agg keeps its figures to itself (no image in the book).
BOOK_ENV := env -u MPLBACKEND LECTURE_AE_PROGRESS=0

.PHONY: book test venv clean-book release autograde feedback grades bench system-packages

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

$(VENV)/.bench: $(VENV)/.all
	$(PIP) install -e ".[book,grading,test,bench]"
	touch $@

venv: $(VENV)/.all

## make book: build the executed Jupyter Book into _build/html (warnings are errors)
# The chapters run first, one kernel per core (LECTURE_AE_BOOK_JOBS=n to choose), into the
# execution cache the build reads (book/_ext/parallel_execution.py).
book: $(VENV)/.book
	$(BOOK_ENV) $(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going

## make lab: the students' JupyterLab (lab/lab.py): the assignments released to a local exchange
## (lab/exchange), nbgrader's student tools only (Assignments tab: Fetch/Submit; Validate), in lab/work
## make formgrader: the instructor's JupyterLab in the course folder, every nbgrader tool, same exchange
.PHONY: lab formgrader
LAB_ARGS ?=
lab: $(VENV)/.all
	$(BIN)/python lab/lab.py $(LAB_ARGS)

formgrader: $(VENV)/.all
	$(BIN)/python lab/lab.py --instructor $(LAB_ARGS)

## make test: install everything the tests need and run the whole suite
# One worker per core and one more (TEST_JOBS=1 for a single process): the grading tests spend
# much of their time waiting on the hostile students' time limits (a sleeping submission uses
# no core); with one worker per core make test used 114% CPU of 200%. Measured with the third
# worker (after the kernel-leak fix, which cut the CPU time from 1508 to 893 s): 110%, 13.5 min;
# the extra worker was not measured on its own. A file's tests stay on one worker, so a
# notebook's cells run in order in one kernel.
# One BLAS/OpenMP thread per worker and kernel: with a worker per core, more threads only
# fight over the cores (a test or chapter then runs 10x slower).
TEST_JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
test: system-packages $(VENV)/.all
	$(BOOK_ENV) OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_JOBS) --dist loadfile --durations=30

## make system-packages: the Debian packages the tests need (run by `make test`)
# bubblewrap: the grading sandbox; chromium + chromium-driver: the browser tests of the book and JupyterLab.
# Installed with apt when missing and we are root; otherwise we stop with the one command to run.
SYSTEM_PACKAGES := bubblewrap:bwrap chromium:chromium chromium-driver:chromedriver
system-packages:
	@missing=""; for pc in $(SYSTEM_PACKAGES); do \
	  command -v "$${pc#*:}" >/dev/null 2>&1 || missing="$$missing $${pc%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "== installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	      || { echo "apt-get install$$missing failed"; exit 1; }; \
	  else \
	    echo "make test needs the system packages$$missing. Install them with:"; \
	    echo "    sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

clean-book:
	rm -rf _build

## make bench: speed against scikit-learn (not a test)
bench: $(VENV)/.bench
	$(BIN)/python -W ignore benchmarks/run_all.py

# ------------------------------------------------------------------------------------------
# Instructor: the nbgrader pipeline (configuration: nbgrader_config.py; data: grading/, git-ignored)
#   make release   [ASSIGNMENT=ps1_sparse_coding]  exercises/ from solutions/ (+ gradebook entries)
#   make autograde [ASSIGNMENT=...] [WORKERS=N] [SCHEDULER=tcp://HOST:8786] [ONLY_NEW=1]
#                                    every submission in grading/submitted/<student>/<assignment>/
#   make feedback  [ASSIGNMENT=...]  HTML feedback in grading/feedback/<student>/<assignment>/
#   make grades                      grading/grades.csv (one row per student and assignment)
# NBGRADER_DB_URL=postgresql://... selects a shared gradebook; NBGRADER_EXECUTE_TIMEOUT the cell timeout.
# nbgrader runs `alembic` (gradebook migrations) from PATH: put the venv first.
NBGRADER    := PATH="$(abspath $(BIN)):$$PATH" $(BIN)/nbgrader
ASSIGNMENT  ?=
ASSIGNMENTS  = $(if $(ASSIGNMENT),$(ASSIGNMENT),$(sort $(notdir $(wildcard solutions/ps*))))
SUBMITTED    = grading/submitted

release: $(VENV)/.all
	@set -e; for a in $(ASSIGNMENTS); do \
	  echo "== release $$a"; $(NBGRADER) generate_assignment "$$a" --force; done

# Every submission one task on Dask (lecture_ae/grading/coordinator.py): the notebook runs in a
# bubblewrap sandbox, the trusted grader sets the scores, only this process writes the gradebook.
# WORKERS=N worker processes (default: one per core); SCHEDULER=tcp://HOST:8786 an existing cluster;
# ONLY_NEW=1 skips submissions graded already (same checksum). Exits 1 when a submission failed.
WORKERS   ?=
SCHEDULER ?=
ONLY_NEW  ?=
autograde: $(VENV)/.all
	@status=0; for a in $(ASSIGNMENTS); do \
	  if ls -d $(SUBMITTED)/*/"$$a" >/dev/null 2>&1; then \
	    echo "== autograde $$a"; PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m lecture_ae.grading autograde "$$a" \
	      $(if $(WORKERS),--workers $(WORKERS)) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
	      $(if $(ONLY_NEW),--only-new) || status=1; \
	  else echo "== $$a: no submissions in $(SUBMITTED)/<student>/$$a"; fi; done; exit $$status

feedback: $(VENV)/.all
	@status=0; for a in $(ASSIGNMENTS); do \
	  if ls -d grading/autograded/*/"$$a" >/dev/null 2>&1; then \
	    echo "== feedback $$a"; $(NBGRADER) generate_feedback "$$a" || status=1; fi; done; exit $$status

grades: $(VENV)/.all
	$(NBGRADER) export
