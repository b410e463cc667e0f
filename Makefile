# bigdl-medimg: every target bootstraps .venv first, so a fresh clone needs no
# manual step.  Pins live in setup.cfg only.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test bench clean java

venv: $(STAMP)

java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "java not found: installing OpenJDK 17 (Spark needs a JDK)"; \
	  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }

$(STAMP): setup.cfg setup.py | java
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $$($(PY) -c "import configparser; c = configparser.ConfigParser(); c.read('setup.cfg'); print(' '.join(c['bigdl_medimg']['no_deps_requires'].split()))")
	$(PY) -c "import bigdl.dllib, pyspark, numpy; assert numpy.__version__ < '2'; print('stack ok: pyspark', pyspark.__version__, 'numpy', numpy.__version__)"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m bigdl_medimg demo --out demo-out

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) demo-out build dist *.egg-info
