# Everyday commands. Each target is a thin alias; read the command to see what runs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST  := $(BIN)/python -m pytest
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: venv build annotate debug run test test-uvloop test-pure test-installed lint format typecheck \
        bench-micro wheel sdist clean system-deps

venv: $(STAMP)
$(STAMP): pyproject.toml setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "setuptools>=77" "Cython>=3.0.10" wheel
	# the extension is compiled in place by `make build`, so the editable install skips it
	FASTWS_NO_EXTENSIONS=1 $(BIN)/pip install -q --no-build-isolation -e ".[test]"
	touch $@

build: $(STAMP)                  ## compile the codec and fastws/ws/protocol.py in place
	$(BIN)/python setup.py -q build_ext --inplace

annotate: $(STAMP)               ## write fastws/_speedups.html, fastws/ws/protocol.html (Python calls per line)
	FASTWS_CYTHON_ANNOTATE=1 $(BIN)/python setup.py -q build_ext --inplace --force

debug: $(STAMP)
	FASTWS_DEBUG=1 $(BIN)/python setup.py -q build_ext --inplace --force

run: build                       ## serve the chat demo on http://$(HOST):$(PORT)/
	$(BIN)/python -m fastws examples.chat:app --host $(HOST) --port $(PORT)

system-deps:                     ## chromium, chromedriver, redis-server: apt-get them (root/sudo) or say how
	scripts/system-deps.sh

test: system-deps build          ## whole suite (compiled codec), server suites on uvloop and on the pure twin, Autobahn
	FASTWS_REQUIRE_EXTENSIONS=1 $(PYTEST) tests
	$(MAKE) test-uvloop
	$(MAKE) test-pure
	$(MAKE) compliance

test-uvloop: build               ## server suites again with in-process servers on uvloop (the CLI's loop)
	FASTWS_REQUIRE_EXTENSIONS=1 FASTWS_TEST_LOOP=uvloop $(PYTEST) tests/integration -m "not browser"

test-pure: build                 ## server suites again on the pure-Python codec (unit tests run both)
	FASTWS_NO_EXTENSIONS=1 $(PYTEST) tests/integration -m "not browser"

