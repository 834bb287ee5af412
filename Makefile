# One-command set-up: every target below creates .venv and installs the pinned set first.
# Re-running is fast: the install step only runs again when pyproject.toml or
# constraints.txt changes. `make test` and `make grade` also install the system tools the
# grading sandbox and the tests need (tools/system_tools.sh: bubblewrap, chromium,
# postgresql, from Debian's packages with apt-get, as root or with passwordless sudo);
# where that is not possible they say what is missing, and the tests that need it skip.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
export MPLBACKEND := Agg
# Matplotlib's font cache lists font files by absolute path; a cache shared in ~/.cache with
# another checkout whose venv is gone makes every figure warn on stderr. Keep it per venv.
export MPLCONFIGDIR := $(CURDIR)/$(VENV)/matplotlib
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help venv system-tools book test test-fast bench grade release publish lint clean

help:
	@echo "make book     build the executed book into _build/html"
	@echo "make test     run every test (builds the book and grades the sample submissions)"
	@echo "make bench    print speed ratios measured side by side (cnnlib vs torch, grading time)"
	@echo "make grade    autograde examples/submissions in a scratch course directory (WORKERS=N)"
	@echo "make release  regenerate assignments/ from solutions/ with nbgrader"
	@echo "make publish  student bundle (book, released notebooks, cnnlib wheel) in _build/publish, checked for leaks"
	@echo "make lint     ruff"
	@echo "make system-tools  install bubblewrap, chromium, postgresql with apt-get (make test does)"

venv: $(STAMP)

# bubblewrap: the sandbox every notebook is graded in; chromium: the browser test of the
# built book; postgresql: the parallel grading workers' shared gradebook. Checked on every
# run (fast), installed only when missing.
system-tools:
	@sh tools/system_tools.sh

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,grading,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cnnlib)" >/dev/null
	touch $(STAMP)

book: $(STAMP)
	$(PY) tools/build_book.py

# pytest-xdist: one worker per core, each test file on one worker (tests/conftest.py)
PYTEST_WORKERS ?= auto

test: $(STAMP) system-tools
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile

test-fast: $(STAMP) system-tools
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks

# make grade WORKERS=2: autograde with two worker processes sharing one gradebook
grade: $(STAMP) system-tools
	$(PY) tools/grade_samples.py $(if $(WORKERS),--workers $(WORKERS))

release: $(STAMP)
	$(PY) tools/release.py

publish: $(STAMP)
	$(PY) tools/publish.py

lint: $(STAMP)
	$(BIN)/ruff check cnnlib tests benchmarks tools nbgrader_config.py

clean:
	rm -rf _build .pytest_cache .hypothesis
