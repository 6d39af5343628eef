# Deep Learning Tools for QGIS: set-up, demo, tests, benchmark, packaging.
# Every target that runs code first installs what is missing (idempotent, quick when done).

SHELL := /bin/bash
PYTHON_SYS ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pyqt5-dev-tools: pylupdate5, qttools5-dev-tools: lrelease (make translations and its test)
APT_PACKAGES := qgis python3-qgis python3-gdal gdal-bin python3-pil python3-venv pyqt5-dev-tools qttools5-dev-tools xvfb xauth
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PLUGIN := dltools
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
export QT_QPA_PLATFORM ?= offscreen

.PHONY: install system-deps venv demo test test-core lint bench gpu-check package translations qm clean

install: system-deps venv

system-deps:
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "Installing Debian packages: $(APT_PACKAGES)"; \
		$(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y --no-install-recommends $(APT_PACKAGES); \
	fi

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt | system-deps
	@test -x $(PY) || $(PYTHON_SYS) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r requirements-dev.txt
	@$(PY) -c "import numpy, sys; sys.exit(0 if numpy.__version__.startswith('1.') else 'numpy 2 got in: QGIS needs Debian numpy 1.x')"
	@touch $@

venv: $(VENV)/.installed

demo: install
	$(PY) scripts/demo.py $(if $(RASTER),--raster $(RASTER)) $(if $(MODEL),--model $(MODEL))

test: install
	$(PY) -m pytest -q tests

test-core: install
	$(PY) -m pytest -q tests/core

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) scripts/bench.py

# On a machine with an NVIDIA GPU: the bench's model-bound and I/O-bound cases on the GPU, and the share of each run
# the GPU was busy (target >= 80 % model-bound); says so and exits 2 where there is no GPU
GPU_CASES ?=
# then Train Deep Learning Model on CUDA in mixed precision, checked (scripts/gpu_train_check.py; GPU_TRAIN: families)
GPU_TRAIN ?=
gpu-check: install
	$(PY) scripts/gpu_check.py $(GPU_CASES); engine=$$?; \
	$(PY) scripts/gpu_train_check.py $(GPU_TRAIN); train=$$?; \
	if [ $$engine = 1 ] || [ $$train = 1 ]; then exit 1; elif [ $$engine = 2 ] || [ $$train = 2 ]; then exit 2; fi

# The plugin zip (dist/dltools-<version>.zip): the files git tracks under the plugin's folders, LICENSE and the
# compiled translations, in one top-level folder dltools/; it checks metadata.txt's mandatory fields first and
# warns while repository/tracker/homepage are placeholders. scripts/package_plugin.py says why this is not
# qgis-plugin-ci (in short: that tool packages a plugin kept in a sub-folder of its repository; ours is the top).
package: qm
	@$(PYTHON_SYS) scripts/package_plugin.py

# Translations: pylupdate5 collects every tr() string of the plugin's Python files into i18n/dltools_en.ts
# (the template translators copy to dltools_<locale>.ts) and updates every other i18n/dltools_*.ts; then
# lrelease compiles each translated .ts to the .qm the plugin loads for the QGIS locale.
I18N_DIR ?= i18n
TR_SOURCES = $(shell git ls-files --cached --others --exclude-standard -- '*.py' | grep -v -e '^tests/' -e '^scripts/')

translations: system-deps
	@mkdir -p $(I18N_DIR)
	PYTHONWARNINGS=ignore pylupdate5 -noobsolete $(TR_SOURCES) -ts $(I18N_DIR)/dltools_en.ts $(filter-out $(I18N_DIR)/dltools_en.ts,$(wildcard $(I18N_DIR)/dltools_*.ts))
	@$(MAKE) -s qm I18N_DIR=$(I18N_DIR)

qm:
	@for ts in $(filter-out $(I18N_DIR)/dltools_en.ts,$(wildcard $(I18N_DIR)/dltools_*.ts)); do \
		lrelease -silent "$$ts" -qm "$${ts%.ts}.qm" || exit 1; \
	done

clean:
	rm -rf build dist .pytest_cache .ruff_cache bench-out demo-out
