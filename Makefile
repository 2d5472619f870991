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

# pytest exits 5 when it collects no tests; that is not a failure of the suite.
test: $(STAMP)
	$(PY) -m pytest -q tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The main job on the embedded easy-VQA data: trains a small PaliGemma from scratch on this CPU, evaluates it on
# the full test split, then prints the accuracy and where the plots, logs and checkpoints are. Rerunning resumes.
DEMO_DIR ?= runs/easyvqa
demo: $(STAMP)
	$(PY) -m trainers.train --config configs/transfer/easyvqa.py --workdir $(DEMO_DIR)
	$(PY) -m tools.demo_report --workdir $(DEMO_DIR)

clean:
	rm -rf $(VENV)
