# Two entry points: `make demo` (install + end-to-end run on the embedded ArcadeDB) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install neo4j beam-jars prism demo test lint bench clean

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

# Beam's portable runners, never by Beam's own download. BEAM_VERSION must be the Python SDK's
# (apache-beam in the venv): the job servers and Prism speak its protocol. Maven Central serves
# no *-job-server jar at any recent Beam version, so beam-jobserver/ assembles each from the
# runner artifact and its dependencies (a launcher jar plus lib/, in tools/beam/); 2.62.0 is the
# newest version at which beam-runners-flink-1.19, beam-runners-spark-3 and
# beam-runners-java-job-service all resolve. Prism is built from its Go module (minutes).
BEAM_VERSION ?= 2.62.0
FLINK_JOB_SERVER := tools/beam/flink/beam-flink-job-server.jar
SPARK_JOB_SERVER := tools/beam/spark/beam-spark-job-server.jar
PRISM_STAMP := tools/bin/.prism-$(BEAM_VERSION)

beam-jars: $(FLINK_JOB_SERVER) $(SPARK_JOB_SERVER)

$(FLINK_JOB_SERVER): beam-jobserver/flink/pom.xml
	mvn -q -B -f $< -Dbeam.version=$(BEAM_VERSION) package
	touch $@

$(SPARK_JOB_SERVER): beam-jobserver/spark/pom.xml
	mvn -q -B -f $< -Dbeam.version=$(BEAM_VERSION) package
	touch $@

prism: $(PRISM_STAMP)

$(PRISM_STAMP):
	mkdir -p tools/bin
	cd /tmp && GOFLAGS=-mod=mod GOBIN=$(CURDIR)/tools/bin go install github.com/apache/beam/sdks/v2/go/cmd/prism@v$(BEAM_VERSION)
	echo $(BEAM_VERSION) > tools/bin/prism.version
	rm -f tools/bin/.prism-* && touch $@

demo: install
	$(VENV)/bin/graphrisk demo

test: install $(if $(MVN),neo4j)
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) bench/pipeline.py

clean:
	rm -rf var .pytest_cache neo4j-local/target tools
