# bigdl-medimg: every target bootstraps .venv first, so a fresh clone needs no
# manual step.  Pins live in setup.cfg only.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test bench spread dist clean java orthanc

venv: $(STAMP)

java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing OpenJDK 17 (Spark needs a JDK)"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

# the PACS the DICOMweb tests read from and write to (Debian's packages; not started as a service)
orthanc:
	@{ command -v Orthanc >/dev/null 2>&1 && test -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so; } || { \
	  echo "Orthanc not found: installing orthanc and orthanc-dicomweb (the DICOMweb tests need a real PACS)"; \
	  apt-get update -qq && apt-get install -y -qq orthanc orthanc-dicomweb >/dev/null; }

$(STAMP): setup.cfg setup.py | java
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,torch,mlflow]'
	$(PY) -m pip install -q --no-deps $$($(PY) -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(' '.join(c['bigdl_medimg']['no_deps_requires'].split()))")
	$(PY) -c "import bigdl.dllib, pyspark, numpy; assert numpy.__version__ < '2'; print('stack ok: pyspark', pyspark.__version__, 'numpy', numpy.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m bigdl_medimg demo --out demo-out

test: $(STAMP) orthanc
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) orthanc
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py

# the README's task commands three times per engine (seeds 0-2): mean and min/max (hours on 2 cores)
spread: $(STAMP)
	$(PY) bench/spread.py

# dist/: the wheel, and the library with its whole Python environment packed for executors
# (spark-submit --archives dist/bigdl-medimg-env.tar.gz#environment; see README, "Running on YARN").
DIST_VENV := build/dist-venv
dist: $(STAMP)
	rm -rf $(DIST_VENV) dist
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/python -m pip install -q --upgrade pip
	$(DIST_VENV)/bin/python -m pip install -q '.[torch]'
	$(DIST_VENV)/bin/python -m pip install -q --no-deps $$($(PY) -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(' '.join(c['bigdl_medimg']['no_deps_requires'].split()))")
	$(DIST_VENV)/bin/python -c "import bigdl_medimg, bigdl.dllib, numpy; assert numpy.__version__ < '2'"
	$(PY) -m pip install -q venv-pack==0.2.0
	$(PY) -m pip wheel -q --no-deps -w dist .
	$(VENV)/bin/venv-pack -p $(DIST_VENV) -o dist/bigdl-medimg-env.tar.gz
	@ls -lh dist

clean:
	rm -rf $(VENV) demo-out build dist *.egg-info
