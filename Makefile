# rackmesh — see README.md. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
APT_GET ?= apt-get
STATE_DIR ?= .sandbox
TOPOLOGY ?= examples/topology.yaml

CHAOS_SECONDS ?= 120
CHAOS_SEED ?= 1
BENCH_NODES ?= 100,1000
BENCH_REQUESTS ?= 20

.PHONY: test lint demo chaos bench up down system-deps python-deps

## Debian packages the sandbox and the tests run for real: ZooKeeper (with Java) and kubectl; shellcheck for lint.
system-deps:
	@need=""; \
	{ [ -n "$$ZOOKEEPER_HOME" ] || [ -f /usr/share/java/zookeeper.jar ]; } || need="$$need zookeeper"; \
	command -v java >/dev/null || need="$$need default-jre-headless"; \
	command -v shellcheck >/dev/null || need="$$need shellcheck"; \
	if [ -n "$$need" ]; then \
		echo "installing Debian packages:$$need"; \
		$(APT_GET) update -qq && DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq $$need; \
	fi; \
	if ! command -v kubectl >/dev/null; then \
		echo "installing kubectl"; \
		$(APT_GET) update -qq; \
		DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq kubectl \
			|| DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq kubernetes-client; \
	fi

python-deps:
	$(PIP) install -q -e '.[test]'

lint: system-deps python-deps
	$(PYTHON) -m ruff check .
	shellcheck hack/*.sh

test: system-deps python-deps lint
	$(PYTHON) -m pytest -q

demo: system-deps python-deps
	$(PYTHON) -m rackmesh_sandbox.demo --topology $(TOPOLOGY) --request examples/lob123.yaml

chaos: system-deps python-deps
	$(PYTHON) -m rackmesh_sandbox.chaos --topology $(TOPOLOGY) --duration $(CHAOS_SECONDS) --seed $(CHAOS_SEED)

bench: system-deps python-deps
	$(PYTHON) -m rackmesh_bench.run --nodes $(BENCH_NODES) --requests $(BENCH_REQUESTS) --out bench/results

up: system-deps python-deps
	rackmesh sandbox up --topology $(TOPOLOGY) --state-dir $(STATE_DIR)

down:
	rackmesh sandbox down --state-dir $(STATE_DIR)
