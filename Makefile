# Two commands do everything on a fresh machine:
#   make demo   — run the main job with the shipped default model
#   make test   — run the test suite
# Both create/refresh the local virtual environment in $(VENV) first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.img2prog-installed
# The CPU build of PyTorch is enough for everything here; pin it so a fresh machine does not
# pull a multi-gigabyte CUDA build. Override with `make TORCH_SPEC=torch test` if you like.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= out/demo

.PHONY: demo test install lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)" || $(PIP) install -q "torch>=2.2"
	$(PIP) install -q -e ".[model,hf,cad,dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile -p no:cacheprovider tests

demo: $(STAMP)
	$(VENV)/bin/img2prog demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache
