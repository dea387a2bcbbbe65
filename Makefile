# Two entry points for a newcomer: `make run` (server on the shipped samples) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# A folder of radiographs or a DICOMweb URL, e.g. make run STUDIES=http://127.0.0.1:8042/dicom-web
STUDIES ?= monailabel_app/sample_studies

.PHONY: venv run test lint bench-cpu clean

$(VENV)/.installed: requirements.txt requirements-monailabel.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# monailabel without its declared dependencies: they build sam2 and pull a CUDA torch (~8 GB);
	# what its server needs is in requirements.txt instead (see requirements-monailabel.txt).
	$(PY) -m pip install --no-deps -r requirements-monailabel.txt
	$(PY) -m pip install --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# MONAI Label's launcher runs the first `python` on PATH: put the venv's first.
run: venv
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/monailabel start_server --app monailabel_app --studies $(STUDIES) --host $(HOST) --port $(PORT)

test: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check anatpaste
	$(VENV)/bin/mypy
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check anatpaste
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV)
