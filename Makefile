# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need in .venv.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint bench install clean lock

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/arkindex-git-import demo

lint: $(BIN)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pre-commit run --all-files --show-diff-on-failure

# Tests start the tool in many child processes: compile its modules once (PYTHONDONTWRITEBYTECODE,
# when set, would have each child compile them again).
test: lint
	$(BIN)/python -m compileall -q git_import
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python bench/run.py

# The image's dependencies, pinned with hashes (the Dockerfile installs exactly these); run it after a
# change to pyproject.toml's dependencies. A test checks that the two agree.
lock: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
