# k8s-lab: on a fresh machine, `make lab` then `make test`. Every target is safe to run again.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
LAB := $(VENV)/bin/lab
# pytest options for the notebooks: --nbval-lax checks only cells tagged nbval-check-output
# (cluster output such as pod names and ages differs run to run); use NBVAL=--nbval for all cells.
NBVAL ?= --nbval-lax
NBVAL_SANITIZE := tests/nbval_sanitize.cfg
RUN_DIR := runs/$(shell date -u +%Y%m%dT%H%M%SZ)
# The notebooks name their cluster in a parameter: with LAB_CLUSTER (a second cluster, as `make
# cluster` then makes) they must act on that one, never on the lab's own.
RUN_CLUSTER = $(if $(LAB_CLUSTER),-p cluster=$(LAB_CLUSTER))

# Every Python package at the exact version constraints.txt locks (`make constraints` refreshes it),
# so that every machine installing on any day gets the same. PIP_CONSTRAINT rather than -c: pip
# hands it on to the isolated build of the lab itself, which then uses the locked setuptools.
CONSTRAINTS := constraints.txt
# A classroom kit (`lab kit export`): KIT=FILE, or one left at the documented place. With a kit,
# pip installs from the kit's wheels with no package index, and the kit's images and tools are
# imported before the cluster needs them (no Go toolchain, no build).
KIT_PLACE := $(HOME)/k8s-lab-kit.tar
KIT ?= $(wildcard $(KIT_PLACE))
KIT_WHEELS := $(VENV)/kit-wheels
# --no-compile: byte-compiling every module of every package is most of an install's CPU (17 s
# instead of 55 s measured for the notebook set); Python compiles what is imported on first use.
PIP_INSTALL = PIP_CONSTRAINT=$(CURDIR)/$(CONSTRAINTS) $(VPY) -m pip install --quiet --disable-pip-version-check \
  --no-compile $(if $(KIT),--no-index --find-links $(CURDIR)/$(KIT_WHEELS))

