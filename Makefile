PYTHON ?= python3.11
# glibc's malloc with transparent huge pages: XLA's large CPU buffers page-fault 512x less (paligemma/host_memory.py).
# The CLIs re-execute themselves with it when it is missing; set here, they need not.
export GLIBC_TUNABLES ?= glibc.malloc.hugetlb=1
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

# Two pytest processes, side by side: the suite is mostly XLA compiles, which use one core each, so two processes
# finish in about half the time on two cores. The trainer and config tests (in-process training and mock runs on 8 host
# devices) run in the second one, which does not inherit what the rest of the suite loaded (torch, transformers,
# libtpu); its output follows the first one's. pytest exits 5 when it collects no tests: not a failure of the suite.
PYTEST_OK = if [ $$1 -eq 5 ]; then echo "no tests collected"; return 0; fi; return $$1
test: $(STAMP)
	@log=$$(mktemp); ok() { $(PYTEST_OK); }; \
	$(PY) -m pytest -q -p no:cacheprovider tests/trainers tests/configs > $$log 2>&1 & second=$$!; \
	$(PY) -m pytest -q tests --ignore=tests/trainers --ignore=tests/configs; ok $$?; rc=$$?; \
	wait $$second; ok $$?; rc2=$$?; \
	echo "--- tests/trainers tests/configs ---"; cat $$log; rm -f $$log; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$rc2

# The main job on the embedded easy-VQA data: trains a small PaliGemma from scratch on this CPU, evaluates it on
# the full test split, then prints the accuracy and where the plots, logs and checkpoints are. Rerunning resumes.
DEMO_DIR ?= runs/easyvqa
demo: $(STAMP)
	$(PY) -m trainers.train --config configs/transfer/easyvqa.py --workdir $(DEMO_DIR)
	$(PY) -m tools.demo_report --workdir $(DEMO_DIR)

clean:
	rm -rf $(VENV)