test-installed: wheel            ## suite run from outside the tree against the installed wheel
	rm -rf /tmp/fastws-installed && $(PY) -m venv /tmp/fastws-installed
	/tmp/fastws-installed/bin/pip install -q dist/*.whl ".[test]"
	cd /tmp && FASTWS_REQUIRE_EXTENSIONS=1 /tmp/fastws-installed/bin/python -m pytest $(CURDIR)/tests/unit -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/python -m ruff check fastws tests bench examples

format: $(STAMP)
	$(BIN)/python -m ruff format fastws tests bench examples

typecheck: $(STAMP)
	$(BIN)/python -m mypy

bench-micro: build               ## codec micro-benchmark: compiled vs pure vs plain copy
	$(BIN)/python bench/micro/codec.py

wheel: $(STAMP)
	rm -rf dist && $(BIN)/python -m build --wheel --no-isolation

sdist: $(STAMP)
	$(BIN)/python -m build --sdist

clean:
	rm -rf build dist *.egg-info fastws/*.so fastws/*.c fastws/*.html fastws/ws/*.so fastws/ws/*.c fastws/ws/*.html .pytest_cache .hypothesis

# Autobahn TestSuite through kosoku (pinned by the `compliance` extra), judged strictly: every
# case OK or INFORMATIONAL. Reports land in build/autobahn/<codec>/ (tests/compliance/README.md).
.PHONY: compliance compliance-quick conformance-doc
AUTOBAHN          := $(BIN)/python tests/compliance/run_autobahn.py
COMPLIANCE_STAMP  := $(VENV)/.compliance-stamp
$(COMPLIANCE_STAMP): $(STAMP)
	FASTWS_NO_EXTENSIONS=1 $(BIN)/pip install -q --no-build-isolation -e ".[compliance]"
	touch $@

compliance: build $(COMPLIANCE_STAMP)  ## all 517 cases compiled, then sections 1-7 pure Python
	$(AUTOBAHN) --codec cython --sections 1-7,9,10,12,13; status=$$?; \
	$(AUTOBAHN) --codec python --sections 1-7 && exit $$status

compliance-quick: build $(COMPLIANCE_STAMP)  ## sections 1-7, compiled codec (seconds)
	$(AUTOBAHN) --codec cython --sections 1-7 --report-dir build/autobahn/quick

conformance-doc: $(STAMP)        ## rewrite docs/CONFORMANCE.md from the last `make compliance`
	$(BIN)/python tests/compliance/conformance_doc.py

# Load benchmarks (bench/README.md, "Load benchmarks"): wsload is a C client built here;
# the peers come from the `bench` extra, installed on first use; HTTP needs Debian's wrk.
.PHONY: bench bench-quick bench-load-client
BENCH_DEPS := import uvicorn, websockets, wsproto, granian, aiohttp, picows, matplotlib

bench-load-client:               ## compile bench/load/wsload (gcc -O2)
	$(MAKE) -C bench/load

bench: build bench-load-client   ## echo + HTTP (5 interleaved rounds, ~15 min), then the fan-out -> bench/results/
	$(BIN)/python -c "$(BENCH_DEPS), socketify, fastapi" 2>/dev/null || FASTWS_NO_EXTENSIONS=1 $(BIN)/pip install -q --no-build-isolation -e ".[bench]"
	$(BIN)/python bench/run.py && $(BIN)/python bench/report.py
	$(BIN)/python bench/fanout.py --report

bench-quick: build bench-load-client  ## 3 short rounds, 4 servers (~1.5 min) -> bench/results/
	$(BIN)/python -c "$(BENCH_DEPS)" 2>/dev/null || FASTWS_NO_EXTENSIONS=1 $(BIN)/pip install -q --no-build-isolation -e ".[bench]"
	$(BIN)/python bench/run.py --quick && $(BIN)/python bench/report.py

# Fan-out (bench/README.md, "Fan-out benchmark"): one publisher, N subscribers, every server's
# own way of broadcasting; report: python bench/fanout.py report [--docs]
.PHONY: bench-fanout bench-fanout-quick
bench-fanout: build bench-load-client  ## fan-out: 8 servers x 12 scenarios, 3 rounds -> bench/results/
	$(BIN)/python -c "$(BENCH_DEPS), socketify, fastapi" 2>/dev/null || FASTWS_NO_EXTENSIONS=1 $(BIN)/pip install -q --no-build-isolation -e ".[bench]"
	$(BIN)/python bench/fanout.py --report

bench-fanout-quick: build bench-load-client  ## fan-out: 4 scenarios, 2 short rounds -> bench/results/
	$(BIN)/python -c "$(BENCH_DEPS), socketify, fastapi" 2>/dev/null || FASTWS_NO_EXTENSIONS=1 $(BIN)/pip install -q --no-build-isolation -e ".[bench]"
	$(BIN)/python bench/fanout.py --quick --report

# Robustness (docs/robustness.md): coverage-guided fuzzing under atheris, ten minutes by default
# (FUZZ_SECONDS=...), corpus kept in build/fuzz/corpus; and a 3-minute soak of a live server.
.PHONY: fuzz soak
fuzz: build                      ## fuzz the frame reader, HTTP/upgrade path, handshake (~10 min)
	FASTWS_REQUIRE_EXTENSIONS=1 FASTWS_FUZZ_SECONDS=$(or $(FUZZ_SECONDS),600) \
	FASTWS_FUZZ_CORPUS=build/fuzz/corpus $(PYTEST) tests/fuzz/test_fuzz_session.py::test_fuzz_session -p no:cacheprovider

soak: build                      ## 3 min: mixed sizes, churn, drops; nothing lost, RSS drift
	$(BIN)/python bench/soak.py

# Scale (issue #19, docs/scale.md): 100,000 WebSockets on fastws --workers 10 --pubsub redis, a
# broadcast to all, nothing lost; bench/scale.py --conns 5000 is in the test suite.
.PHONY: scale
scale: build bench-load-client   ## 100,000 connections, 20 broadcasts, leak check (~3 min) -> bench/results/
	$(BIN)/python bench/scale.py
