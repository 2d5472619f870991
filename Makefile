PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv lint format test demo clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# One style for the whole tree (settings in pyproject.toml): formatting and lint rules are checked, not fixed.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

# Rewrites the tree in the house style and applies ruff's safe fixes.
format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Two pytest processes: the trainer tests (in-process training on 8 host devices) get a fresh one, so that they do not
# inherit everything the rest of the suite loaded (torch, transformers, libtpu, compiled programs). pytest exits 5 when
# it collects no tests; that is not a failure of the suite.
PYTEST_RC = rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi
test: $(STAMP)
	$(PY) -m pytest -q tests --ignore=tests/trainers; $(PYTEST_RC); \
	$(PY) -m pytest -q tests/trainers; rc2=$$?; if [ $$rc2 -eq 5 ]; then rc2=0; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$rc2

# The main job on the embedded easy-VQA data: trains a small PaliGemma from scratch on this CPU, evaluates it on
# the full test split, then prints the accuracy and where the plots, logs and checkpoints are. Rerunning resumes.
DEMO_DIR ?= runs/easyvqa
demo: $(STAMP)
	$(PY) -m trainers.train --config configs/transfer/easyvqa.py --workdir $(DEMO_DIR)
	$(PY) -m tools.demo_report --workdir $(DEMO_DIR)

clean:
	rm -rf $(VENV)
