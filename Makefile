# Two entry points: `make demo` (install + end-to-end run on the embedded ArcadeDB) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install neo4j demo test lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[arcadedb,dev]'
	touch $@

# The Neo4j 5 launcher (neo4j-local/): `mvn package` compiles it and copies its classpath to
# target/lib and APOC to target/plugins. Needs a JDK 17 and Maven; the tests run on Neo4j too
# when it is built, so `make test` builds it wherever mvn is installed.
NEO4J_LAUNCHER := neo4j-local/target/classes/graphrisk/neo4jlocal/Main.class
MVN := $(shell command -v mvn 2>/dev/null)

neo4j: $(NEO4J_LAUNCHER)

$(NEO4J_LAUNCHER): neo4j-local/pom.xml $(wildcard neo4j-local/src/main/java/graphrisk/neo4jlocal/*.java)
	mvn -q -B -f neo4j-local/pom.xml package
	touch $@

demo: install
	$(VENV)/bin/graphrisk demo

test: install $(if $(MVN),neo4j)
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/pipeline.py

clean:
	rm -rf var .pytest_cache neo4j-local/target
