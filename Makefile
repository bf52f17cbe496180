# labkit: `make lab` runs the whole lab headless; `make test` runs the test suite.
# Both set up what they need first: a .venv with the package and its extras, and the
# system tools (apt-get when missing and permitted; otherwise the exact command to run).

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
PROFILE  ?= quick
STAMP    := $(VENV)/.labkit-installed
# Keep google-auth from probing the GCE metadata server (design §10).
export NO_GCE_CHECK := true
export GCE_METADATA_HOST := 127.0.0.1:9
export GCE_METADATA_IP := 127.0.0.1:9

LAB_TOOLS  := nginx:nginx ab:apache2-utils
TEST_TOOLS := sshd:openssh-server chromium:chromium
# `labkit grade` runs each submission's kernel in a bubblewrap sandbox (labkit/grading/sandbox.py)
GRADE_TOOLS := bwrap:bubblewrap
# bench only: hey and wrk, the independent HTTP clients bench/bench_testers.py cross-checks ab with
BENCH_TOOLS := hey:hey wrk:wrk

.PHONY: setup setup-test lab test test-fast jupyter release grade dashboard bench clean

# ensure(bin:package ...): install the Debian packages whose binaries are missing.
define ensure
	@missing=""; for pair in $(1); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || [ -x /usr/bin/$$bin ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "labkit needs:$$missing (no apt-get here: install them with your package manager)" >&2; exit 1; \
	  elif [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  elif sudo -n true 2>/dev/null; then \
	    echo "installing$$missing with sudo apt-get"; \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "labkit needs:$$missing. Run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi
endef

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "labkit needs Python >= 3.11 (set PYTHON=python3.11 or newer)")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[all]'
	@# rfc3987-syntax (jsonschema's optional IRI format checker, pulled in through jupyter-events) compiles
	@# 39 grammars whenever nbformat is imported: 1.1 of nbformat's 1.3 s import, in every papermill,
	@# nbgrader and kernel-driving process. Nothing here validates IRIs; jsonschema works without it.
	@$(BIN)/python -m pip uninstall -y -q rfc3987-syntax 2>/dev/null || true
	@touch $@

setup: $(STAMP)
	$(call ensure,$(LAB_TOOLS))

setup-test: setup
	$(call ensure,$(TEST_TOOLS) $(GRADE_TOOLS))

lab: setup
	$(BIN)/labkit lab --profile $(PROFILE)

# The suite runs on TEST_JOBS pytest-xdist workers (the cores + 1, at most 5: a test often waits on a
# lab, a kernel or a subprocess, so one more worker than cores fills that time), a module per worker
# (--dist loadscope: module fixtures run once); the session's tiny lab and release are built once
# for all workers (tests/support/once.py). Tests marked `serial` (they assert a speed or a CPU
# share another test's load would disturb) then run alone.
# Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: pytest then rewrites each test
# module's asserts once, not in every worker and phase (about 5 s of CPU a process here).
TEST_JOBS ?= $(shell n=$$(( $$(nproc 2>/dev/null || echo 2) + 1 )); [ $$n -gt 5 ] && n=5; echo $$n)
PYTEST    := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -p no:cacheprovider
test: setup-test
	$(PYTEST) -n $(TEST_JOBS) --dist loadscope -m "not serial" --durations=30
	$(PYTEST) -m serial --durations=10

# Before every commit: everything that needs no nginx, ab, sshd, browser or Jupyter kernel
# (markers set from the fixtures a test uses: tests/support/markers.py). LABKIT_TEST_FAST=1
# fails a selected test that starts one of those programs anyway. The tools are still installed:
# `labkit doctor` asks their versions, and grading's tests run bubblewrap (fast, no kernel).
test-fast: setup
	$(call ensure,$(GRADE_TOOLS))
	LABKIT_TEST_FAST=1 $(PYTEST) -n $(TEST_JOBS) --dist loadscope -m "not (nginx or ab or sshd or browser or kernel)"

jupyter: setup
	$(BIN)/jupyter lab notebooks/

release: setup
	$(BIN)/labkit release --out release

# Grading needs neither nginx nor ab: the Python environment and bubblewrap (its sandbox).
SUBMITTED ?= submitted
JOBS ?=
grade: $(STAMP)
	$(call ensure,$(GRADE_TOOLS))
	$(BIN)/labkit grade $(SUBMITTED) --out grading $(if $(JOBS),--jobs $(JOBS))

dashboard: setup
	$(BIN)/labkit dashboard --port 8866

bench: setup
	$(call ensure,$(BENCH_TOOLS))
	$(BIN)/python bench/run_all.py

clean:
	$(BIN)/labkit down || true
	rm -rf reports release grading
