# Set-up and the two commands of the README. Each target creates or reuses .venv and installs
# what it needs (Ray included, so the tests cover --ray); torch is pinned to 2.13.0 here (the CPU build on this machine kind) so an
# install never pulls a multi-GB CUDA build. pyproject.toml stays open to other versions.
PYTHON ?= python3
VENV ?= .venv
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.lab-installed
ARGS ?=

.PHONY: ablate test setup lint clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH_PIN)"
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH_PIN)" -e ".[dev,ray]"
	touch $(STAMP)

# The main job: baseline + every step, cumulatively, on the default preset; writes reports/<date>-<preset>/.
ablate: $(STAMP)
	$(VENV)/bin/python -m lab.ablate --all $(ARGS)

# The test suite (slow end-to-end tests excluded; `make test ARGS="-m slow"` runs them) and lint.
test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)
	$(VENV)/bin/ruff check .

clean-cache:
	rm -rf .pytest-lab-cache
