# One-command set-up: every target below creates .venv and installs the pinned set first.
# Re-running is fast: the install step only runs again when pyproject.toml or
# constraints.txt changes.

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

.PHONY: help venv book test test-fast bench grade release publish lint clean

help:
	@echo "make book     build the executed book into _build/html"
	@echo "make test     run every test (builds the book and grades the sample submissions)"
	@echo "make bench    print speed ratios measured side by side (cnnlib vs torch, grading time)"
	@echo "make grade    autograde examples/submissions in a scratch course directory (WORKERS=N)"
	@echo "make release  regenerate assignments/ from solutions/ with nbgrader"
	@echo "make publish  student bundle (book, released notebooks, cnnlib wheel) in _build/publish, checked for leaks"
	@echo "make lint     ruff"

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[book,grading,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (cnnlib)" >/dev/null
	touch $(STAMP)

book: $(STAMP)
	$(PY) tools/build_book.py

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)
	$(PY) -m benchmarks

# make grade WORKERS=2: autograde with two worker processes sharing one gradebook
grade: $(STAMP)
	$(PY) tools/grade_samples.py $(if $(WORKERS),--workers $(WORKERS))

release: $(STAMP)
	$(PY) tools/release.py

publish: $(STAMP)
	$(PY) tools/publish.py

lint: $(STAMP)
	$(BIN)/ruff check cnnlib tests benchmarks tools nbgrader_config.py

clean:
	rm -rf _build .pytest_cache .hypothesis
