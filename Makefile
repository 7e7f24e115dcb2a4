# ocscan developer entry points. `make test` sets up everything from nothing (as root on Debian).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBIAN_PACKAGES := docker-registry skopeo apache2-utils openssl
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest sysdeps venv demo bench lock clean

test: sysdeps venv lint typecheck pytest

# Debian packages the tests run for real: the registry server, skopeo, htpasswd, openssl, kubectl.
sysdeps:
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	command -v htpasswd >/dev/null || missing="$$missing apache2-utils"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v kubectl >/dev/null || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

venv: $(STAMP)

# Every package from requirements/dev.txt, pinned with hashes (make lock writes it from
# pyproject.toml), so a fresh machine installs exactly what was tested.
$(STAMP): pyproject.toml requirements/dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q pip==26.3
	$(BIN)/pip install -q --require-hashes -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

# Re-resolve requirements/dev.txt after a change of pins in pyproject.toml.
lock:
	test -x .venv-lock/bin/uv || ($(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install -q uv==0.13.9)
	.venv-lock/bin/uv pip compile pyproject.toml --extra dev --extra sandbox --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --no-header \
	  -o requirements/dev.txt

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: venv
	$(BIN)/mypy src

pytest: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/pytest -q -n 2 --durations=15

# One real scan cycle on the local sandbox; results in demo-output/.
demo: sysdeps venv
	bash scripts/demo.sh

# Discovery at 1k-10k pods and a real cycle against the peers' way; writes BENCHMARKS.md.
bench: sysdeps venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
