# Two entry points that work on a fresh machine with only Python and pip.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU build of torch; override e.g. TORCH_SPEC='torch==2.13.0' or point pip at another index.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint venv clean

$(BIN)/internvideo2: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[all,dev]"
	@touch $@

venv: $(BIN)/internvideo2

demo: venv
	$(BIN)/internvideo2 demo $(ARGS)

test: venv
	$(BIN)/python -m pytest -q $(ARGS)

# style and the layer contracts (pyproject.toml: [tool.ruff], [tool.importlinter]); CI runs it before the tests
lint: venv
	$(BIN)/ruff check src tests benchmarks experiments
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs build *.egg-info