# The reference notebooks (solutions, stored outputs) are what make lab, nbval and CI run; the
# handouts in notebooks/ are what students open. Both are built from notebooks/src/.
NOTEBOOKS = $(wildcard reference/[0-9][0-9]-*.ipynb)
CLUSTER_TESTS = $(wildcard tests/cluster/test_*.py tests/cluster/*_test.py)

.PHONY: help lab test verify venv venv-notebook host doctor tools kit-import cluster images run run-handouts notebooks release constraints test-unit test-cluster test-notebooks test-browser clean

help:
	@echo "make lab    set up everything and run the notebooks headlessly (venv, Docker, cluster, images)"
	@echo "make test   unit tests, cluster tests and the notebooks under nbval"
	@echo "make verify Kubernetes' own e2e tests on the cluster, the lab's full selection (lab cluster verify)"
	@echo "make clean  remove .venv and runs/ (the cluster and the build cache stay)"
	@echo "make notebooks      build the handouts and reference notebooks from notebooks/src/"
	@echo "make run-handouts   run the handouts as a student who has done nothing yet would"
	@echo "make release DIR=d  write the student bundle (no solutions) into d"
	@echo "make lab KIT=f      set up from a classroom kit (lab kit export f): no Go, no index, no build"
	@echo "                    (a kit at $(KIT_PLACE) is picked up without KIT)"
	@echo "make constraints    refresh constraints.txt to the newest versions pyproject.toml allows"
	@echo "JupyterLab: $(VENV)/bin/jupyter lab notebooks/"

# ------------------------------------------------------------------------------ environment

$(VENV)/.created:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
	  || { echo "k8s-lab needs Python 3.10 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1)" >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) \
	  || { echo "could not create $(VENV); on Debian/Ubuntu: apt-get install python3-venv" >&2; rm -rf $(VENV); exit 1; }
	@touch $@

# The kit's wheels, every SHA-256 checked against its manifest, before anything is installed from
# them (lab.kitfile needs only the standard library: the lab's packages are not installed yet).
# Not remade for a newer copy of the kit: the wheels follow constraints.txt, which the kit matches.
$(KIT_WHEELS)/.checked: $(VENV)/.created $(CONSTRAINTS)
	$(PYTHON) -m lab.kitfile wheels $(KIT) $(KIT_WHEELS)
	@touch $@

# The lab and everything CI needs (no JupyterLab).
$(VENV)/.installed: $(VENV)/.created pyproject.toml $(CONSTRAINTS) $(if $(KIT),$(KIT_WHEELS)/.checked)
	$(PIP_INSTALL) -e .
	@touch $@

# What a student adds to open the notebooks interactively, and the lab's JupyterLab settings
# (no news prompt, no update check) where JupyterLab reads packaged overrides.
JUPYTERLAB_SETTINGS := jupyter/lab/settings/overrides.d/k8s-lab.json
$(VENV)/.installed-notebook: $(VENV)/.installed $(JUPYTERLAB_SETTINGS)
	$(PIP_INSTALL) -e '.[notebook]'
	install -D -m 0644 $(JUPYTERLAB_SETTINGS) $(VENV)/share/jupyter/lab/settings/overrides.d/k8s-lab.json
	@touch $@

# Playwright for the browser tests (they drive Debian's Chromium, which setup-host --browser installs).
$(VENV)/.installed-browser: $(VENV)/.installed-notebook
	$(PIP_INSTALL) -e '.[browser]'
	@touch $@

venv: $(VENV)/.installed
venv-notebook: $(VENV)/.installed-notebook

host:
	bash scripts/setup-host

doctor: venv
	$(LAB) doctor

tools: venv
	$(LAB) tools

# A kit's images and tools, into Docker and the lab cache (returns at once when imported already).
kit-import: venv host
ifneq ($(KIT),)
	$(LAB) kit import $(KIT)
endif

# CLUSTER_UP_FLAGS: e.g. --recreate (CI starts every run from a fresh cluster) or --workers 2.
cluster: venv host kit-import
	$(LAB) cluster up $(CLUSTER_UP_FLAGS)

images: cluster
	$(LAB) images build

# ---------------------------------------------------------------------------------- the lab

lab: venv-notebook host doctor cluster images
	@$(MAKE) run
	@echo
	@echo "Open the lab:  $(VENV)/bin/jupyter lab notebooks/"

run: venv
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "no notebooks in notebooks/ yet (NN-name.ipynb): nothing to run"
else
	$(LAB) run --notebooks-dir reference $(RUN_CLUSTER) --out $(RUN_DIR)
	@echo "executed notebooks: $(RUN_DIR)/"
	@echo "report:             $(RUN_DIR)/report.md (and report.json)"
endif

# A student's view: the handouts, nothing filled in (every build task's checkpoint fails, nothing raises).
run-handouts: venv
	$(LAB) run --notebooks-dir notebooks $(RUN_CLUSTER) --out $(RUN_DIR)-handouts

notebooks: venv
	$(VPY) notebooks/src/build.py

release: venv
	@test -n "$(DIR)" || { echo "usage: make release DIR=path/to/new/bundle" >&2; exit 1; }
	$(LAB) release $(DIR)

# The newest versions pyproject.toml allows today, resolved in a scratch venv from the package
# index; run `make test` before committing the new constraints.txt.
constraints:
	rm -rf $(VENV)-lock
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet --disable-pip-version-check --upgrade setuptools
	$(VENV)-lock/bin/python -m pip install --quiet --disable-pip-version-check -e '.[notebook,browser]'
	$(VENV)-lock/bin/python scripts/constraints.py > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(VENV)-lock

# ------------------------------------------------------------------------------------ tests

test: test-unit test-browser test-cluster test-notebooks

# The chart's unit tests render it with the lab's helm.
test-unit: venv tools
	$(VPY) -m pytest tests/unit -q

test-cluster: venv host cluster images
ifeq ($(strip $(CLUSTER_TESTS)),)
	@echo "no tests in tests/cluster/ yet: nothing to run"
else
	$(VPY) -m pytest tests/cluster -q --durations=25
endif

test-notebooks: venv host cluster images
ifeq ($(strip $(NOTEBOOKS)),)
	@echo "no notebooks in notebooks/ yet: skipping nbval"
else
	$(VPY) -m pytest --durations=15 $(NBVAL) $(if $(wildcard $(NBVAL_SANITIZE)),--nbval-sanitize-with $(NBVAL_SANITIZE)) \
	  --nbval-current-env --nbval-cell-timeout=1200 -p no:cacheprovider $(NOTEBOOKS)
endif

# Kubernetes' own end-to-end tests, the full curated selection (`make test` runs the --quick one).
# VERIFY_FLAGS: e.g. --focus REGEX, --out DIR.
verify: venv host cluster
	$(LAB) cluster verify $(VERIFY_FLAGS)

# JupyterLab in a real browser, as a student uses it; needs no cluster (screenshots: runs/browser/).
test-browser: $(VENV)/.installed-browser
	bash scripts/setup-host --browser
	$(VPY) -m pytest tests/browser -q

# ------------------------------------------------------------------------------------ clean

clean:
	rm -rf $(VENV) runs
