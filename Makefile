# gencourse: `make lab` to learn, `make test` to check everything. See README.md.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(wildcard notebooks/[0-9][0-9]_*.ipynb)
# Two notebooks run side by side on two cores: one torch thread each.
PARALLEL_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 GENCOURSE_PROGRESS=0
# The oldest PyTorch the course is tested with (make test-compat; the newest is what make test installs).
COMPAT_VENV  := .venv-compat
COMPAT_TORCH ?= torch==2.9.1 torchvision==0.24.1

.PHONY: lab test unit nbval student student-run browser browser-deps book book-test test-compat notebooks recipes bench bench-mnist clean help

help:
	@echo "make lab        set up .venv and open the course in JupyterLab"
	@echo "make test       set up .venv and run every check (unit tests, lesson conventions, nbval, student edition,"
	@echo "                JupyterLab and the website in headless Chromium)"
	@echo "make book       build the course's website from the executed lessons into build/book/ (open build/book/index.html)"
	@echo "make test-compat  the unit tests and nbval again in .venv-compat with an older PyTorch ($(COMPAT_TORCH); downloads several GB)"
	@echo "make student    write the student edition (exercises unsolved) to build/student/"
	@echo "make notebooks  re-execute every lesson from notebooks/src/ (LESSONS='03 05' for some)"
	@echo "make recipes    retrain the recipes (eight digits families, lesson 10's two-stage models, their variants, lesson 09's text GPT) and rewrite their checkpoints"
	@echo "make bench      time every lesson and print its headline figures"
	@echo "make bench-mnist  train every family's 28x28 model a few CPU minutes on the offline MNIST stand-in and score it"
	@echo "                (FAMILIES='vae gan' for some; grids and results.md in build/bench-mnist/)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(PY) -m jupyter lab --notebook-dir=notebooks $$( [ -z "$$DISPLAY" ] && [ "$$(uname)" != Darwin ] && echo --no-browser ) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: $(STAMP) unit nbval student-run browser book book-test

unit: $(STAMP)
	$(PARALLEL_ENV) $(PY) -m pytest tests -q -n 2 --dist loadgroup -m "not student and not browser and not book" ; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

nbval: $(STAMP)
	@if [ -z "$(NOTEBOOKS)" ]; then echo "no notebooks to validate"; else \
	$(PARALLEL_ENV) $(PY) -m pytest -q -p no:randomly --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -n 2 --dist loadscope $(NOTEBOOKS) ; rc=$$?; \
	  [ $$rc -eq 0 ] || [ $$rc -eq 5 ]; fi

student: $(STAMP)
	$(PY) -m gencourse.student notebooks build/student

student-run: $(STAMP)
	$(PARALLEL_ENV) $(PY) -m pytest tests -q -n 2 -m student ; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# The browser test uses Debian's chromium (never `playwright install`); as root we install it if missing.
browser-deps:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed: the browser test will be skipped (apt-get install chromium)"

browser: $(STAMP) browser-deps
	$(PY) -m pytest tests/test_browser.py -q -m browser -rs ; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

# The website: the committed, executed lessons (never re-executed), the guides and a home page made from the
# README's lesson table, with MathJax bundled, into build/book/. Fails on any Sphinx warning or broken link.
book: $(STAMP)
	$(PY) -m gencourse.book

# The site's checks: links and anchors, no remote assets, launch targets, and a lesson in headless Chromium
# with the network off (math typeset, figures loaded).
book-test: $(STAMP) browser-deps
	$(PY) -m pytest tests/test_book.py -q -m book -rs

# Not in `make test`: a second venv with an older PyTorch (CUDA wheels from PyPI: several GB), then the unit
# tests and nbval there. The README states the range, from COMPAT_TORCH to what `make test` installs.
test-compat:
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install -q $(COMPAT_TORCH)
	$(MAKE) --no-print-directory $(COMPAT_VENV)/.installed VENV=$(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -c "import sys, torch, torchvision; \
	  want = dict(s.split('==') for s in sys.argv[1:]); \
	  got = {'torch': torch.__version__.split('+')[0], 'torchvision': torchvision.__version__.split('+')[0]}; \
	  print('test-compat: torch', got['torch'], 'torchvision', got['torchvision']); \
	  sys.exit(0 if all(got[k] == v for k, v in want.items()) else f'test-compat: expected {want}, installed {got}')" $(COMPAT_TORCH)
	$(MAKE) --no-print-directory unit nbval VENV=$(COMPAT_VENV)

notebooks: $(STAMP)
	$(PY) -m gencourse.authoring $(LESSONS)

# Every recipe on the training seeds 0, 1 and 2 (RECIPES='vae gan' for some). The digits recipes: one process per
# seed with one torch thread each, so the CPU seconds each checkpoint records are one core's work whatever else
# runs. Lesson 09's text GPT (gpt_text): its seeds one after another, each with both cores (two threads), the
# budget of at most 5 minutes per seed that its lesson states and prints.
DIGITS_RECIPES = $(filter-out gpt_text,$(RECIPES))
recipes: $(STAMP)
	@if [ -z "$(RECIPES)" ] || [ -n "$(DIGITS_RECIPES)" ]; then \
	  pids=""; for s in 0 1 2; do $(PARALLEL_ENV) $(PY) -m gencourse.recipes $(or $(DIGITS_RECIPES),--digits) --seeds $$s & pids="$$pids $$!"; done; \
	  for p in $$pids; do wait $$p || exit 1; done; fi
	@if [ -z "$(RECIPES)" ] || [ -n "$(filter gpt_text,$(RECIPES))" ]; then \
	  OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 GENCOURSE_PROGRESS=0 $(PY) -m gencourse.recipes gpt_text; fi

bench: $(STAMP)
	$(PY) -m gencourse.bench

# The MNIST stand-in (../shared/data/mnist/, the official test files) on this CPU: not MNIST's figures.
bench-mnist: $(STAMP)
	GENCOURSE_PROGRESS=0 $(PY) -m gencourse.bench_mnist $(FAMILIES)

clean:
	rm -rf build .pytest_cache
