# Deep Learning Tools for QGIS: set-up, demo, tests, benchmark, packaging.
# Every target that runs code first installs what is missing (idempotent, quick when done).

SHELL := /bin/bash
PYTHON_SYS ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := qgis python3-qgis python3-gdal gdal-bin python3-pil python3-venv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PLUGIN := dltools
VERSION := $(shell sed -n 's/^version=//p' metadata.txt)
export QT_QPA_PLATFORM ?= offscreen

.PHONY: install system-deps venv demo test test-core lint bench package clean

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

package:
	@rm -rf build/package dist/$(PLUGIN)-$(VERSION).zip
	@mkdir -p build/package/$(PLUGIN) dist
	@git ls-files -z metadata.txt __init__.py plugin.py LICENSE README.md requirements.txt algorithms core resources \
		| xargs -0 -I{} cp --parents {} build/package/$(PLUGIN)/
	@cd build/package && python3 -m zipfile -c ../../dist/$(PLUGIN)-$(VERSION).zip $(PLUGIN)
	@echo "Plugin zip: dist/$(PLUGIN)-$(VERSION).zip (QGIS: Plugins > Manage and Install Plugins > Install from ZIP)"

clean:
	rm -rf build dist .pytest_cache .ruff_cache bench-out demo-out
